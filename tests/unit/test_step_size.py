"""Steps capped by input bytes: consecutive, each at most the cap unless one record alone exceeds it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from streams.app import by_size


def _event(value: bytes, offset: int = 0) -> Any:
    return SimpleNamespace(value=value, message=SimpleNamespace(tracked=True, offset=offset, topic="t", partition=0))


def test_by_size_keeps_order_caps_each_run_and_never_makes_an_empty_one() -> None:
    events = [_event(b"x" * n, i) for i, n in enumerate([100, 100, 300, 50, 50, 50, 10])]
    runs = by_size(events, 200)
    assert [[e.message.offset for e in run] for run in runs] == [[0, 1], [2], [3, 4, 5, 6]]
    assert all(sum(len(e.value) for e in run) <= 200 or len(run) == 1 for run in runs)
    assert by_size([], 200) == []
    assert [len(run) for run in by_size(events, 10**9)] == [7]
    assert [len(run) for run in by_size(events, 1)] == [1] * 7
