"""A record that makes an agent's own logic raise is set aside as a dead letter, not retried for ever.

A step that raises is undone (``streams.app.Step``) and its records are read again. That is right
when the broker went away, and an endless loop when the record trips a bug or a case the code never
met: faust restarts the agent onto the same record, again and again, and every order behind it in
its partition waits (the routing crash of the full flash sale did exactly that until routing caught
its own errors).

So the agents' logic runs inside ``own_logic()``, which marks what it raises as the step's own
failure (``OwnLogicFailed``). ``isolating`` then applies the step's records one per step; a record
that fails alone is taken apart by the agent into its items (a batch record holds the changes,
answers or commands of many orders), each applied in a step of its own, and an item that still
fails becomes a dead letter with its own bytes, where it came from and the exception, while the
rest go on. What is raised outside ``own_logic()`` (publishing, changelog writes, cancellation) is
not the record's fault and propagates as before: the records are read again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from faust.types import EventT

log = logging.getLogger(__name__)


class OwnLogicFailed(Exception):
    """An agent's own logic raised while applying a step (the cause is ``__cause__``)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


@contextmanager
def own_logic() -> Iterator[None]:
    """Whatever the block raises (an ``Exception``, not a cancellation) is the step's own failure."""
    try:
        yield
    except OwnLogicFailed:
        raise
    except Exception as exc:
        raise OwnLogicFailed(exc) from exc


async def isolating(
    events: Sequence[EventT[Any]],
    run: Callable[[Sequence[EventT[Any]]], Awaitable[int]],
    take_apart: Callable[[EventT[Any], OwnLogicFailed], Awaitable[int]],
    agent: str,
) -> int:
    """``run(events)`` as one step; if its own logic fails, each record in a step of its own, and a record
    that fails alone goes to ``take_apart``. Returns what the steps return, summed."""
    try:
        return await run(events)
    except OwnLogicFailed as failed:
        log.error("%s agent: a step of %d records failed (%s): applying them one by one", agent, len(events), failed)
    done = 0
    for event in events:
        # the failed step un-tracked its records (never committed); admitted again, or not, by the next
        event.message.tracked = True
        try:
            done += await run([event])
        except OwnLogicFailed as failed:
            message = event.message
            log.error(
                "%s agent: record %s[%s]@%s fails alone: taking it apart",
                agent, message.topic, message.partition, message.offset, exc_info=failed.cause,
            )  # fmt: skip
            message.tracked = True  # un-tracked again by the failed step: its settling step commits it
            done += await take_apart(event, failed)
    return done
