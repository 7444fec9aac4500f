"""Stock back to channels: available-to-sell (ATS) per channel from rules, coalesced and paced.

A stage of its own, fed from the ``inventory.v1`` ledger (keyed by SKU; every record carries the
row's state after the move). For every SKU that changed it computes ATS per channel from rules that
are data (a TOML file, ``samples/channel_stock.toml``), keeps only the latest value per
(channel, SKU) and releases them no faster than each channel's API quota, to the Redis read model
(``{prefix}oms:ats:{channel}``: SKU -> units) and to ``channel.stock.v1`` for the connectors.

The pure parts, tested without a broker: ``parse_rules``/``load_rules`` (errors name the file, the
field and the line), ``ats`` and ``Coalescer``. Below them, the Kafka and Redis edge:
``run_channel_stock`` (the consume loop, run as a thread of ``oms sink``) and ``read_ats``
(what ``oms stock channels`` prints).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import math
import threading
import time
import tomllib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import orjson
import redis
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from schemas.codec import CodecError, codec
from schemas.rules_text import TOML_AT, TomlLines
from schemas.topics import CHANNEL_STOCK, CHANNELS, INVENTORY
from sinks.runner import SinkStats

if TYPE_CHECKING:
    from oms.settings import Settings

log = logging.getLogger(__name__)
M = TypeVar("M")

SAMPLE_RULES = "channel_stock.toml"

# ---------------------------------------------------------------------------------------------- rules


class RulesError(ValueError):
    """A rules file that cannot be used; ``problems`` names each field and, where known, its line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(
            f"{source}: channel stock rules refused, {len(problems)} problem(s):\n  " + "\n  ".join(problems)
        )
        self.source = source
        self.problems = problems


@dataclass(frozen=True)
class ChannelRule:
    """How much of the pool one channel is offered, and how fast it may be told."""

    channel: str
    quota: float
    """Requests per second the channel's API allows per shop: at most this many pushes per second."""
    buffer: int = 0
    share: Fraction = Fraction(1)
    max: int | None = None
    warehouses: frozenset[str] | None = None
    """Warehouses that serve the channel; None: every warehouse."""
    burst: int = 1
    min_interval_s: float = 0.0
    """One (channel, SKU) is pushed at most this often; in between only its latest value waits."""

    def serves(self, warehouse: str) -> bool:
        return self.warehouses is None or warehouse in self.warehouses


@dataclass(frozen=True)
class Lock:
    """``units`` of ``sku`` held for ``channel``'s campaign until ``until_ms`` (exclusive)."""

    channel: str
    sku: str
    units: int
    until_ms: int

    def active(self, now_ms: int) -> bool:
        return now_ms < self.until_ms


@dataclass(frozen=True)
class Rules:
    version: str
    channels: Mapping[str, ChannelRule]
    locks: tuple[Lock, ...] = ()
    digest: str = ""
    """The first hex digits of the file's SHA-256: tells two edits under one version apart."""
    source: str = "<rules>"
    _by_sku: Mapping[str, tuple[Lock, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_sku: dict[str, list[Lock]] = {}
        for lock in self.locks:
            by_sku.setdefault(lock.sku, []).append(lock)
        object.__setattr__(self, "_by_sku", {sku: tuple(locks) for sku, locks in by_sku.items()})

    @property
    def label(self) -> str:
        """What every published value carries: ``version+digest``."""
        return f"{self.version}+{self.digest}" if self.digest else self.version

    def locks_for(self, sku: str) -> tuple[Lock, ...]:
        return self._by_sku.get(sku, ())

    def expiring(self, after_ms: int, until_ms: int) -> set[str]:
        """SKUs with a lock that ends in ``(after_ms, until_ms]``: their ATS changes with no ledger record."""
        return {lock.sku for lock in self.locks if after_ms < lock.until_ms <= until_ms}


class StockLevel(Protocol):
    """One warehouse's row of a SKU (``sinks.stock_model.StockRow`` and ``Level`` both fit)."""

    @property
    def on_hand(self) -> int: ...

    @property
    def reserved(self) -> int: ...


@dataclass(frozen=True)
class Level:
    on_hand: int
    reserved: int


def ats(rows_by_warehouse: Mapping[str, StockLevel], rules: Rules, channel: str, sku: str, now_ms: int) -> int:
    """Units of ``sku`` to offer on ``channel`` now.

    pool = sum over the channel's warehouses of max(0, on_hand - reserved); minus units locked for
    other channels' campaigns (active at ``now_ms``); minus the channel's buffer; times its share,
    rounded down; at most its max; never below 0. Units locked for this channel stay in its pool.
    """
    try:
        rule = rules.channels[channel]
    except KeyError:
        raise KeyError(f"channel {channel!r} has no rule in {rules.source}") from None
    pool = sum(max(0, row.on_hand - row.reserved) for wh, row in rows_by_warehouse.items() if rule.serves(wh))
    others = sum(lock.units for lock in rules.locks_for(sku) if lock.channel != channel and lock.active(now_ms))
    base = pool - others - rule.buffer
    if base <= 0:
        return 0
    value = base * rule.share.numerator // rule.share.denominator
    return max(0, value if rule.max is None else min(value, rule.max))


_TOP_KEYS = ("version", "defaults", "channel", "lock")
_LOCK_KEYS = ("channel", "sku", "units", "until")


class _Bad(ValueError):
    pass


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Bad(f"expected a whole number of units >= 0, got {value!r}")
    return value


def _share(value: Any) -> Fraction:
    if not _is_number(value) or not 0 <= value <= 1:
        raise _Bad(f"expected a share of the pool between 0 and 1 (1: all of it, 0.5: half), got {value!r}")
    return Fraction(str(value))  # exact: 0.29 x 100 is 29, not 28.999...


def _warehouses(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _Bad(f'expected a list of warehouse codes, e.g. ["WH-JKT-1"], got {value!r}')
    if not value:
        raise _Bad("an empty list would offer nothing; leave the field out to use every warehouse")
    return frozenset(v.strip() for v in value)


def _quota(value: Any) -> float:
    if not _is_number(value) or value <= 0:
        raise _Bad(f"expected requests per second > 0, e.g. 10, got {value!r}")
    return float(value)


def _burst(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _Bad(f"expected a whole number of requests >= 1, got {value!r}")
    return value


def _interval(value: Any) -> float:
    if not _is_number(value) or value < 0:
        raise _Bad(f"expected seconds >= 0, got {value!r}")
    return float(value)


_CHANNEL_FIELDS: dict[str, Callable[[Any], Any]] = {
    "quota": _quota,
    "buffer": _count,
    "share": _share,
    "max": _count,
    "warehouses": _warehouses,
    "burst": _burst,
    "min_interval_s": _interval,
}


class _Problems:
    def __init__(self, text: str) -> None:
        self.lines = TomlLines(text)
        self.items: list[str] = []

    def add(self, where: str, message: str, table: str = "", index: int = 0, key: str | None = None) -> None:
        line = self.lines.line(table, index, key)
        self.items.append(f"{f'line {line}: ' if line else ''}{where}: {message}")


def _unknown(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"unknown field {name!r}" + (f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(known)}")


def parse_rules(text: str, source: str = "<rules>") -> Rules:
    """The rules in a TOML text, or RulesError naming every problem (file, field, line)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = TOML_AT.match(str(exc))
        where = f"line {at['line']}, column {at['col']}: " if at else ""
        raise RulesError(source, [f"{where}not valid TOML: {at['msg'] if at else exc}"]) from exc
    problems = _Problems(text)
    for key in data:
        if key not in _TOP_KEYS:
            problems.add(key, _unknown(key, _TOP_KEYS), key=key)
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        problems.add("version", f'expected a name for this version of the rules, e.g. "2026-11-01.1", got {version!r}')
        version = ""
    raw_defaults = data.get("defaults", {})
    defaults = _channel_fields(raw_defaults, "defaults", "[defaults]", problems)
    raw_defaults = raw_defaults if isinstance(raw_defaults, dict) else {}
    channels: dict[str, ChannelRule] = {}
    tables = data.get("channel")
    if not isinstance(tables, dict) or not tables:
        problems.add(
            "[channel.<name>]", "no channel to sync: add a table per channel, e.g. [channel.shopee] quota = 10"
        )
        tables = {}
    for name, table in tables.items():
        where = f"[channel.{name}]"
        if name not in CHANNELS:
            problems.add(where, f"unknown channel {name!r}; channels: {', '.join(CHANNELS)}", f"channel.{name}")
            continue
        before = len(problems.items)
        fields = {**defaults, **_channel_fields(table, f"channel.{name}", where, problems)}
        if "quota" not in fields and len(problems.items) == before and "quota" not in raw_defaults:
            problems.add(
                f"{where} quota",
                "missing: requests per second the channel's API allows per shop, e.g. quota = 10 "
                "(or set it under [defaults])",
                f"channel.{name}",
            )
        if len(problems.items) == before and "quota" in fields:
            channels[name] = ChannelRule(channel=name, **fields)
    locks = _locks(data.get("lock", []), set(tables), problems)
    if problems.items:
        raise RulesError(source, problems.items)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return Rules(version=str(version).strip(), channels=channels, locks=locks, digest=digest, source=source)


def _channel_fields(table: Any, path: str, where: str, problems: _Problems) -> dict[str, Any]:
    if not isinstance(table, dict):
        problems.add(where, f"expected a table of fields, got {table!r}", path)
        return {}
    out: dict[str, Any] = {}
    for key, value in table.items():
        check = _CHANNEL_FIELDS.get(key)
        if check is None:
            problems.add(where, _unknown(key, _CHANNEL_FIELDS), path, key=key)
            continue
        try:
            out[key] = check(value)
        except _Bad as exc:
            problems.add(f"{where} {key}", str(exc), path, key=key)
    return out


def _locks(entries: Any, channels: set[str], problems: _Problems) -> tuple[Lock, ...]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        problems.add("[[lock]]", "expected [[lock]] tables with channel, sku, units and until", "lock")
        return ()
    out: list[Lock] = []
    for index, entry in enumerate(entries):
        where = f"[[lock]] #{index + 1}"
        before = len(problems.items)
        for key in entry:
            if key not in _LOCK_KEYS:
                problems.add(where, _unknown(key, _LOCK_KEYS), "lock", index, key)
        for key in _LOCK_KEYS:
            if key not in entry:
                problems.add(f"{where} {key}", "missing", "lock", index)
        channel, sku, units, until = (entry.get(k) for k in _LOCK_KEYS)
        if "channel" in entry and channel not in channels:
            problems.add(
                f"{where} channel",
                f"{channel!r} has no [channel.{channel}] table; locks are for synced channels",
                "lock",
                index,
                "channel",
            )
        if "sku" in entry and (not isinstance(sku, str) or not sku.strip()):
            problems.add(f"{where} sku", f"expected a SKU code, got {sku!r}", "lock", index, "sku")
        if "units" in entry:
            try:
                _count(units)
            except _Bad as exc:
                problems.add(f"{where} units", str(exc), "lock", index, "units")
        until_ms = _until_ms(until) if "until" in entry else None
        if "until" in entry and until_ms is None:
            problems.add(
                f"{where} until",
                "expected a time with its UTC offset, e.g. 2026-12-12T23:59:59+08:00, got "
                + (until.isoformat() if isinstance(until, datetime) else repr(until)),
                "lock",
                index,
                "until",
            )
        if len(problems.items) == before and until_ms is not None:
            out.append(Lock(str(channel), str(sku).strip(), int(units), until_ms))
    return tuple(out)


def _until_ms(value: Any) -> int | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        return None  # a time without an offset is ambiguous across six markets
    return int(value.timestamp() * 1000)


def sample_rules_path() -> Path:
    return Path(str(resources.files("connectors").joinpath("samples", SAMPLE_RULES)))


def rules_path(settings: Settings) -> Path:
    """``OMS_CHANNEL_STOCK_RULES``, or the packaged sample when it is empty."""
    return Path(settings.channel_stock_rules).expanduser() if settings.channel_stock_rules else sample_rules_path()


def load_rules(path: Path) -> Rules:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else f"not UTF-8 ({exc.reason})"
        raise RulesError(str(path), [f"cannot read the file: {why}"]) from exc
    return parse_rules(text, str(path))


# ------------------------------------------------------------------------------ coalescer and pacer


@dataclass(frozen=True)
class Update(Generic[M]):
    """One value to push: the latest ATS of (channel, sku), and which changes it reflects."""

    channel: str
    sku: str
    available: int
    since: M
    """Mark of the oldest change not pushed before this value (for latency and safe commits)."""
    latest: M
    """Mark of the newest change it reflects."""


@dataclass
class _Pending(Generic[M]):
    available: int
    since: M
    latest: M


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float
    at: float | None = None

    def refill(self, now: float) -> None:
        if self.at is not None and now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now if self.at is None else max(self.at, now)


class Coalescer(Generic[M]):
    """Latest ATS per (channel, SKU), released per channel no faster than its quota. Pure: ``now`` is given.

    ``offer`` keeps only the newest value per (channel, SKU), or drops it when it equals what was last
    pushed. ``due(now)`` returns what may go out now: per channel a token bucket of ``quota`` tokens/s
    holding at most ``burst``, oldest waiting first, and one (channel, SKU) at most every
    ``min_interval_s``. So in any window of T seconds a channel gets at most ``burst + quota x T``
    pushes, and every value still waiting goes out once tokens allow.
    """

    def __init__(self, rules: Mapping[str, ChannelRule]) -> None:
        self._rules: dict[str, ChannelRule] = {}
        self._pending: dict[str, OrderedDict[str, _Pending[M]]] = {}
        self._last: dict[str, dict[str, int | None]] = {}
        self._pushed_at: dict[str, OrderedDict[str, float]] = {}
        self._buckets: dict[str, _Bucket] = {}
        self.set_rules(rules)

    def set_rules(self, rules: Mapping[str, ChannelRule]) -> None:
        """New quotas apply from now (tokens kept); a channel no longer synced is forgotten."""
        for gone in set(self._rules) - set(rules):
            for table in (self._rules, self._pending, self._last, self._pushed_at, self._buckets):
                table.pop(gone, None)
        for channel, rule in rules.items():
            self._rules[channel] = rule
            self._pending.setdefault(channel, OrderedDict())
            self._last.setdefault(channel, {})
            self._pushed_at.setdefault(channel, OrderedDict())
            bucket = self._buckets.get(channel)
            if bucket is None:
                self._buckets[channel] = _Bucket(rule.quota, rule.burst, rule.burst)
            else:
                bucket.rate, bucket.capacity = rule.quota, rule.burst
                bucket.tokens = min(bucket.tokens, rule.burst)

    def knows(self, channel: str, sku: str) -> bool:
        return sku in self._last[channel] or sku in self._pending[channel]

    def seed(self, channel: str, sku: str, available: int | None) -> None:
        """What the channel already has (e.g. read back from Redis after a restart), if not known yet."""
        if not self.knows(channel, sku):
            self._last[channel][sku] = available

    def last(self, channel: str, sku: str) -> int | None:
        return self._last[channel].get(sku)

    def offer(self, channel: str, sku: str, available: int, mark: M, since: M | None = None) -> bool:
        """Take a newly computed value; True if it waits to go out. ``since`` defaults to ``mark``."""
        queue = self._pending[channel]
        entry = queue.get(sku)
        last = self._last[channel].get(sku)
        if last is not None and available == last:
            if entry is not None:
                del queue[sku]  # back to what the channel shows: nothing to push
            return False
        if entry is None:
            queue[sku] = _Pending(available, mark if since is None else since, mark)
        else:
            entry.available, entry.latest = available, mark
        return True

    def due(self, now: float) -> list[Update[M]]:
        """The updates allowed out at ``now`` (each consumes a token); they count as pushed."""
        out: list[Update[M]] = []
        for channel, queue in self._pending.items():
            if not queue:
                continue
            bucket = self._buckets[channel]
            bucket.refill(now)
            if bucket.tokens < 1:
                continue
            gap = self._rules[channel].min_interval_s
            pushed_at = self._pushed_at[channel]
            while pushed_at and now - next(iter(pushed_at.values())) >= gap:
                pushed_at.popitem(last=False)  # pushed longer than gap ago: no longer holds anything back
            chosen: list[str] = []
            for sku in queue:
                if len(chosen) >= int(bucket.tokens):
                    break
                if sku not in pushed_at:
                    chosen.append(sku)
            for sku in chosen:
                entry = queue.pop(sku)
                bucket.tokens -= 1
                self._last[channel][sku] = entry.available
                if gap > 0:
                    pushed_at[sku] = now
                    pushed_at.move_to_end(sku)
                out.append(Update(channel, sku, entry.available, entry.since, entry.latest))
        return out

    def requeue(self, updates: Iterable[Update[M]]) -> None:
        """Updates ``due`` returned that could not be written: they wait again, first in line.

        What the channel has is unknown now, so the next value is pushed even if it equals one of these.
        """
        for update in updates:
            queue = self._pending[update.channel]
            self._last[update.channel].pop(update.sku, None)
            entry = queue.get(update.sku)
            if entry is None:
                queue[update.sku] = _Pending(update.available, update.since, update.latest)
            else:
                entry.since = update.since  # a newer value waits; it also reflects the older changes
            queue.move_to_end(update.sku, last=False)

    def forget(self, skus: Iterable[str]) -> None:
        """Drop everything about these SKUs (their partition went to another consumer)."""
        for sku in skus:
            for channel in self._rules:
                self._pending[channel].pop(sku, None)
                self._last[channel].pop(sku, None)
                self._pushed_at[channel].pop(sku, None)

    def waiting(self) -> Iterator[Update[M]]:
        """Every value waiting to go out, per channel oldest first."""
        for channel, queue in self._pending.items():
            for sku, entry in queue.items():
                yield Update(channel, sku, entry.available, entry.since, entry.latest)

    @property
    def pending(self) -> int:
        return sum(len(queue) for queue in self._pending.values())


# ------------------------------------------------------------------ the edge: Kafka and Redis


ATS_PREFIX = "oms:ats:"
META_PREFIX = "oms:ats-meta:"
RULES_KEY = "oms:ats-rules"

# KEYS[1] the channel's ATS hash, KEYS[2] its meta hash; ARGV: sku, available, partition, offset, meta JSON.
# A value computed from an older ledger offset (a consumer that lost its partition and did not know yet)
# never overwrites a newer one; the same offset does (new rules, an expired lock).
_NOT_OLDER = """
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur then
  local ok, meta = pcall(cjson.decode, cur)
  if ok and type(meta) == 'table' and tonumber(meta.p) == tonumber(ARGV[3])
      and tonumber(meta.o) > tonumber(ARGV[4]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
return 1
"""


def ats_key(prefix: str, channel: str) -> str:
    return f"{prefix}{ATS_PREFIX}{channel}"


def meta_key(prefix: str, channel: str) -> str:
    return f"{prefix}{META_PREFIX}{channel}"


@dataclass(frozen=True)
class Source:
    """Where a change came from: its inventory.v1 record, and whether it was read live (not in the rebuild)."""

    partition: int
    offset: int
    timestamp_ms: int
    live: bool = True


@dataclass
class ChannelStockStats(SinkStats):
    """``written``: updates pushed (Redis and channel.stock.v1); ``consumed``: ledger records read."""

    undecodable: int = 0
    computed: int = 0
    pushed_by_channel: dict[str, int] = field(default_factory=dict)
    caught_up: bool = False
    """Every assigned partition's ledger was read up to where it ended at assignment (the rebuild)."""
    pending: int = 0
    dirty: int = 0
    skus: int = 0
    commits: int = 0
    rules_version: str = ""
    rules_errors: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    """Commit-to-update latency per push: from the Kafka timestamp of the oldest ledger record it reflects
    (read live, not during the rebuild) until Kafka acknowledged the update and Redis holds it."""

    def latency_ms(self, quantile: float) -> float | None:
        values = sorted(self.latencies_ms)
        if not values:
            return None
        return values[min(len(values) - 1, max(0, math.ceil(quantile * len(values)) - 1))]

    @property
    def p50_ms(self) -> float | None:
        return self.latency_ms(0.50)

    @property
    def p99_ms(self) -> float | None:
        return self.latency_ms(0.99)


@dataclass
class _Partition:
    next_offset: int = 0
    end: int | None = None
    """The high watermark when we were assigned the partition: reading up to it is the rebuild."""
    committed: int = -1
    caught_up: bool = False


class _Runner:
    """One consumer's state: latest row per (SKU, warehouse) of its partitions, and what waits to go out."""

    def __init__(
        self, settings: Settings, path: Path, rules: Rules, stats: ChannelStockStats, client: redis.Redis
    ) -> None:
        self.settings = settings
        self.path = path
        self.rules = rules
        self.stats = stats
        self.redis = client
        self.script = client.register_script(_NOT_OLDER)
        self.ledger = INVENTORY.full_name(settings.topic_prefix)
        self.out_topic = CHANNEL_STOCK.full_name(settings.topic_prefix)
        self.rows: dict[str, dict[str, Level]] = {}
        self.latest: dict[str, Source] = {}
        self.dirty: dict[str, Source] = {}
        self.parts: dict[int, _Partition] = {}
        self.coalescer: Coalescer[Source] = Coalescer(rules.channels)
        self.rules_stat = _stat(path)
        self.lock_check_ms = _now_ms()
        stats.rules_version = rules.label

    # -- consuming

    def take(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("channel stock: consumer error %s", err)
            return
        partition, offset = msg.partition(), msg.offset()
        part = self.parts.get(partition) if partition is not None else None
        if part is None or partition is None or offset is None:
            return
        part.next_offset = offset + 1
        self.stats.consumed += 1
        try:
            r = codec("stock_movement").decode(msg.value() or b"")
        except CodecError as exc:  # the redis-stock sink dead-letters it; here it changes nothing
            self.stats.undecodable += 1
            log.warning("channel stock: %s[%d]@%d is not a StockMovement: %s", self.ledger, partition, offset, exc)
            return
        kind, timestamp = msg.timestamp()
        source = Source(partition, offset, timestamp if kind != TIMESTAMP_NOT_AVAILABLE else _now_ms(), part.caught_up)
        sku = r["sku"]
        self.rows.setdefault(sku, {})[r["warehouse"]] = Level(r["on_hand_after"], r["reserved_after"])
        self.latest[sku] = source
        self.dirty.setdefault(sku, source)

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            tp.offset = OFFSET_BEGINNING  # the ledger is the source: rebuild the rows from its start
            self.parts[tp.partition] = _Partition()
        consumer.assign(partitions)
        self.stats.caught_up = False

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {tp.partition for tp in partitions}
        try:
            self.commit(consumer, only=lost)
        except Exception as exc:  # the new owner re-reads from the last commit; values are absolute
            log.warning("channel stock: commit on revoke failed: %s", exc)
        skus = [sku for sku, source in self.latest.items() if source.partition in lost]
        self.coalescer.forget(skus)
        for sku in skus:
            self.rows.pop(sku, None)
            self.latest.pop(sku, None)
            self.dirty.pop(sku, None)
        for partition in lost:
            self.parts.pop(partition, None)

    def check_caught_up(self, consumer: Consumer) -> None:
        waiting = [p for p, part in self.parts.items() if not part.caught_up]
        for partition in waiting:
            part = self.parts[partition]
            tp = TopicPartition(self.ledger, partition)
            if part.end is None:
                try:
                    low, high = consumer.get_watermark_offsets(tp, timeout=5)
                    committed = consumer.committed([tp], timeout=5)[0].offset
                except KafkaException as exc:
                    log.warning("channel stock: where %s[%d] ends is not known yet (%s)", self.ledger, partition, exc)
                    continue  # asked again on the next round
                part.end, part.committed = high, max(committed, -1)
                part.next_offset = max(part.next_offset, low)
            position = consumer.position([tp])[0].offset
            if part.next_offset >= part.end or position >= part.end:
                part.caught_up = True
                part.next_offset = max(part.next_offset, part.end)
        self.stats.caught_up = bool(self.parts) and all(part.caught_up for part in self.parts.values())

    # -- computing

    def expire_locks(self) -> None:
        now_ms = _now_ms()
        for sku in self.rules.expiring(self.lock_check_ms, now_ms):
            if sku in self.latest:
                self.dirty.setdefault(sku, replace(self.latest[sku], live=False))
        self.lock_check_ms = now_ms

    def reload_rules(self) -> None:
        current = _stat(self.path)
        if current == self.rules_stat:
            return
        self.rules_stat = current
        try:
            rules = load_rules(self.path)
        except RulesError as exc:
            self.stats.rules_errors += 1
            log.error("channel stock: %s\n  the running rules %s stay in force", exc, self.rules.label)
            return
        if rules.label == self.rules.label:
            return
        log.warning("channel stock: rules %s -> %s from %s", self.rules.label, rules.label, self.path)
        self.rules = rules
        self.coalescer.set_rules(rules.channels)
        self.stats.rules_version = rules.label
        for sku, source in self.latest.items():
            self.dirty.setdefault(sku, replace(source, live=False))

    def compute(self) -> None:
        """ATS of every changed SKU on every channel, offered to the coalescer; nothing while any assigned
        partition is still being rebuilt (a value from half a ledger would be pushed and then corrected)."""
        if not self.dirty or not self.stats.caught_up:
            return
        ready = list(self.dirty)
        self.seed(ready)
        now_ms = _now_ms()
        for sku in ready:
            since = self.dirty.pop(sku)
            rows, latest = self.rows[sku], self.latest[sku]
            for channel in self.rules.channels:
                value = ats(rows, self.rules, channel, sku, now_ms)
                self.coalescer.offer(channel, sku, value, latest, since)
            self.stats.computed += 1

    def seed(self, skus: list[str]) -> None:
        """Values the channels already have, from Redis, so a restart re-pushes only what changed."""
        for channel in self.rules.channels:
            unknown = [sku for sku in skus if not self.coalescer.knows(channel, sku)]
            for start in range(0, len(unknown), 1000):
                chunk = unknown[start : start + 1000]
                try:
                    values = self.redis.hmget(ats_key(self.settings.topic_prefix, channel), chunk)
                except Exception as exc:  # unknown: pushed again, which is harmless
                    log.warning("channel stock: cannot read back %s from Redis: %s", channel, exc)
                    return
                for sku, value in zip(chunk, values, strict=True):
                    self.coalescer.seed(channel, sku, int(value) if value is not None else None)

    # -- writing

    def write(self, producer: Producer, updates: list[Update[Source]], now_ms: int) -> None:
        """Every update to channel.stock.v1 (acknowledged), then to Redis; raises if either fails.

        ``now_ms`` is when the pacer released them: their ``computed_at_ms``, on the pacer's timeline.
        """
        encode = codec("channel_stock").encode
        prefix, tenant, label = self.settings.topic_prefix, self.settings.tenant, self.rules.label
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for u in updates:
            value = encode(
                {"tenant": tenant, "channel": u.channel, "sku": u.sku, "available": u.available,
                 "computed_at_ms": now_ms, "source_partition": u.latest.partition, "source_offset": u.latest.offset,
                 "source_time_ms": u.latest.timestamp_ms, "rules_version": label}
            )  # fmt: skip
            key = f"{u.channel}:{u.sku}".encode()
            while True:
                try:
                    producer.produce(self.out_topic, key=key, value=value, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)  # the local queue is full: let deliveries drain
        left = producer.flush(30)
        if left or errors:
            raise RuntimeError(f"Kafka did not acknowledge {left or len(errors)} update(s): {errors[:3]}")
        pipe = self.redis.pipeline(transaction=False)
        for u in updates:
            meta = orjson.dumps({"at": now_ms, "p": u.latest.partition, "o": u.latest.offset, "rules": label})
            keys = [ats_key(prefix, u.channel), meta_key(prefix, u.channel)]
            self.script(keys=keys, args=[u.sku, u.available, u.latest.partition, u.latest.offset, meta], client=pipe)
        pipe.set(f"{prefix}{RULES_KEY}", label)
        pipe.execute()
        done_ms = _now_ms()
        for u in updates:
            self.stats.pushed_by_channel[u.channel] = self.stats.pushed_by_channel.get(u.channel, 0) + 1
            if u.since.live:
                self.stats.latencies_ms.append(max(0, done_ms - u.since.timestamp_ms))
        self.stats.written += len(updates)
        self.stats.flushes += 1

    def commit(self, consumer: Consumer, only: set[int] | None = None) -> None:
        """Commit, per caught-up partition, up to the oldest change not yet written (never backwards)."""
        safe = {p: part.next_offset for p, part in self.parts.items() if part.caught_up and (only is None or p in only)}
        for update in self.coalescer.waiting():
            p = update.since.partition
            if p in safe:
                safe[p] = min(safe[p], update.since.offset)
        for source in self.dirty.values():
            if source.partition in safe:
                safe[source.partition] = min(safe[source.partition], source.offset)
        todo = [TopicPartition(self.ledger, p, o) for p, o in safe.items() if o > self.parts[p].committed]
        if todo:
            consumer.commit(offsets=todo, asynchronous=False)
            for tp in todo:
                self.parts[tp.partition].committed = tp.offset
            self.stats.commits += 1

    def refresh_stats(self) -> None:
        self.stats.pending = self.coalescer.pending
        self.stats.dirty = len(self.dirty)
        self.stats.skus = len(self.rows)


def run_channel_stock(
    settings: Settings,
    stop: threading.Event,
    stats: ChannelStockStats | None = None,
    group_id: str | None = None,
    path: Path | None = None,
    reload_every_s: float = 2.0,
) -> ChannelStockStats:
    """Consume inventory.v1 until ``stop`` is set: rebuild the rows from the ledger's start, then push
    ATS per channel as it changes, paced per channel, to Redis and channel.stock.v1.

    Offsets are committed only up to the oldest change whose value is not yet written (at least once:
    the values are absolute, so a repeat is harmless). A bad rules file at start raises RulesError.
    """
    stats = stats or ChannelStockStats()
    path = path or rules_path(settings)
    rules = load_rules(path)
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10)
    runner = _Runner(settings, path, rules, stats, client)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group_id or f"{settings.topic_prefix}oms-channel-stock",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(settings.consumer_session_timeout_s * 1000),
            "max.poll.interval.ms": 300_000,
        }
    )
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 1}
    )
    consumer.subscribe([runner.ledger], on_assign=runner.on_assign, on_revoke=runner.on_revoke)
    retry_at, backoff = 0.0, 0.5
    next_commit = next_reload = time.monotonic()
    try:
        while not stop.is_set():
            for msg in consumer.consume(num_messages=1000, timeout=0.02):
                runner.take(msg)
            runner.check_caught_up(consumer)
            now = time.monotonic()
            if now >= next_reload:
                runner.reload_rules()
                next_reload = now + reload_every_s
            runner.expire_locks()
            runner.compute()
            if now >= retry_at:
                released, released_ms = time.monotonic(), _now_ms()  # one instant on both clocks
                updates = runner.coalescer.due(released)
                if updates:
                    try:
                        runner.write(producer, updates, released_ms)
                        backoff = 0.5
                    except Exception as exc:
                        runner.coalescer.requeue(updates)
                        stats.failed_flushes += 1
                        log.warning(
                            "channel stock: writing %d update(s) failed (%s); retry in %.1fs",
                            len(updates),
                            exc,
                            backoff,
                        )
                        retry_at, backoff = now + backoff, min(backoff * 2, 30.0)
            if now >= next_commit:
                try:
                    runner.commit(consumer)
                except KafkaException as exc:  # e.g. a rebalance under way: the next round commits
                    log.warning("channel stock: commit failed (%s); retried", exc)
                next_commit = now + settings.sink_flush_seconds
            runner.refresh_stats()
        try:
            runner.commit(consumer)
        except Exception as exc:
            log.warning("channel stock: final commit failed (%s); the rest is re-read on restart", exc)
    finally:
        consumer.close()
        producer.flush(10)
        client.close()
    return stats


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _now_ms() -> int:
    return int(time.time() * 1000)


# ------------------------------------------------------------------------ reading: oms stock channels


@dataclass(frozen=True)
class ChannelAts:
    sku: str
    channel: str
    available: int
    computed_at_ms: int | None
    rules_version: str
    ledger_partition: int | None
    ledger_offset: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "channel": self.channel,
            "available": self.available,
            "computed_at_ms": self.computed_at_ms,
            "rules_version": self.rules_version,
            "ledger_partition": self.ledger_partition,
            "ledger_offset": self.ledger_offset,
        }


def read_ats(
    client: redis.Redis, prefix: str = "", sku: str | None = None, channel: str | None = None
) -> list[ChannelAts]:
    """ATS per (SKU, channel) from Redis, sorted by SKU then channel (in registry order)."""
    channels = [channel] if channel is not None else list(CHANNELS)
    pipe = client.pipeline(transaction=False)
    for ch in channels:
        if sku is None:
            pipe.hgetall(ats_key(prefix, ch))
            pipe.hgetall(meta_key(prefix, ch))
        else:
            pipe.hget(ats_key(prefix, ch), sku)
            pipe.hget(meta_key(prefix, ch), sku)
    found = pipe.execute()
    out: list[ChannelAts] = []
    for i, ch in enumerate(channels):
        values, metas = found[2 * i], found[2 * i + 1]
        if sku is not None:
            values = {sku: values} if values is not None else {}
            metas = {sku: metas} if metas is not None else {}
        metas = {_text(k): v for k, v in metas.items()}
        for key, value in values.items():
            name = _text(key)
            meta: dict[str, Any] = orjson.loads(metas[name]) if name in metas else {}
            out.append(
                ChannelAts(name, ch, int(value), meta.get("at"), meta.get("rules", ""), meta.get("p"), meta.get("o"))
            )
    order = {ch: i for i, ch in enumerate(CHANNELS)}
    return sorted(out, key=lambda a: (a.sku, order.get(a.channel, len(order)), a.channel))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
