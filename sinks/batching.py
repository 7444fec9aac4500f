"""A batching sink: add records, flush on size or age, commit offsets only after the flush succeeded.

Kafka-agnostic: the runner (sinks/runner.py) gives it a writer and a committer. If the writer fails,
nothing is committed and the batch is kept for the retry, so a crash at any point replays at most the
uncommitted batch; the writers are idempotent, so a replay changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Row = TypeVar("Row")
TopicPartition = tuple[str, int]


@dataclass
class BatchingSink(Generic[Row]):
    writer: Callable[[list[Row]], None]
    committer: Callable[[Mapping[TopicPartition, int]], None]
    max_rows: int = 5000
    max_age_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    rows: list[Row] = field(default_factory=list)
    #: next offset to commit per partition (last seen + 1), including records that made no row
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    _opened: float | None = None

    def add(self, row: Row | None, topic: str, partition: int, offset: int) -> None:
        """Take one consumed record; ``row=None`` still advances the offset (e.g. dead-lettered)."""
        if self._opened is None:
            self._opened = self.clock()
        if row is not None:
            self.rows.append(row)
        self.offsets[(topic, partition)] = max(offset + 1, self.offsets.get((topic, partition), 0))

    @property
    def pending(self) -> int:
        return len(self.rows)

    def due(self) -> bool:
        if self._opened is None:
            return False
        return len(self.rows) >= self.max_rows or self.clock() - self._opened >= self.max_age_s

    def flush(self) -> int:
        """Write then commit. Raises if either fails, keeping the batch. Returns rows written."""
        if self._opened is None:
            return 0
        if self.rows:
            self.writer(self.rows)
        self.committer(dict(self.offsets))
        written = len(self.rows)
        self.rows = []
        self.offsets = {}
        self._opened = None
        return written

    def forget(self, lost: set[TopicPartition]) -> None:
        """A rebalance took these partitions: their offsets are no longer ours to commit.

        Rows already gathered stay (idempotent writers make the new owner's replay harmless).
        """
        for tp in lost:
            self.offsets.pop(tp, None)
