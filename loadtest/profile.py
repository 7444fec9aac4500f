"""The load profiles behind loadtest/shapes.py, as pure functions of time (no locust import, testable anywhere).

Three profiles, each over a run of ``seconds`` with ``peak`` users at most:

- ``ramp``: linear from 1 user to ``peak`` over the whole run.
- ``spike``: the 11.11 midnight spike. A baseline of ``peak / 10`` users (at least 1); at a third of the run
  the users jump to ``peak`` within :data:`SPIKE_RISE_S` seconds, hold for a third of the run, and drop back
  to the baseline for the last third.
- ``plateau``: a quick ramp (a tenth of the run, at most :data:`PLATEAU_RAMP_MAX_S` seconds) to ``peak``,
  then ``peak`` sustained to the end.

Environment (read by :func:`shape_from_env` and :func:`params_from_env`): ``OMS_LOAD_SHAPE`` (ramp, spike,
plateau, or none/unset for no shape: locust's ``-u``/``-r``/``-t`` then apply), ``OMS_LOAD_USERS`` (peak users,
default 20), ``OMS_LOAD_SECONDS`` (run length, default 60).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

SHAPES: tuple[str, ...] = ("ramp", "spike", "plateau")

#: Seconds the spike takes from the baseline to the peak (and back): the spawn rate is set for it.
SPIKE_RISE_S = 2.0
#: The plateau's ramp: a tenth of the run, never longer than this.
PLATEAU_RAMP_MAX_S = 10.0

DEFAULT_PEAK_USERS = 20
DEFAULT_SECONDS = 60.0


def _check(shape: str, peak: int, seconds: float) -> None:
    if shape not in SHAPES:
        raise ValueError(f"unknown load shape {shape!r}; use one of {', '.join(SHAPES)}")
    if peak < 1:
        raise ValueError(f"peak users must be at least 1, got {peak}")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"the run must last a positive number of seconds, got {seconds!r}")


def baseline(peak: int) -> int:
    """The spike's users before and after the spike: a tenth of the peak, at least 1."""
    return max(1, round(peak / 10))


def _plateau_ramp_s(seconds: float) -> float:
    return min(PLATEAU_RAMP_MAX_S, seconds / 10)


def users_at(shape: str, t: float, peak: int, seconds: float) -> int:
    """Users ``shape`` wants ``t`` seconds into a run of ``seconds`` (0 once the run is over)."""
    _check(shape, peak, seconds)
    if t >= seconds:
        return 0
    t = max(t, 0.0)
    if shape == "ramp":
        return max(1, min(peak, math.ceil(peak * t / seconds)))
    if shape == "spike":
        return peak if seconds / 3 <= t < 2 * seconds / 3 else baseline(peak)
    return max(1, min(peak, math.ceil(peak * t / _plateau_ramp_s(seconds))))


def spawn_rate(shape: str, peak: int, seconds: float) -> float:
    """Users started (or stopped) per second while ``shape`` moves to its next user count."""
    _check(shape, peak, seconds)
    if shape == "ramp":
        return max(1.0, peak / seconds)
    if shape == "spike":
        return max(1.0, (peak - baseline(peak)) / SPIKE_RISE_S)
    return max(1.0, peak / _plateau_ramp_s(seconds))


def tick_at(shape: str, t: float, peak: int, seconds: float) -> tuple[int, float] | None:
    """What a locust ``LoadTestShape.tick`` returns at ``t``: (users, spawn rate), or None to stop the run."""
    if t >= seconds:
        _check(shape, peak, seconds)
        return None
    return users_at(shape, t, peak, seconds), spawn_rate(shape, peak, seconds)


def shape_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """OMS_LOAD_SHAPE: one of :data:`SHAPES`, or None for "none" or unset (then locust's -u/-r/-t apply)."""
    env = os.environ if environ is None else environ
    name = env.get("OMS_LOAD_SHAPE", "").strip().lower()
    if name in ("", "none"):
        return None
    if name not in SHAPES:
        raise ValueError(f"OMS_LOAD_SHAPE={name!r}: use one of {', '.join(SHAPES)} or none")
    return name


def params_from_env(environ: Mapping[str, str] | None = None) -> tuple[int, float]:
    """(peak users, run seconds) from OMS_LOAD_USERS (default 20) and OMS_LOAD_SECONDS (default 60)."""
    env = os.environ if environ is None else environ
    try:
        peak = int(env.get("OMS_LOAD_USERS", "") or DEFAULT_PEAK_USERS)
    except ValueError as exc:
        raise ValueError(f"OMS_LOAD_USERS={env['OMS_LOAD_USERS']!r}: give a whole number of users") from exc
    try:
        seconds = float(env.get("OMS_LOAD_SECONDS", "") or DEFAULT_SECONDS)
    except ValueError as exc:
        raise ValueError(f"OMS_LOAD_SECONDS={env['OMS_LOAD_SECONDS']!r}: give a number of seconds") from exc
    if peak < 1:
        raise ValueError(f"OMS_LOAD_USERS={peak}: at least 1 user")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"OMS_LOAD_SECONDS={seconds!r}: a positive number of seconds")
    return peak, seconds
