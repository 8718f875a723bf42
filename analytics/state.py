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
    """Open alert episodes keyed by 'rule|unit_process'."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[tuple[str, str], dict[str, Any]]:
        if not self.path.exists():
            return {}
        raw: dict[str, dict[str, Any]] = json.loads(self.path.read_text(encoding="utf-8"))
        out = {}
        for key, ep in raw.items():
            rule, unit = key.split("|", 1)
            ep["pending_since"] = datetime.fromisoformat(ep["pending_since"])
            out[(rule, unit)] = ep
        return out

    def save(self, episodes: dict[tuple[str, str], dict[str, Any]]) -> None:
        body = {f"{rule}|{unit}": {**ep, "pending_since": ep["pending_since"].isoformat()}
                for (rule, unit), ep in episodes.items()}
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
