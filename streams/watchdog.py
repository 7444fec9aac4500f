"""A worker that stopped consuming restarts itself: crash-only, like a kill -9 and a restart.

faust-streaming (0.15.3) can leave a worker that went through two rebalances within its first
seconds assigned but never consuming some partitions, with no error (see the issue 4 note). The
watchdog looks at the partitions this worker owns: when one has input waiting (high watermark above
the group's committed offset) and its committed offset has not moved for OMS_WORKER_STALL_S, it
logs what it saw and re-executes the worker in place (same PID). That is exactly a kill -9 and a
restart, which the flash-sale test proves loses nothing and oversells nothing: tables come back from
their changelogs, uncommitted input is read again, ids make repeats no-ops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Hashable
from typing import Any

from oms.settings import Settings

log = logging.getLogger(__name__)

EXIT_STALLED = 75  # EX_TEMPFAIL, if re-executing is not possible


class StallWatch:
    """Pure: which partitions have input waiting and no progress for ``limit_s`` seconds."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._since: dict[Hashable, tuple[int, float]] = {}

    def observe(self, now: float, offsets: dict[Hashable, tuple[int, int]], busy: bool = False) -> list[Hashable]:
        """``offsets``: partition -> (committed, high watermark). ``busy``: rebalancing or recovering,
        when not consuming is expected; the clock starts again afterwards."""
        if busy:
            self._since.clear()
            return []
        since: dict[Hashable, tuple[int, float]] = {}
        stalled = []
        for tp, (committed, high) in offsets.items():
            if high <= committed:
                continue  # nothing waiting
            previous = self._since.get(tp)
            if previous is None or previous[0] != committed:
                since[tp] = (committed, now)
            else:
                since[tp] = previous
                if now - previous[1] >= self.limit_s:
                    stalled.append(tp)
        self._since = since
        return stalled


def register_watchdog(app: Any, settings: Settings, sources: list[str], group: str) -> None:
    if settings.worker_stall_s <= 0:
        return
    watch = StallWatch(settings.worker_stall_s)
    interval = max(1.0, min(10.0, settings.worker_stall_s / 4))
    reader: Any = None

    def offsets(tps: list[Any]) -> dict[Hashable, tuple[int, int]]:
        from confluent_kafka import Consumer, TopicPartition

        nonlocal reader
        if reader is None:  # reads the group's commits; never joins the group
            reader = Consumer(
                {"bootstrap.servers": settings.kafka_bootstrap, "group.id": group, "enable.auto.commit": False}
            )
        found: dict[Hashable, tuple[int, int]] = {}
        committed = reader.committed([TopicPartition(tp.topic, tp.partition) for tp in tps], timeout=5)
        for tp in committed:
            _, high = reader.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=5, cached=False)
            found[(tp.topic, tp.partition)] = (max(tp.offset, 0), high)
        return found

    async def check() -> None:
        busy = bool(app.rebalancing or getattr(app, "in_recovery", False))
        tps = [tp for tp in app.consumer.assignment() if tp.topic in sources]
        if busy or not tps:
            watch.observe(time.monotonic(), {}, busy=True)
            return
        try:
            seen = await asyncio.get_running_loop().run_in_executor(None, offsets, tps)
        except Exception as exc:  # Kafka unreachable: not a stall of ours; look again next time
            log.warning("stall check skipped: %s", exc)
            return
        stalled = watch.observe(time.monotonic(), seen)
        if stalled:
            detail = ", ".join(f"{tp} committed {seen[tp][0]} of {seen[tp][1]}" for tp in stalled)
            log.error(
                "worker stalled: %s; no progress for %.0f s with input waiting. Restarting this worker in "
                "place (same as kill -9 and restart: tables are restored from their changelogs)",
                detail,
                settings.worker_stall_s,
            )
            restart()

    app.timer(interval, name="stall-watchdog")(check)


def restart() -> None:
    """Replace this process with a fresh worker (same PID, same environment)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    try:
        os.execv(sys.executable, [sys.executable, "-m", "oms.cli", "worker"])
    except OSError:
        os._exit(EXIT_STALLED)
