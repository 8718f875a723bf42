"""The disk buffer that carries InfluxDB outages: batches of line protocol InfluxDB could not take yet, kept
in arrival order in SQLite (WAL, ``synchronous=FULL``: a committed batch survives ``kill -9`` and a power cut)
until a write succeeds.

Ingest acknowledges a message to the broker once its batch is either written to InfluxDB or committed here,
so the broker never has to hold an outage's worth of messages (mosquitto drops past ``max_queued_messages``).
The buffer is bounded in bytes; what happens when it is full is the site's ``ingest.buffer_full`` policy,
and every dropped point is counted.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from alumon.config import BufferFullPolicy


class Appended(Enum):
    STORED = "stored"
    DROPPED = "dropped"  # full under drop_newest (or larger than the whole buffer): counted, not stored
    FULL = "full"  # full under block: not stored, the caller keeps the messages unacknowledged


@dataclass(frozen=True)
class BufferedBatch:
    id: int
    lines: list[str]


class WriteBuffer:
    def __init__(self, path: Path, max_bytes: int, policy: BufferFullPolicy):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.policy = policy
        self.dropped_points = 0
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # acked messages live only here: fsync every commit
        self._db.execute("CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                         " points INTEGER NOT NULL, body BLOB NOT NULL)")
        row = self._db.execute("SELECT count(*), coalesce(sum(points), 0), coalesce(sum(length(body)), 0)"
                               " FROM batches").fetchone()
        self.batches, self.points, self.bytes = int(row[0]), int(row[1]), int(row[2])

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return self.batches

    def append(self, lines: list[str]) -> Appended:
        """Store a batch after the others, unless it does not fit (then the policy decides)."""
        body = "\n".join(lines).encode("utf-8")
        if self.bytes + len(body) > self.max_bytes:
            if self.policy is BufferFullPolicy.BLOCK:
                return Appended.FULL
            if self.policy is BufferFullPolicy.DROP_NEWEST or len(body) > self.max_bytes:
                self.dropped_points += len(lines)
                return Appended.DROPPED
            self._drop_oldest_until(self.max_bytes - len(body))
        self._db.execute("INSERT INTO batches (points, body) VALUES (?, ?)", (len(lines), body))
        self.batches, self.points, self.bytes = self.batches + 1, self.points + len(lines), self.bytes + len(body)
        return Appended.STORED

    def _drop_oldest_until(self, room: int) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            while self.bytes > room and self.batches:
                row = self._db.execute("SELECT id, points, length(body) FROM batches ORDER BY id LIMIT 1").fetchone()
                self._db.execute("DELETE FROM batches WHERE id = ?", (row[0],))
                self.batches, self.points, self.bytes = self.batches - 1, self.points - row[1], self.bytes - row[2]
                self.dropped_points += int(row[1])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def oldest(self) -> BufferedBatch | None:
        row = self._db.execute("SELECT id, body FROM batches ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        return BufferedBatch(int(row[0]), bytes(row[1]).decode("utf-8").split("\n"))

    def remove(self, batch: BufferedBatch) -> None:
        """The batch is in InfluxDB: forget it."""
        rows = self._db.execute("DELETE FROM batches WHERE id = ? RETURNING points, length(body)",
                                (batch.id,)).fetchall()
        for row in rows:
            self.batches, self.points, self.bytes = self.batches - 1, self.points - row[0], self.bytes - row[1]
