"""Crash-safe store-and-forward: every message is committed to SQLite (WAL) before it is published and
leaves the outbox only after the broker's PUBACK. The per-device sequence number lives here too, committed
in the same transaction as the message, so a restart never reuses or skips a number.

A PUBACK only means the broker has the message. A broker that loses its state (its disk wiped, a failover
to an empty node) loses what it had not yet handed to ingest. So an acknowledged message moves to a
``delivered`` table and stays there for ``keep_delivered_s``; when the broker says it lost our session, the
publisher moves those back to the outbox and sends them again (InfluxDB writes are idempotent).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_ROWS = 1_000_000
AGE_CHECK_EVERY = 100  # appends between expiry sweeps (the sweep is one indexed DELETE)


@dataclass(frozen=True)
class SpooledMessage:
    id: int
    device: str
    seq: int
    poll_ms: int
    topic: str
    payload: bytes


class Spool:
    """Bounded by ``max_rows`` (policy ``drop_oldest`` or ``drop_newest`` when full) and ``max_age_s`` (older
    messages are dropped). Every drop is counted by cause; nothing leaves silently."""

    def __init__(self, path: Path, max_rows: int = DEFAULT_MAX_ROWS, max_age_s: float | None = None,
                 drop_newest: bool = False, keep_delivered_s: float = 0.0):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.drop_newest = drop_newest
        self.dropped_full = 0
        self.dropped_age = 0
        self._appends = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL,"
            " seq INTEGER NOT NULL, poll_ms INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS outbox_poll_ms ON outbox (poll_ms)")  # the age sweep
        self._db.execute("CREATE TABLE IF NOT EXISTS seqs (device TEXT PRIMARY KEY, last_seq INTEGER NOT NULL)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS delivered (id INTEGER PRIMARY KEY, device TEXT NOT NULL, seq INTEGER NOT NULL,"
            " poll_ms INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, acked_ms INTEGER NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS delivered_acked_ms ON delivered (acked_ms)")
        self.keep_delivered_ms = int(keep_delivered_s * 1000)
        self._removes = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def dropped(self) -> int:
        return self.dropped_full + self.dropped_age

    def append(self, device: str, poll_ms: int, build: Callable[[int], tuple[str, bytes]]) -> SpooledMessage | None:
        """Allocate the device's next seq, build the message with it and commit both atomically.

        None when the spool is full under ``drop_newest``: the poll is counted as dropped and its seq is
        still consumed, so the gap is visible to every subscriber."""
        with self._lock:
            self._appends += 1
            if self.max_age_s is not None and self._appends % AGE_CHECK_EVERY == 1:
                self._expire(poll_ms)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT last_seq FROM seqs WHERE device = ?", (device,)).fetchone()
                seq = 0 if row is None else int(row[0]) + 1
                if self.drop_newest and self._depth() >= self.max_rows:
                    self._db.execute(
                        "INSERT INTO seqs (device, last_seq) VALUES (?, ?) "
                        "ON CONFLICT(device) DO UPDATE SET last_seq = excluded.last_seq", (device, seq))
                    self._db.execute("COMMIT")
                    self.dropped_full += 1
                    return None
                topic, payload = build(seq)
                cur = self._db.execute(
                    "INSERT INTO outbox (device, seq, poll_ms, topic, payload) VALUES (?, ?, ?, ?, ?)",
                    (device, seq, poll_ms, topic, payload),
                )
                self._db.execute(
                    "INSERT INTO seqs (device, last_seq) VALUES (?, ?) "
                    "ON CONFLICT(device) DO UPDATE SET last_seq = excluded.last_seq", (device, seq))
                excess = self._depth() - self.max_rows
                if excess > 0:
                    self._db.execute(
                        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,))
                    self.dropped_full += excess
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            assert cur.lastrowid is not None
            return SpooledMessage(cur.lastrowid, device, seq, poll_ms, topic, payload)

    def after(self, last_id: int, limit: int) -> list[SpooledMessage]:
        """Spooled messages with id > last_id, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, device, seq, poll_ms, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (last_id, limit),
            ).fetchall()
        return [SpooledMessage(int(r[0]), r[1], int(r[2]), int(r[3]), r[4], bytes(r[5])) for r in rows]

    def remove(self, message_id: int, now_ms: int = 0) -> None:
        """The broker acknowledged it: out of the outbox, into ``delivered`` while it may be needed again."""
        with self._lock:
            if not self.keep_delivered_ms:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (message_id,))
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO delivered SELECT id, device, seq, poll_ms, topic, payload, ? "
                             "FROM outbox WHERE id = ?", (now_ms, message_id))
            self._db.execute("DELETE FROM outbox WHERE id = ?", (message_id,))
            self._removes += 1
            if self._removes % AGE_CHECK_EVERY == 1:
                self._db.execute("DELETE FROM delivered WHERE acked_ms < ?", (now_ms - self.keep_delivered_ms,))
            self._db.execute("COMMIT")

    def redeliver(self, now_ms: int) -> int:
        """Put every message acknowledged within ``keep_delivered_s`` back in the outbox (the broker lost them);
        returns how many. Ids are kept, so they go out again in their original order."""
        if not self.keep_delivered_ms:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute(
                "INSERT OR IGNORE INTO outbox (id, device, seq, poll_ms, topic, payload) SELECT id, device, seq, "
                "poll_ms, topic, payload FROM delivered WHERE acked_ms >= ?", (now_ms - self.keep_delivered_ms,))
            self._db.execute("DELETE FROM delivered")
            self._db.execute("COMMIT")
            return max(cur.rowcount, 0)

    def _expire(self, now_ms: int) -> None:
        assert self.max_age_s is not None
        cur = self._db.execute("DELETE FROM outbox WHERE poll_ms < ?", (now_ms - int(self.max_age_s * 1000),))
        self.dropped_age += max(cur.rowcount, 0)

    def oldest_age_s(self, now_ms: int) -> float:
        """Age of the oldest message still waiting for its PUBACK (0 when the spool is empty)."""
        with self._lock:
            row = self._db.execute("SELECT poll_ms FROM outbox ORDER BY id LIMIT 1").fetchone()
        return 0.0 if row is None else max(0.0, (now_ms - int(row[0])) / 1000.0)

    def _depth(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def depth(self) -> int:
        with self._lock:
            return self._depth()
