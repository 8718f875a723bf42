"""`alumon stack up|down` starts and stops real servers, and refuses to start twice."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import requests

from alumon.stack import LocalStack, free_port, pid_alive
from tests.conftest import maildir_messages


def alumon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alumon", *args], capture_output=True, text=True, timeout=60)


def test_stack_up_serves_and_down_stops(tmp_path: Path) -> None:
    run_dir = tmp_path / "stack"
    ports = [str(free_port()) for _ in range(3)]
    up = alumon("stack", "up", "--run-dir", str(run_dir), "--mqtt-port", ports[0], "--influx-port", ports[1],
                "--smtp-port", ports[2])
    assert up.returncode == 0, up.stderr
    stack = LocalStack.load(run_dir)
    try:
        assert requests.get(f"http://127.0.0.1:{stack.influxd.port}/ping", timeout=5).status_code == 204
        mqtt_publish.single("alumon/test", b"x", hostname="127.0.0.1", port=stack.mosquitto.port)
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@example.cn", "b@example.cn", "测试 stack"
        msg.set_content("hello")
        with smtplib.SMTP("127.0.0.1", stack.smtp.port, timeout=5) as smtp:
            smtp.send_message(msg)
        (stored,) = maildir_messages(stack.smtp)
        assert "stack" in str(stored["Subject"])

        again = alumon("stack", "up", "--run-dir", str(run_dir))
        assert again.returncode == 1
        assert "already running" in again.stderr
    finally:
        down = alumon("stack", "down", "--run-dir", str(run_dir))
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(s.pid) for s in stack.servers())
