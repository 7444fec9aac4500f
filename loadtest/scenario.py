"""The load's scenario knobs (OMS_LOAD_*): what the locust users send and how fast.

Kept apart from loadtest/users.py so that a process that must not import locust (which monkey-patches
it with gevent), such as ``oms bench pipeline``, can build the same simulator stream the users send.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from connectors.simulator import Simulator

KNOB_PREFIX = "OMS_LOAD_"
FLASH_SALE_SKUS: tuple[str, ...] = tuple(f"FS-{i:03d}" for i in range(100))
#: Seeds of the worker processes of a distributed run are this far apart.
WORKER_SEED_STRIDE = 1_000_000


@dataclass(frozen=True)
class Scenario:
    """The load run's knobs (module docstring): what to send and how fast."""

    seed: int = 1
    user_rate: float = 50.0
    channels: tuple[str, ...] | None = None
    markets: tuple[str, ...] | None = None
    skus: tuple[str, ...] = FLASH_SALE_SKUS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Scenario:
        env = os.environ if environ is None else environ

        def value(name: str) -> str:
            return env.get(KNOB_PREFIX + name, "").strip()

        def names(name: str) -> tuple[str, ...] | None:
            chosen = tuple(n.strip() for n in value(name).split(",") if n.strip())
            return chosen or None

        try:
            seed = int(value("SEED") or 1)
        except ValueError as exc:
            raise ValueError(f"{KNOB_PREFIX}SEED={value('SEED')!r}: give a whole number") from exc
        try:
            rate = float(value("USER_RATE") or 50.0)
        except ValueError as exc:
            raise ValueError(f"{KNOB_PREFIX}USER_RATE={value('USER_RATE')!r}: give deliveries per second") from exc
        if not 0 < rate < float("inf"):
            raise ValueError(f"{KNOB_PREFIX}USER_RATE={rate!r}: deliveries per second must be positive")
        skus = FLASH_SALE_SKUS
        if text := value("SKUS"):
            if text.isdigit():
                if int(text) < 1:
                    raise ValueError(f"{KNOB_PREFIX}SKUS={text}: at least 1 SKU")
                skus = tuple(f"FS-{i:03d}" for i in range(int(text)))
            else:
                skus = names("SKUS") or FLASH_SALE_SKUS
        markets = names("MARKETS")
        return cls(
            seed=seed,
            user_rate=rate,
            channels=names("CHANNELS"),
            markets=tuple(m.upper() for m in markets) if markets else None,
            skus=skus,
        )

    def simulator(self, worker_index: int = 0) -> Simulator:
        """The simulator of one load process (``worker_index`` of a distributed run, 0 otherwise)."""
        return Simulator(
            self.seed + WORKER_SEED_STRIDE * max(0, worker_index),
            self.channels,
            self.markets,
            skus=self.skus,
        )
