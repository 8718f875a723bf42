"""The edge spool's bounds, with exact counts: full under each policy, expiry by age, sequence numbers that
survive a reopen and stay visible as gaps when a poll is dropped."""

from __future__ import annotations

from pathlib import Path

from edge.spool import AGE_CHECK_EVERY, Spool


def build(seq: int) -> tuple[str, bytes]:
    return "t", f"m{seq}".encode()


def test_full_drop_oldest_keeps_the_newest(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", max_rows=100)
    for i in range(250):
        spool.append("d", 1000 * i, build)
    assert spool.depth() == 100 and spool.dropped_full == 150 and spool.dropped_age == 0
    assert [m.seq for m in spool.after(0, 1000)] == list(range(150, 250))


def test_full_drop_newest_keeps_the_oldest_and_burns_the_seq(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", max_rows=100, drop_newest=True)
    results = [spool.append("d", 1000 * i, build) for i in range(130)]
    assert sum(r is None for r in results) == 30 and spool.dropped_full == 30
    assert [m.seq for m in spool.after(0, 1000)] == list(range(100))
    for m in spool.after(0, 10):
        spool.remove(m.id)
    kept = spool.append("d", 130_000, build)
    assert kept is not None and kept.seq == 130  # the 30 dropped polls are a visible gap, never reused


def test_expiry_by_age_is_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", max_age_s=60)
    for i in range(AGE_CHECK_EVERY):  # one message a second for 100 s
        spool.append("d", 1000 * i, build)
    spool.append("d", 1000 * AGE_CHECK_EVERY, build)  # this append sweeps: everything before t=40 s is too old
    assert spool.dropped_age == 40 and spool.depth() == AGE_CHECK_EVERY + 1 - 40
    assert spool.oldest_age_s(1000 * AGE_CHECK_EVERY) == 60.0


def test_seq_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    spool = Spool(path)
    for i in range(5):
        spool.append("a", i, build)
    spool.close()
    again = Spool(path)
    msg = again.append("a", 5, build)
    assert msg is not None and msg.seq == 5 and again.depth() == 6


def test_acknowledged_messages_are_kept_and_sent_again_when_the_broker_lost_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", keep_delivered_s=60)
    ids = [m.id for m in (spool.append("d", 1000 * i, lambda s: ("t", b"x")) for i in range(5)) if m is not None]
    for i in ids[:3]:
        spool.remove(i, now_ms=100_000)  # acknowledged at t = 100 s
    assert spool.depth() == 2
    assert [m.id for m in spool.after(0, 10)] == ids[3:]
    assert spool.redeliver(now_ms=150_000) == 3  # within the 60 s kept: back in the outbox, in order
    assert [m.id for m in spool.after(0, 10)] == ids
    for i in ids:
        spool.remove(i, now_ms=200_000)
    assert spool.redeliver(now_ms=300_000) == 0  # acknowledged 100 s ago: no longer kept
    assert spool.depth() == 0
    last = spool.append("d", 6000, lambda s: ("t", b"y"))
    assert last is not None
    spool.remove(last.id, now_ms=400_000)
    spool.close()
    reopened = Spool(tmp_path / "s.sqlite", keep_delivered_s=60)  # the kept ones survive a restart
    assert reopened.redeliver(now_ms=410_000) == 1
    assert [(m.seq, m.payload) for m in reopened.after(0, 10)] == [(5, b"y")]
