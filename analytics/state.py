"""Durable analytics state: open alert episodes and the email outbox, so a restart neither re-fires an
incident (Kapacitor's complaint) nor loses a notification queued while SMTP was down."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any


def atomic_write(path: Path, data: bytes) -> None:
    """Write-then-rename, with fsync, so a crash leaves either the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EpisodeFile:
    """Open alert episodes keyed by 'rule|unit_process|kpi' (JSON, rewritten atomically on every change)."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        if not self.path.exists():
            return {}
        raw: dict[str, dict[str, Any]] = json.loads(self.path.read_text(encoding="utf-8"))
        out = {}
        for key, ep in raw.items():
            parts = key.split("|")
            if len(parts) == 2:  # written before episodes were per KPI: keep the open incident
                parts.append(str(ep.pop("kpi", "")))
                ep["pending_since_ms"] = int(datetime.fromisoformat(ep.pop("pending_since")).timestamp() * 1000)
                ep.pop("first_value", None)
            rule, unit, kpi = parts
            out[(rule, unit, kpi)] = ep
        return out

    def save(self, episodes: dict[tuple[str, str, str], dict[str, Any]]) -> None:
        body = {"|".join(key): ep for key, ep in episodes.items()}
        atomic_write(self.path, json.dumps(body, indent=1, sort_keys=True).encode("utf-8"))


class Outbox:
    """Emails waiting for SMTP, one file each, oldest first; removed once the server accepted them."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _name(self, msg: EmailMessage) -> Path:
        ident = str(msg["Message-ID"]).strip("<>").replace("/", "_")
        return self.directory / f"{ident}.eml"

    def put(self, msg: EmailMessage) -> Path:
        path = self._name(msg)
        if not path.exists():  # the same notice queued twice is still one email
            atomic_write(path, msg.as_bytes(policy=policy.SMTP))
        return path

    def pending(self) -> list[tuple[Path, EmailMessage]]:
        files = sorted(self.directory.glob("*.eml"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        out = []
        for p in files:
            msg = BytesParser(policy=policy.default).parsebytes(p.read_bytes())
            assert isinstance(msg, EmailMessage)
            out.append((p, msg))
        return out

    def done(self, path: Path) -> None:
        path.unlink(missing_ok=True)


class NoticeQueue:
    """Alert notices waiting to be grouped into one email per addressee: one JSON file each, written before
    anything else happens to the notice, removed once the email carrying it is in the outbox."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def put(self, address: str, name: str, body: dict[str, Any]) -> None:
        path = self.directory / address.replace("/", "_") / f"{name}.json"
        if not path.exists():  # the same notice queued twice is still one notice
            atomic_write(path, json.dumps(body, ensure_ascii=False).encode("utf-8"))

    def due(self, now_ms: int, group_ms: int) -> list[list[tuple[Path, dict[str, Any]]]]:
        """Per addressee, every queued notice once the oldest has waited ``group_ms``; oldest first."""
        groups = []
        for box in sorted(p for p in self.directory.iterdir() if p.is_dir()):
            notices = [(p, json.loads(p.read_text(encoding="utf-8"))) for p in box.glob("*.json")]
            notices.sort(key=lambda n: (n[1]["queued_ms"], n[0].name))
            if notices and now_ms - notices[0][1]["queued_ms"] >= group_ms:
                groups.append(notices)
        return groups

    @staticmethod
    def done(paths: list[Path]) -> None:
        for p in paths:
            p.unlink(missing_ok=True)
