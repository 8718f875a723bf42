"""The ingest disk buffer on its own: order, persistence across a reopen, and each full-buffer policy with
exact counts."""

from __future__ import annotations

from pathlib import Path

from alumon.config import BufferFullPolicy
from ingest.buffer import Appended, WriteBuffer

LINE = "telemetry,site=s,device=d,quantity=q value=1.0 {t}"  # 36 bytes + the timestamp


def batch(k: int, points: int = 10) -> list[str]:
    return [LINE.format(t=1_000_000 + k * 100 + i) for i in range(points)]


def size(lines: list[str]) -> int:
    return len("\n".join(lines).encode())


def test_batches_come_back_in_order_after_a_reopen(tmp_path: Path) -> None:
    buf = WriteBuffer(tmp_path / "b.sqlite", 10**6, BufferFullPolicy.BLOCK)
    for k in range(5):
        assert buf.append(batch(k)) is Appended.STORED
    first = buf.oldest()
    assert first is not None and first.lines == batch(0)
    buf.remove(first)
    buf.close()
    reopened = WriteBuffer(tmp_path / "b.sqlite", 10**6, BufferFullPolicy.BLOCK)
    assert (len(reopened), reopened.points, reopened.bytes) == (4, 40, 4 * size(batch(1)))
    got = []
    while (b := reopened.oldest()) is not None:
        got.append(b.lines)
        reopened.remove(b)
    assert got == [batch(k) for k in range(1, 5)]
    assert (len(reopened), reopened.points, reopened.bytes) == (0, 0, 0)


def test_block_policy_refuses_and_counts_nothing_dropped(tmp_path: Path) -> None:
    buf = WriteBuffer(tmp_path / "b.sqlite", 3 * size(batch(0)), BufferFullPolicy.BLOCK)
    assert [buf.append(batch(k)) for k in range(4)] == [Appended.STORED] * 3 + [Appended.FULL]
    assert (buf.points, buf.dropped_points) == (30, 0)


def test_drop_newest_keeps_the_oldest(tmp_path: Path) -> None:
    buf = WriteBuffer(tmp_path / "b.sqlite", 3 * size(batch(0)), BufferFullPolicy.DROP_NEWEST)
    assert [buf.append(batch(k)) for k in range(5)] == [Appended.STORED] * 3 + [Appended.DROPPED] * 2
    assert (buf.points, buf.dropped_points) == (30, 20)
    oldest = buf.oldest()
    assert oldest is not None and oldest.lines == batch(0)


def test_drop_oldest_keeps_the_newest(tmp_path: Path) -> None:
    buf = WriteBuffer(tmp_path / "b.sqlite", 3 * size(batch(0)), BufferFullPolicy.DROP_OLDEST)
    assert all(buf.append(batch(k)) is Appended.STORED for k in range(5))
    assert (len(buf), buf.points, buf.dropped_points) == (3, 30, 20)
    oldest = buf.oldest()
    assert oldest is not None and oldest.lines == batch(2)
    # A batch larger than the whole buffer is dropped rather than emptying the buffer for nothing.
    assert buf.append(batch(9, points=100)) is Appended.DROPPED
    assert (buf.points, buf.dropped_points) == (30, 120)
