"""TableTimers: a timer never acts on tables while a rebalance or restore is under way, and a revoke
waits for a timer's step in flight (a 2-worker kill -9 flash sale oversold without both)."""

from __future__ import annotations

import asyncio

import pytest

from oms.settings import Settings
from streams.app import TableTimers, create_app

pytestmark = pytest.mark.usefixtures("clean_env")


def test_a_timer_may_act_only_when_no_rebalance_is_under_way() -> None:
    async def turns() -> list[bool]:
        app = create_app(Settings())
        timers = TableTimers(app, asyncio.Lock())
        seen: list[bool] = []
        acted: list[bool] = []

        @timers.every(60.0, "test-timer")
        async def step() -> None:
            acted.append(True)

        for rebalancing in (False, True, False):
            app.rebalancing = rebalancing
            acted.clear()
            await step()
            seen.append(bool(acted))
        return seen

    assert asyncio.run(turns()) == [True, False, True]


def test_a_revoke_waits_until_the_timer_step_in_flight_has_ended() -> None:
    async def scenario() -> list[str]:
        app = create_app(Settings())
        timers = TableTimers(app, asyncio.Lock())
        events: list[str] = []
        in_step, finish = asyncio.Event(), asyncio.Event()

        @timers.every(60.0, "test-timer")
        async def timer_step() -> None:
            in_step.set()
            await finish.wait()  # the step awaits Kafka's acks for its outputs and changelog writes
            events.append("timer step ended")

        async def revoke() -> None:
            await app.on_partitions_revoked.send(set())
            events.append("revoke done")

        step = asyncio.create_task(timer_step())
        await asyncio.wait_for(in_step.wait(), 5)
        revoking = asyncio.create_task(revoke())
        done, _ = await asyncio.wait({revoking}, timeout=0.3)
        assert not done, "the revoke went ahead while a timer's step was in flight"
        finish.set()
        await asyncio.wait_for(asyncio.gather(step, revoking), 5)
        return events

    assert asyncio.run(scenario()) == ["timer step ended", "revoke done"]


def test_a_timer_that_raises_is_logged_and_runs_again_at_its_next_beat(caplog: pytest.LogCaptureFixture) -> None:
    async def beats() -> list[str]:
        app = create_app(Settings())
        timers = TableTimers(app, asyncio.Lock())
        seen: list[str] = []

        @timers.every(60.0, "flaky-timer")
        async def step() -> None:
            seen.append("ran")
            if len(seen) == 1:
                raise ValueError("a value nobody foresaw")

        await step()  # does not raise: faust would crash the worker
        await step()
        return seen

    assert asyncio.run(beats()) == ["ran", "ran"]
    [record] = [r for r in caplog.records if "flaky-timer failed" in r.getMessage()]
    assert record.exc_info is not None and "a value nobody foresaw" in str(record.exc_info[1])


def test_a_timer_step_that_holds_the_agent_long_is_logged_with_how_long(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="streams.app")

    async def beats() -> None:
        app = create_app(Settings())
        clock = iter([100.0, 100.05, 200.0, 200.75])  # two beats: 50 ms, then 750 ms
        timers = TableTimers(app, asyncio.Lock(), clock=lambda: next(clock))

        @timers.every(60.0, "scan-timer")
        async def step() -> None:
            pass

        await step()
        await step()

    asyncio.run(beats())
    held = [r.getMessage() for r in caplog.records if "scan-timer held" in r.getMessage()]
    assert held == ["timer scan-timer held the agent for 750 ms"]
