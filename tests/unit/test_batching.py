"""sinks.batching.BatchingSink: flush on size or age, commit only after a successful write."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinks.batching import BatchingSink, TopicPartition


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Writer:
    fail: int = 0  # fail this many next calls
    batches: list[list[str]] = field(default_factory=list)

    def __call__(self, rows: list[str]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("sink down")
        self.batches.append(list(rows))


@dataclass
class Committer:
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)

    def __call__(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


def _sink(max_rows: int = 3, max_age_s: float = 1.0) -> tuple[BatchingSink[str], Writer, Committer, Clock]:
    writer, committer, clock = Writer(), Committer(), Clock()
    sink: BatchingSink[str] = BatchingSink(writer, committer, max_rows=max_rows, max_age_s=max_age_s, clock=clock)
    return sink, writer, committer, clock


def test_empty_sink_is_not_due_and_flush_does_nothing() -> None:
    sink, writer, committer, _ = _sink()
    assert not sink.due()
    assert sink.flush() == 0
    assert writer.batches == [] and committer.commits == []


def test_sink_is_due_when_max_rows_is_reached() -> None:
    sink, writer, committer, _ = _sink(max_rows=3)
    sink.add("a", "t", 0, 0)
    sink.add("b", "t", 0, 1)
    assert not sink.due()
    sink.add("c", "t", 0, 2)
    assert sink.due()
    assert sink.flush() == 3
    assert writer.batches == [["a", "b", "c"]]
    assert committer.commits == [{("t", 0): 3}]


def test_sink_is_due_when_the_batch_reaches_max_age() -> None:
    sink, writer, _, clock = _sink(max_rows=100, max_age_s=1.0)
    sink.add("a", "t", 0, 0)
    clock.now += 0.999
    assert not sink.due()
    clock.now += 0.001
    assert sink.due()
    assert sink.flush() == 1
    assert writer.batches == [["a"]]


def test_batch_age_counts_from_the_first_record_not_from_the_last_flush() -> None:
    sink, _, _, clock = _sink(max_rows=100, max_age_s=1.0)
    clock.now += 50  # idle time before any record does not count
    sink.add("a", "t", 0, 0)
    assert not sink.due()
    clock.now += 1.0
    assert sink.due()


def test_after_a_flush_the_sink_is_empty_and_not_due() -> None:
    sink, _, _, clock = _sink(max_rows=1)
    sink.add("a", "t", 0, 0)
    sink.flush()
    clock.now += 10
    assert sink.pending == 0
    assert not sink.due()
    assert sink.flush() == 0


def test_writer_failure_commits_nothing_and_keeps_the_batch_for_the_retry() -> None:
    sink, writer, committer, clock = _sink()
    writer.fail = 1
    sink.add("a", "t", 0, 7)
    sink.add("b", "t", 1, 3)
    with pytest.raises(ConnectionError):
        sink.flush()
    assert committer.commits == []
    assert sink.pending == 2
    assert sink.offsets == {("t", 0): 8, ("t", 1): 4}
    clock.now += 1.0
    assert sink.due()  # the kept batch keeps its age: it is due again
    assert sink.flush() == 2
    assert writer.batches == [["a", "b"]]
    assert committer.commits == [{("t", 0): 8, ("t", 1): 4}]


def test_records_added_after_a_failed_flush_join_the_retried_batch() -> None:
    sink, writer, committer, _ = _sink(max_rows=100)
    writer.fail = 1
    sink.add("a", "t", 0, 0)
    with pytest.raises(ConnectionError):
        sink.flush()
    sink.add("b", "t", 0, 1)
    sink.flush()
    assert writer.batches == [["a", "b"]]
    assert committer.commits == [{("t", 0): 2}]


def test_committer_failure_keeps_the_batch_so_it_is_written_again() -> None:
    sink, writer, committer, _ = _sink()

    def broken(offsets: Mapping[TopicPartition, int]) -> None:
        raise ConnectionError("broker down")

    sink.committer = broken
    sink.add("a", "t", 0, 0)
    with pytest.raises(ConnectionError):
        sink.flush()
    assert sink.pending == 1
    assert sink.offsets == {("t", 0): 1}
    sink.committer = committer
    assert sink.flush() == 1
    assert writer.batches == [["a"], ["a"]]  # written twice: idempotent writers make that harmless
    assert committer.commits == [{("t", 0): 1}]


def test_committed_offsets_are_last_offset_plus_one_per_partition() -> None:
    sink, _, committer, _ = _sink(max_rows=100)
    for topic, partition, offset in [("a", 0, 10), ("a", 0, 11), ("a", 1, 5), ("b", 0, 0), ("a", 0, 12)]:
        sink.add(f"{topic}{partition}{offset}", topic, partition, offset)
    sink.flush()
    assert committer.commits == [{("a", 0): 13, ("a", 1): 6, ("b", 0): 1}]


def test_an_older_offset_seen_late_never_moves_the_commit_back() -> None:
    sink, _, committer, _ = _sink(max_rows=100)
    sink.add("x", "t", 0, 20)
    sink.add("y", "t", 0, 5)
    sink.flush()
    assert committer.commits == [{("t", 0): 21}]


def test_records_without_a_row_still_advance_the_committed_offset() -> None:
    sink, writer, committer, _ = _sink(max_rows=100)
    sink.add("a", "t", 0, 0)
    sink.add(None, "t", 0, 1)
    sink.add(None, "t", 2, 9)
    assert sink.pending == 1
    assert sink.flush() == 1
    assert writer.batches == [["a"]]
    assert committer.commits == [{("t", 0): 2, ("t", 2): 10}]


def test_a_batch_of_only_rowless_records_commits_without_calling_the_writer() -> None:
    sink, writer, committer, clock = _sink(max_rows=1, max_age_s=1.0)
    sink.add(None, "t", 0, 4)
    assert not sink.due()  # no rows: size never triggers
    clock.now += 1.0
    assert sink.due()  # but age does, so the offset gets committed
    assert sink.flush() == 0
    assert writer.batches == []
    assert committer.commits == [{("t", 0): 5}]


def test_forget_drops_offsets_of_lost_partitions_only() -> None:
    sink, writer, committer, _ = _sink(max_rows=100)
    sink.add("a", "t", 0, 10)
    sink.add("b", "t", 1, 20)
    sink.add("c", "u", 0, 30)
    sink.forget({("t", 1), ("u", 0), ("never", 9)})
    assert sink.pending == 3  # rows stay: idempotent writers make a replay harmless
    sink.flush()
    assert writer.batches == [["a", "b", "c"]]
    assert committer.commits == [{("t", 0): 11}]


def test_offsets_seen_after_forget_are_committed_again() -> None:
    sink, _, committer, _ = _sink(max_rows=100)
    sink.add("a", "t", 1, 20)
    sink.forget({("t", 1)})
    sink.add("b", "t", 1, 3)  # partition came back, replay from an older offset
    sink.flush()
    assert committer.commits == [{("t", 1): 4}]


@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from(["a", "b"]), st.integers(0, 3), st.integers(0, 10_000)),
        min_size=1,
        max_size=40,
    )
)
def test_commit_is_max_offset_plus_one_per_partition_and_rows_keep_their_order(
    records: list[tuple[bool, str, int, int]],
) -> None:
    sink, writer, committer, _ = _sink(max_rows=10_000)
    for has_row, topic, partition, offset in records:
        sink.add(f"{topic}:{partition}:{offset}" if has_row else None, topic, partition, offset)
    sink.flush()
    expected: dict[TopicPartition, int] = {}
    for _, topic, partition, offset in records:
        expected[(topic, partition)] = max(expected.get((topic, partition), 0), offset + 1)
    assert committer.commits == [expected]
    rows = [f"{t}:{p}:{o}" for has_row, t, p, o in records if has_row]
    assert writer.batches == ([rows] if rows else [])
