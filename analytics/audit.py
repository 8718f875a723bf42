"""Append-only, hash-chained audit log: every alert state change and every notification sent.

One JSON object per line; each carries ``prev`` (the previous line's hash) and ``hash`` = SHA-256 of its own
canonical JSON without ``hash``. Changing, removing or reordering a line breaks the chain from there on, and
``alumon audit verify`` says where. A line torn by a crash mid-write is cut off on the next start and the cut
is itself logged, so the file stays verifiable.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def _change_key(record: dict[str, Any]) -> str:
    """``incident.state.reminder``, as analytics.email.notice_key names a notice."""
    return f"{record.get('incident')}.{record.get('state')}.{record.get('reminder', 0)}"


def _digest(record: dict[str, Any]) -> str:
    body = json.dumps({k: v for k, v in record.items() if k != "hash"}, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class AuditLog:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.prev, self.seq = GENESIS, 0
        self.sent: set[str] = set()  # Message-IDs already accepted by SMTP
        self.changes: set[str] = set()  # notice keys (incident.state.reminder) of the state changes recorded
        torn = self._load()
        if torn:
            self.append("torn_tail_removed", bytes=len(torn), sha256=hashlib.sha256(torn).hexdigest())

    def _load(self) -> bytes:
        if not self.path.exists():
            return b""
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            record = json.loads(line)
            self.prev, self.seq = record["hash"], record["seq"]
            if record["event"] == "notification":
                self.sent.add(record["message_id"])
            elif record["event"] == "state":
                self.changes.add(_change_key(record))
        if end < len(data):  # a crash mid-write left half a line: keep the chain verifiable
            with self.path.open("r+b") as fh:
                fh.truncate(end)
            return data[end:]
        return b""

    def append(self, event: str, **fields: Any) -> str:
        record = {"seq": self.seq + 1, "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                  "event": event, **fields, "prev": self.prev}
        record["hash"] = _digest(record)
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        self.prev, self.seq = record["hash"], record["seq"]
        if event == "notification":
            self.sent.add(fields["message_id"])
        elif event == "state":
            self.changes.add(_change_key(fields))
        return str(record["hash"])


def verify(path: Path) -> tuple[int, list[str]]:
    """(lines checked, problems): each problem names the line and what is wrong with it."""
    problems: list[str] = []
    prev, n = GENESIS, 0
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                record = json.loads(raw)
            except ValueError:
                problems.append(f"line {n}: not JSON")
                prev = ""
                continue
            if record.get("seq") != n:
                problems.append(f"line {n}: sequence {record.get('seq')}, expected {n} (a line removed or moved)")
            if record.get("prev") != prev:
                problems.append(f"line {n}: does not follow line {n - 1} (prev hash differs)")
            if record.get("hash") != _digest(record):
                problems.append(f"line {n}: content changed (hash differs)")
            prev = record.get("hash", "")
    return n, problems
