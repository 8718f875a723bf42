"""Edge agent against simulated Modbus devices and a real mosquitto: schedule, failure isolation, seq
continuity across restarts, nothing lost through a broker outage."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

from alumon.config import load_site
from alumon.sim.faults import FaultKind, SimFault
from alumon.stack import Server, free_port, start_mosquitto
from alumon.telemetry import Quality
from tests.edge_support import Observer, edge, messages_per_device, running, sim, small_site, wait_until


def test_every_device_polled_with_consecutive_seqs_and_restart_continues(tmp_path: Path, mosquitto: Server) -> None:
    site = small_site(tmp_path, mosquitto.port)
    obs = Observer(mosquitto.port, "obs-restart")
    spool = tmp_path / "spool"
    with running(sim(site)):
        with running(edge(site, spool)):
            time.sleep(3)
        with running(edge(site, spool)):
            time.sleep(2)
    time.sleep(0.5)
    obs.close()
    for dev in site.config.devices:
        seqs = obs.seqs(dev.id)
        assert seqs == list(range(len(seqs))), (dev.id, seqs)  # no gap, no reuse across the restart
        assert len(seqs) >= 7
        last = obs.by_device[dev.id][-1]
        assert all(r.quality is Quality.GOOD for r in last.readings.values()), last


def test_dead_device_is_stale_and_others_keep_schedule(tmp_path: Path, mosquitto: Server) -> None:
    site = small_site(tmp_path, mosquitto.port)
    # pl2-scale points at a port where nothing listens: it must not slow the others down.
    data = site.config.model_dump(mode="json")
    for d in data["devices"]:
        if d["id"] == "pl2-scale":
            d["transport"]["port"] = free_port()
    path = tmp_path / "dead.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    dead_site = load_site(path)
    obs = Observer(mosquitto.port, "obs-dead")
    counts = messages_per_device(obs, site, dead_site, tmp_path / "spool", 5)
    healthy = [n for dev, n in counts.items() if dev != "pl2-scale"]
    assert min(healthy) >= 8 and max(healthy) - min(healthy) <= 1, counts  # full schedule: ~10 polls in 5 s
    assert abs(counts["pl2-scale"] - min(healthy)) <= 1, counts  # the dead one still reports every cycle
    dead_msgs = obs.by_device["pl2-scale"]
    assert all(r.quality is Quality.STALE and r.value is None for m in dead_msgs for r in m.readings.values())


def test_broker_down_60s_and_a_device_silent_30s(tmp_path: Path) -> None:
    """Polling at 1 s, one meter stops answering for 30 s and the broker is stopped for 60 s: every sequence
    number of every device arrives exactly once once the broker is back, the four healthy devices kept their
    full schedule with good data, the silent one reported stale readings every cycle and recovered."""
    port = free_port()
    broker = start_mosquitto(tmp_path / "broker", port=port)
    site = small_site(tmp_path, port, interval_s=1.0, edge={"metrics_interval_s": 2.0})
    silent = SimFault("pl2-scale", FaultKind.SILENT, 5, 30)
    obs = Observer(port, "obs-outage")
    try:
        with running(sim(site, [silent])):
            started = time.monotonic()
            with running(edge(site, tmp_path / "spool")):
                time.sleep(8)
                broker.stop()
                time.sleep(60)
                broker = start_mosquitto(tmp_path / "broker", port=port)
                polled_s = time.monotonic() - started
                wait_until(lambda: min(len(obs.seqs(d.id)) for d in site.config.devices) >= polled_s - 1, 60,
                           "the spool to drain to the observer")
                time.sleep(2.5)  # one more metrics message after the drain
        time.sleep(0.5)
        counts = {d.id: len(obs.seqs(d.id)) for d in site.config.devices}
        for dev in site.config.devices:
            seqs = obs.seqs(dev.id)
            assert sorted(seqs) == list(range(len(seqs))), (dev.id, seqs)  # each seq exactly once, none missing
        assert max(counts.values()) - min(counts.values()) <= 1, counts  # the silent one reported every cycle
        healthy = [d.id for d in site.config.devices if d.id != silent.device]
        for dev_id in healthy:
            assert all(r.quality is Quality.GOOD for m in obs.by_device[dev_id] for r in m.readings.values())
        last_metrics = obs.metrics[-1]["devices"]
        assert all(last_metrics[d]["missed_cycles"] == 0 for d in healthy), last_metrics
        stale = [m.seq for m in obs.by_device[silent.device]
                 if all(r.quality is Quality.STALE for r in m.readings.values())]
        assert 28 <= len(stale) <= 36, stale  # 30 s of silence at 1 s, + up to 5 s of breaker back-off
        assert all(r.quality is Quality.GOOD for r in obs.by_device[silent.device][-1].readings.values())
        replayed = [m for m in obs.by_device["pl1-scale"] if m.historical]
        assert len(replayed) >= 40  # the outage's backlog was marked historical for analytics
    finally:
        obs.close()
        broker.stop()


def test_edge_killed_mid_publish_loses_nothing(tmp_path: Path, mosquitto: Server) -> None:
    """``kill -9`` of the edge process while it publishes, then a restart: every sequence number arrives, and
    a number seen twice is the same message (the one in flight at the kill)."""
    site = small_site(tmp_path, mosquitto.port, interval_s=0.2)
    obs = Observer(mosquitto.port, "obs-sigkill")
    argv = [sys.executable, "-m", "alumon", "edge", "--site", str(site.path), "--spool-dir", str(tmp_path / "spool")]
    log = (tmp_path / "edge.log").open("ab")
    try:
        with running(sim(site)):
            for _ in range(2):
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
                time.sleep(4)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            time.sleep(3)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        time.sleep(1)
        for dev in site.config.devices:
            msgs = obs.by_device[dev.id]
            by_seq: dict[int, set[bytes]] = defaultdict(set)
            for m in msgs:
                by_seq[m.seq].add(m.model_dump_json(exclude={"historical"}).encode())
            assert sorted(by_seq) == list(range(len(by_seq))), (dev.id, sorted(by_seq))
            assert all(len(v) == 1 for v in by_seq.values()), dev.id  # a duplicate is the same message
            assert len(msgs) - len(by_seq) <= 20, dev.id  # duplicates: at most the in-flight window
            assert len(by_seq) >= 40
    finally:
        log.close()
        obs.close()
