"""A faust consumer that never commits an offset it did not process, nor skips unread records.

faust-streaming 0.15.3 loses consumed input across rebalances in four ways. The two-worker flash sale
with a kill -9 (tests/integration/test_flash_sale.py) lost 112-812 of 3,723 orders to them; each
was traced with per-event traces and the group's commit history:

1. **Fresh partitions resume past dropped records.** During a rebalance faust pauses the stream
   partitions, and ``getmany`` silently drops records already fetched for a paused partition,
   although aiokafka's position has moved past them. The rebalance ends with ``perform_seek`` to the
   committed offsets, but aiokafka seeks only to a committed offset > 0, so a partition with nothing
   committed yet resumes *after* them (a worker's first change on a fresh partition was offset 315).
2. **Skipped messages are acked.** A stream that takes a message while flow is suspended, or one
   fetched in an older generation, skips it, and its ``finally`` *acks* it; the next commit writes
   that offset + 1.
3. **Records dropped as already read.** faust drops a fetched record older than its per-partition
   "read offset". That offset races the seek that ends a rebalance (a batch fetched before the seek
   is still being delivered and moves it forward), so the re-fetched records are dropped: holes
   such as 372-424 that even a seek back did not fill.
4. **Off by one.** ``_new_offset`` treats the committed offset as the last processed one, but it is
   the next to read: a one-message hole at the head is committed over (the "1 of 3,723" of a CI run).

What this consumer does instead:

- After every rebalance, partitions with nothing (or 0) committed are sought to the log start, and
  each stream partition gets an *anchor*: where this assignment reads it from.
- ``ack`` records only messages a stream handed to an agent (faust marks them ``tracked``).
- The read offset is always unknown (``_NoReadOffset``): no fetched record is dropped. A record can
  then come twice, or after later ones (a hole read again); each agent's ``InOrder`` applies only
  the next record of a partition and has the partition read again from the missing one.
- ``_new_offset`` commits nothing before the partition's anchor is known, nor over a hole between
  the committed offset (or anchor) and the first acked one; commits wait, they never jump.
- A hole is sought back to the committed offset and read again (warning in the log), again after
  READ_AGAIN_S if it is still there. If it never fills, commits stop and the stall watchdog
  (streams/watchdog.py) restarts the worker, which reads from the committed offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from faust.transport.consumer import ensure_TP
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.drivers.aiokafka import ensure_aiokafka_TP
from faust.types import TP, AppT, EventT, Message

log = logging.getLogger(__name__)

#: Seconds before seeking back again if the same hole is still there.
READ_AGAIN_S = 10.0
#: Seconds without progress before InOrder reads a partition again that had a record left unapplied.
RETRY_S = 2.0


class SafeAckConsumer(AIOKafkaConsumer):
    """faust's aiokafka consumer with acks limited to processed messages and no head-gap commits."""

    def ack(self, message: Message) -> bool:
        if not message.tracked and self.app.topics.acks_enabled_for(message.topic):
            # Skipped by the stream (rebalance in progress or stale generation): never processed.
            message.acked = True  # nothing will process it in this generation; forget it
            log.debug("not committing skipped message %s[%s]@%s", message.topic, message.partition, message.offset)
            return False
        return bool(super().ack(message))

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed: Mapping[TP, int] = await super().seek_to_committed()
        streams = {ensure_TP(tp): offset for tp, offset in committed.items() if not self._is_changelog_tp(tp)}
        fresh = [tp for tp, offset in streams.items() if not offset]
        starts: Mapping[Any, int] = {}
        if fresh:
            # aiokafka seeks only to a committed offset > 0. Without one, the position stays where the
            # fetcher left it, which may be past records faust fetched and then discarded.
            aio = [ensure_aiokafka_TP(tp) for tp in fresh]
            starts = await self._thread.earliest_offsets(*aio)
            await self._thread.seek_to_beginning(*aio)
        earliest = {ensure_TP(tp): offset for tp, offset in starts.items()}
        for tp, offset in streams.items():
            self._anchors[tp] = offset or earliest.get(tp, 0)
        self.generation += 1
        return committed

    def anchor(self, tp: TP) -> int | None:
        """Where this assignment reads ``tp`` from (None until the seek that ends the rebalance)."""
        return self._anchors.get(tp)

    def gaps_cover(self, tp: TP, start: int, end: int) -> bool:
        """True when every offset in [start, end) is a known gap (absent from the log)."""
        return _head_covered(start, end, self._gap[tp])

    def read_from(self, tp: TP, offset: int, arrived: int) -> None:
        """Seek ``tp`` back to ``offset``: a later record (``arrived``, -1 if none) came before it (InOrder)."""
        why = f"offset {arrived} arrived before {offset}" if arrived >= 0 else f"stuck before {offset}"
        self._seek_back(tp, offset, f"{why}; reading again from {offset} to apply the records in order")

    def _seek_back(self, tp: TP, offset: int, why: str) -> None:
        """Seek ``tp`` to ``offset`` (logged with ``why``), at most once per READ_AGAIN_S for one offset."""
        now = time.monotonic()
        last = self._read_again_at.get(tp)
        if last is not None and last[0] == offset and now - last[1] < READ_AGAIN_S:
            return
        self._read_again_at[tp] = (offset, now)
        log.warning("%s[%d]: %s", tp.topic, tp.partition, why)
        seek = asyncio.ensure_future(self._thread.seek_wait({tp: offset}))
        self._seeks.add(seek)
        seek.add_done_callback(self._seek_done)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._anchors.pop(ensure_TP(tp), None)
        self.generation += 1
        await super().on_partitions_revoked(revoked)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Where this assignment reads each stream partition from (set by the seek that ends a
        # rebalance). Until then nothing is committed: acks may be for records past dropped ones.
        self._anchors: dict[TP, int] = {}
        # faust drops a fetched record older than its "read offset" as already read. That offset
        # races the seek that ends a rebalance (a batch fetched before the seek is still being
        # delivered and moves it forward), so records from the seek on were dropped: the holes
        # this consumer had to read again, sometimes more than once. Without it, a record can come
        # twice (after a seek back), which stable event ids make harmless, but is never dropped.
        self._read_offset = _NoReadOffset()
        self._read_again_at: dict[TP, tuple[int, float]] = {}
        self._seeks: set[asyncio.Future[None]] = set()
        #: changes with every rebalance (revoke, and the seek that ends it): InOrder starts again
        self.generation = 0

    def _read_again(self, tp: TP, committed: int, first_acked: int) -> None:
        """Seek ``tp`` back to its committed offset: records from there on were dropped, not processed.

        One agent consumes each partition in order, so a message acked past an unacked committed
        offset means the records in between never reached the agent (faust dropped them as older than
        its read offset, a race with the seek that ends a rebalance). Reading them again repeats the
        later ones too, which the stable event ids make harmless. Again after READ_AGAIN_S if the
        hole is still there.
        """
        self._seek_back(
            tp,
            committed,
            f"offsets {committed}-{first_acked - 1} were fetched but never processed (dropped during a "
            f"rebalance); reading them again from {committed}",
        )

    def _seek_done(self, seek: asyncio.Future[None]) -> None:
        self._seeks.discard(seek)
        if not seek.cancelled() and seek.exception() is not None:
            log.error("seeking back to re-read dropped records failed: %r", seek.exception())

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        if tp not in self._anchors:
            return None  # not yet sought in this assignment: the acks may be past dropped records
        committed = self._committed_offset[tp]
        if committed is None:
            committed = self._anchors[tp]
        if not _head_covered(committed, min(acked), self._gap[tp]):
            self._read_again(tp, committed, min(acked))
            return None
        result: int | None = super()._new_offset(tp)
        return result


class _NoReadOffset(MutableMapping[TP, int | None]):
    """faust's per-partition read offsets, always unknown: no fetched record is dropped as read."""

    def __getitem__(self, tp: TP) -> int | None:
        return None

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        pass

    def __delitem__(self, tp: TP) -> None:
        pass

    def __iter__(self) -> Iterator[TP]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _head_covered(committed: int, first_acked: int, gaps: Any) -> bool:
    """True when every offset in [committed, first_acked) is a known gap (absent from the log)."""
    position = committed
    for interval in sorted(gaps, key=lambda iv: iv.begin):
        if position >= first_acked:
            break
        if interval.begin > position:
            return False
        position = max(position, interval.end)
    return position >= first_acked


@dataclass(frozen=True)
class Admitted:
    """What ``InOrder.admit`` let through, and how far each partition moves once it is applied."""

    events: list[EventT[Any]]
    generation: int
    moved: dict[TP, int]
    newest_ms: dict[TP, int]  # the newest record timestamp among them, per partition


class InOrder:
    """One agent's records applied strictly in offset order per partition, each once per assignment.

    The consumer above reads a hole again by seeking back, but by then the agent has applied records
    after the hole. For the stock that is not harmless: first come, first served. A replay out of
    order refused a unit the first pass had granted (the answer already sent), while granting it to
    a later order, and the flash sale sold 75 units of 50. So an agent applies a partition's record
    only if it is the next one: a later record is left unapplied and un-tracked (never committed),
    and the partition is read again from the missing offset; an earlier one was applied already in
    this assignment and is skipped. Each rebalance starts again from the consumer's anchors.

    A record that came before the rebalance's anchor was known, or a seek that got lost, could leave
    a partition with nothing more arriving: ``retry`` (a timer) reads again any partition that had a
    record left unapplied, has input waiting and made no progress for RETRY_S.
    """

    def __init__(self, app: AppT | Any) -> None:
        self.app = app  # its consumer: a running SafeAckConsumer (anything else admits every record)
        self._next: dict[TP, int] = {}
        self._generation = -1
        self._stuck: set[TP] = set()  # partitions with a record left unapplied, until caught up
        self._progress_at: dict[TP, float] = {}
        self._seen_ms: dict[TP, int] = {}  # the newest record timestamp applied, per partition

    def admit(self, events: Sequence[EventT[Any]]) -> Admitted:
        consumer = self._running_consumer()
        if consumer is None:
            return Admitted(list(events), self._generation, {}, {})  # agent.test_context(): no broker, no offsets
        if consumer.generation != self._generation:
            self._next, self._generation = {}, consumer.generation
        moved: dict[TP, int] = {}
        admitted: list[EventT[Any]] = []
        for event in events:
            message = event.message
            tp, offset = message.tp, message.offset
            want = moved.get(tp, self._next.get(tp))
            if want is None:
                want = consumer.anchor(tp)
            if want is None:
                message.tracked = False  # before the seek that ends the rebalance: read again after it
                self._stuck.add(tp)
                continue
            if offset < want:
                continue  # applied already in this assignment (the partition was read again)
            if offset > want and not consumer.gaps_cover(tp, want, offset):
                message.tracked = False
                self._stuck.add(tp)
                consumer.read_from(tp, want, offset)
                continue
            moved[tp] = offset + 1
            admitted.append(event)
        return Admitted(admitted, consumer.generation, moved, _newest_ms(admitted))

    def advance(self, admitted: Admitted) -> None:
        """The admitted records are applied: their partitions move on (unless a rebalance came between)."""
        if admitted.generation == self._generation:
            self._next.update(admitted.moved)
            now = time.monotonic()
            for tp in admitted.moved:
                self._progress_at[tp] = now
            for tp, ms in admitted.newest_ms.items():
                self._seen_ms[tp] = max(ms, self._seen_ms.get(tp, 0))

    def clock_ms(self, tp: TP, now_ms: int) -> int:
        """The time up to which ``tp`` has been applied: now if caught up, else its newest record's time.

        A deadline timer (unpaid holds) must not expire an order at wall-clock time while the payment
        that came before the deadline still waits in the backlog, as after a restart: it waits until
        this clock passes the deadline.
        """
        consumer = self._running_consumer()
        if consumer is None or self._caught_up(consumer, tp, self._position(consumer, tp)):
            return now_ms
        return min(now_ms, self._seen_ms.get(tp, 0))

    async def retry(self) -> None:
        """Read again the partitions left with unapplied records and no progress (a timer runs this)."""
        consumer = self._running_consumer() if self._stuck else None
        if consumer is None:
            return
        now = time.monotonic()
        for tp in sorted(self._stuck):
            if consumer.anchor(tp) is None:
                continue  # not (or no longer) ours, or the rebalance has not ended yet
            start = self._position(consumer, tp)
            if self._caught_up(consumer, tp, start):
                self._stuck.discard(tp)  # everything there is has been applied
            elif start is not None and now - self._progress_at.get(tp, 0.0) >= RETRY_S:
                consumer.read_from(tp, start, -1)

    def _running_consumer(self) -> Any:
        """The app's SafeAckConsumer once started, else None (agent.test_context() has no broker)."""
        consumer: Any = self.app.consumer
        return consumer if hasattr(consumer, "anchor") and consumer.started else None

    def _position(self, consumer: Any, tp: TP) -> int | None:
        """The next offset of ``tp`` to apply: where this agent stopped, or the assignment's anchor."""
        applied = self._next.get(tp) if consumer.generation == self._generation else None
        return applied if applied is not None else consumer.anchor(tp)

    @staticmethod
    def _caught_up(consumer: Any, tp: TP, position: int | None) -> bool:
        """True when ``position`` is at the partition's high watermark (nothing waits to be applied)."""
        try:
            high = consumer.highwater(tp)
        except Exception:  # not assigned here any more
            return False
        return position is not None and high is not None and position >= high


def _newest_ms(events: list[EventT[Any]]) -> dict[TP, int]:
    newest: dict[TP, int] = {}
    for event in events:
        message = event.message
        ms = int((message.timestamp or 0) * 1000)
        if ms > newest.get(message.tp, -1):
            newest[message.tp] = ms
    return newest


def in_order(app: AppT, agent: str) -> InOrder:
    """An agent's InOrder, with its retry timer on the app."""
    gate = InOrder(app)
    app.timer(RETRY_S, name=f"in-order-{agent}")(gate.retry)
    return gate


def install(app: AppT) -> None:
    """Make ``app`` build SafeAckConsumer: call before the worker starts (the consumer is lazy)."""
    # Per app, not per class: Transport.Consumer is a class variable faust reads through the instance.
    app.transport.Consumer = SafeAckConsumer  # type: ignore[misc]
