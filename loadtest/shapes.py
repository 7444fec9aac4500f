"""Locust load shapes for the order pipeline: ramp, the 11.11 midnight spike, plateau.

Each one follows its profile in loadtest/profile.py (pure functions of time, described there) with the
peak users from ``OMS_LOAD_USERS`` (default 20) and the run length from ``OMS_LOAD_SECONDS`` (default 60),
read when locust creates the shape; each stops the run at the end. loadtest/locustfile.py exposes the one
``OMS_LOAD_SHAPE`` names (locust uses the single shape class it finds in a locustfile).
"""

from __future__ import annotations

from typing import ClassVar

from locust import LoadTestShape

from loadtest.profile import params_from_env, tick_at


class _ProfileShape(LoadTestShape):
    abstract = True
    profile: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.peak, self.seconds = params_from_env()

    def tick(self) -> tuple[int, float] | None:
        elapsed: float = self.get_run_time()  # type: ignore[no-untyped-call]
        return tick_at(self.profile, elapsed, self.peak, self.seconds)


class RampShape(_ProfileShape):
    """Linear from 1 user to the peak over the run."""

    profile = "ramp"


class MidnightSpikeShape(_ProfileShape):
    """A tenth of the peak, then the peak within seconds at a third of the run, held a third, then back."""

    profile = "spike"


class PlateauShape(_ProfileShape):
    """A quick ramp to the peak, then the peak sustained to the end."""

    profile = "plateau"


SHAPE_CLASSES: dict[str, type[_ProfileShape]] = {
    "ramp": RampShape,
    "spike": MidnightSpikeShape,
    "plateau": PlateauShape,
}
