"""The one typed settings object. Every address and knob is an ``OMS_``-prefixed environment variable.

Production points these at real clusters; the defaults are the embedded services that ``oms up``
starts on 127.0.0.1.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.bundles import Bundles
from streams.routing_rules import load_rules, sample_rules_path

ENV_PREFIX = "OMS_"
T = TypeVar("T")

_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._-]{0,60}$")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class SettingsError(Exception):
    """A setting has a wrong value. The message names the environment variable and what to do."""


class Settings(BaseSettings):
    """Effective configuration of one OMS process. Frozen: read once at start."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    data_dir: Path = Field(
        default=Path(".oms"), description="Where embedded services keep data, logs, jars and PID files."
    )
    tenant: str = Field(default="default", description="Tenant id stamped on every record.")

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port."
    )
    kafka_version: str = Field(default="4.4.0", description="Apache Kafka version fetched from Maven Central.")
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535, description="Embedded KRaft controller.")
    kafka_heap_mb: int = Field(default=512, ge=128, le=16384, description="Embedded broker JVM heap cap.")
    topic_prefix: str = Field(default="", description="Prepended to every topic name (isolates test runs).")
    partitions: int = Field(default=4, ge=1, le=1024, description="Partitions for topics we create.")
    consumer_session_timeout_s: float = Field(default=10.0, ge=3.0, le=300.0)

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis read model.")

    clickhouse_url: str = Field(
        default="", description="ClickHouse server over HTTP, e.g. http://host:8123. Empty: embedded chDB."
    )
    clickhouse_user: str = Field(default="default")
    clickhouse_password: SecretStr = Field(default=SecretStr(""))
    clickhouse_database: str = Field(default="oms", description="Database holding the OMS tables.")

    worker_web_host: str = Field(default="127.0.0.1", description="faust worker web server bind address.")
    worker_web_port: int = Field(default=6066, ge=1, le=65535)
    worker_stall_s: float = Field(
        default=120.0,
        ge=0,
        le=86400,
        description="A worker whose partitions have input waiting and no committed progress for this long "
        "restarts itself in place (0: never).",
    )
    agent_batch_max: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="Records an agent takes per step: their outputs go out together and each touched state is "
        "written to its changelog once.",
    )
    agent_batch_wait_ms: float = Field(
        default=50.0, gt=0, le=10_000, description="...or fewer when no more arrive within this wait."
    )
    agent_step_max_bytes: int = Field(
        default=256 * 1024,
        ge=1,
        le=1 << 30,
        description="Input bytes the orders and inventory agents apply per step, at least one record: the rest "
        "of what they took goes in further steps, so under a backlog decisions leave steadily, not in bursts.",
    )
    sink_batch_rows: int = Field(default=5000, ge=1, le=1_000_000, description="Flush a sink batch at this size.")
    sink_flush_seconds: float = Field(default=1.0, gt=0, le=60, description="...or at this age.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info")

    pending_update_wait_s: float = Field(
        default=6 * 3600.0, gt=0, description="How long a status update waits for its order before it is dead-lettered."
    )
    pending_check_s: float = Field(default=10.0, gt=0, le=3600, description="How often waiting updates are checked.")

    short_policy: str = Field(
        default="reject",
        description="What an order with a line short of stock becomes: reject, backorder or partial. One value "
        "for all channels, or per channel: `*=reject,lazada=backorder`.",
    )
    unpaid_hold_s: str = Field(
        default="*=3600,lazada=1800",
        description="How long stock stays reserved for an unpaid order, counted from its creation, per channel "
        "(`*` is every other channel). Then the hold is released and the order is `expired`.",
    )
    bundles_file: str = Field(
        default="",
        description="Bundle and kit rules (TOML, e.g. connectors/samples/bundles.toml): each bundle SKU is "
        "reserved as one, one hold per component. Empty: no bundles.",
    )
    hold_check_s: float = Field(default=5.0, gt=0, le=3600, description="How often unpaid holds are checked.")
    retired_hold_keep_h: float = Field(
        default=48.0,
        gt=0,
        description="How long the stock remembers a hold that holds no units (short, released, returned), so a "
        "repeated command still gets its first answer. Keep it longer than any channel's retry window.",
    )
    shipped_hold_keep_days: float = Field(
        default=60.0,
        gt=0,
        description="How long the stock remembers a shipped hold, so a return that passes quality check puts its "
        "units back once. A restock after that is held as early and never applied.",
    )
    closed_order_keep_days: float = Field(
        default=7.0,
        gt=0,
        description="How long the orders agent keeps the whole allocation of a closed order (delivered, completed, "
        "cancelled, returned, or refused or expired holding nothing); then only when it closed is kept: later "
        "changes of the order are still published to orders.v1 but move no stock.",
    )
    closed_order_check_s: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="The beat of the timer that settles and forgets closed orders: it scans the allocations "
        "only once one can be due, then settles or forgets at most 5,000 orders a beat.",
    )
    order_forget_days: float = Field(
        default=90.0,
        gt=0,
        description="How long after it closed the orders agent forgets an order altogether (its lifecycle state "
        "too). A delivery of that order after this is taken as a new order: keep it longer than any channel "
        "re-sends an order. At least OMS_CLOSED_ORDER_KEEP_DAYS.",
    )
    channel_stock_rules: str = Field(
        default="",
        description="The channel stock rules (TOML): buffer, share, max, warehouses and API quota per channel, "
        "campaign locks. Empty: the packaged sample connectors/samples/channel_stock.toml.",
    )
    routing_rules: str = Field(
        default="",
        description="The fulfilment routing rules (TOML): markets, nodes, carriers, holds. Empty: the packaged "
        "sample connectors/samples/routing.toml. Re-read when it changes; a bad edit is refused, the rules stay.",
    )
    routing_reload_s: float = Field(
        default=5.0, gt=0, le=3600, description="How often the routing rules file is checked."
    )

    query_port: int = Field(
        default=0, ge=0, le=65535, description="Where the embedded ClickHouse owner answers queries (0: any free)."
    )
    alert_webhook_url: str = Field(default="", description="Slack-compatible webhook for alerts. Empty: off.")
    alert_webhook_timeout_s: float = Field(default=5.0, gt=0, le=120, description="Per webhook request.")
    alert_retry_max_s: float = Field(
        default=60.0, gt=0, le=3600, description="Webhook retries back off up to this wait, and keep trying."
    )
    detector_tick_s: float = Field(default=1.0, gt=0, le=60, description="How often time-based detectors run.")
    spike_bucket_s: float = Field(
        default=10.0, ge=1, le=3600, description="Order-rate and dead-letter spikes compare buckets of this length."
    )
    spike_min_orders: int = Field(default=30, ge=1, description="A bucket needs this many orders to be a spike.")
    ship_by_confirm_s: float = Field(
        default=60.0, ge=0, le=86400, description="An order must stay at ship-by risk this long before it alerts."
    )
    stock_drift_s: float = Field(
        default=900.0,
        gt=0,
        le=86400 * 7,
        description="A channel showing other stock than we pushed for this long alerts.",
    )
    price_min_samples: int = Field(
        default=20, ge=3, description="Earlier sales of a SKU needed before a price error can fire."
    )
    webhook_host: str = Field(default="127.0.0.1", description="`oms connectors serve` bind address.")
    webhook_port: int = Field(default=8080, ge=1, le=65535)
    webhook_public_url: str = Field(
        default="", description="Base URL marketplaces call (Shopee signs it); empty: as the request arrived."
    )
    webhook_dedupe_hours: float = Field(default=48.0, gt=0, description="How long a delivery id is remembered.")
    shopee_partner_key: SecretStr = Field(default=SecretStr(""), description="Shopee push signature key.")
    lazada_app_key: str = Field(default="")
    lazada_app_secret: SecretStr = Field(default=SecretStr(""))
    tiktok_app_key: str = Field(default="")
    tiktok_app_secret: SecretStr = Field(default=SecretStr(""))
    shopify_webhook_secret: SecretStr = Field(default=SecretStr(""))
    tokopedia_webhook_secret: SecretStr = Field(default=SecretStr(""), description="X-OMS-Signature scheme.")
    grab_webhook_secret: SecretStr = Field(default=SecretStr(""), description="X-OMS-Signature scheme.")
    pos_webhook_secret: SecretStr = Field(default=SecretStr(""), description="X-OMS-Signature scheme.")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers or not all(_HOST_PORT.match(s) and 0 < int(s.rsplit(":", 1)[1]) < 65536 for s in servers):
            raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return ",".join(servers)

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError(f"expected a redis://host:port/db URL, got {value!r}")
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _clickhouse(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError(f"expected http(s)://host:port or empty for embedded chDB, got {value!r}")
        return value.rstrip("/")

    @field_validator("clickhouse_database", "tenant")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"use letters, digits and _ (not starting with a digit), got {value!r}")
        return value

    @field_validator("order_forget_days")
    @classmethod
    def _forget_after_keep(cls, value: float, info: ValidationInfo) -> float:
        keep = info.data.get("closed_order_keep_days")
        if keep is not None and value < keep:
            raise ValueError(f"must be at least OMS_CLOSED_ORDER_KEEP_DAYS ({keep:g}), got {value:g}")
        return value

    @field_validator("short_policy")
    @classmethod
    def _short_policy(cls, value: str) -> str:
        per_channel(value, _policy)
        return value

    @field_validator("unpaid_hold_s")
    @classmethod
    def _unpaid_hold(cls, value: str) -> str:
        per_channel(value, _seconds)
        return value

    @field_validator("bundles_file")
    @classmethod
    def _bundles_file(cls, value: str) -> str:
        if not value:
            return value
        Bundles.load(value)  # a BundleError is a ValueError naming the file, bundle and field
        return str(Path(value).expanduser().resolve())  # absolute: child processes may run elsewhere

    def bundles(self) -> Bundles:
        """The bundle rules of OMS_BUNDLES_FILE, read once (empty when unset)."""
        return self._bundles

    @cached_property
    def _bundles(self) -> Bundles:
        return Bundles.load(self.bundles_file) if self.bundles_file else Bundles.empty()

    def short_policy_for(self, channel: str) -> str:
        return per_channel(self.short_policy, _policy)(channel)

    def unpaid_hold_ms(self, channel: str) -> int:
        return int(per_channel(self.unpaid_hold_s, _seconds)(channel) * 1000)

    @field_validator("channel_stock_rules")
    @classmethod
    def _channel_stock_rules(cls, value: str) -> str:
        if not value:
            return value
        path = Path(value).expanduser().resolve()  # absolute: child processes may run elsewhere
        if not path.is_file():
            raise ValueError(f"no rules file at {value!r}; give the path of a TOML file, or empty for the sample")
        return str(path)

    @field_validator("routing_rules")
    @classmethod
    def _routing_rules(cls, value: str) -> str:
        if not value:
            return value
        load_rules(value)  # a RulesError is a ValueError naming the file, line and field
        return str(Path(value).expanduser().resolve())  # absolute: child processes may run elsewhere

    def routing_rules_path(self) -> Path:
        """OMS_ROUTING_RULES, or the packaged sample when it is empty."""
        return Path(self.routing_rules) if self.routing_rules else sample_rules_path()

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _TOPIC_PREFIX.match(value):
            raise ValueError(f"use letters, digits, '.', '_' or '-' (60 at most), got {value!r}")
        return value

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Settings:
        """A copy whose derived values (``data_path``, the bundle rules) follow the updated fields: pydantic
        copies the cached ones as they were, so a copy with another data_dir kept the old data_path."""
        copy = super().model_copy(update=update, deep=deep)
        for name, member in vars(Settings).items():
            if isinstance(member, cached_property):
                copy.__dict__.pop(name, None)
        return copy

    @cached_property
    def data_path(self) -> Path:
        """The data directory as an absolute path (relative settings resolve against the cwd)."""
        return self.data_dir.expanduser().resolve()

    @property
    def kafka_is_local(self) -> bool:
        return all(_host(s) in LOCAL_HOSTS for s in self.kafka_bootstrap.split(","))

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])

    @property
    def redis_is_local(self) -> bool:
        return (urlsplit(self.redis_url).hostname or "") in LOCAL_HOSTS

    @property
    def redis_port(self) -> int:
        return urlsplit(self.redis_url).port or 6379

    @property
    def clickhouse_embedded(self) -> bool:
        return not self.clickhouse_url

    def masked(self) -> dict[str, str]:
        """Effective settings for display: secrets masked, also inside URLs."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                text = "********" if value.get_secret_value() else ""
            else:
                text = _mask_url_password(str(value))
            out[ENV_PREFIX + name.upper()] = text
        return out


_POLICIES = ("reject", "backorder", "partial")


def _policy(text: str) -> str:
    if text not in _POLICIES:
        raise ValueError(f"{text!r} is not a policy: use one of {', '.join(_POLICIES)}")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 30 * 86400:
        raise ValueError(f"{text} seconds is out of range: use more than 0 and at most 30 days")
    return value


def per_channel(text: str, parse: Callable[[str], T]) -> Callable[[str], T]:
    """``value`` or ``*=value,channel=value,...`` -> a lookup by channel (``*`` for the rest).

    Raises ValueError naming the bad entry; a map without ``*`` must still cover every channel, so
    it needs one.
    """
    entries: dict[str, T] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        channel, sep, value = part.rpartition("=")
        channel = channel.strip() if sep else "*"
        if channel in entries:
            raise ValueError(f"channel {channel!r} is given twice in {text!r}")
        entries[channel] = parse(value.strip())
    if "*" not in entries:
        raise ValueError(f"{text!r} has no default: add `*=VALUE` for the channels not listed")
    default = entries["*"]
    return lambda channel: entries.get(channel, default)


def _host(server: str) -> str:
    return server.rsplit(":", 1)[0]


def _mask_url_password(text: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]+@", r"\1********@", text)


def unknown_env_settings(environ: Mapping[str, str]) -> list[str]:
    """OMS_ variables that match no setting: a typo would otherwise be silently ignored."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    problems = []
    for key in sorted(environ):
        if key.startswith(ENV_PREFIX) and key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            problems.append(f"{key} is not an OMS setting.{hint}")
    return problems


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; raise SettingsError naming each bad variable."""
    problems = unknown_env_settings(os.environ)
    settings: Settings | None = None
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for err in exc.errors():
            var = ENV_PREFIX + ".".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{var}={err.get('input')!r}: {err['msg']}")
    if problems or settings is None:
        raise SettingsError(
            "Invalid settings:\n  " + "\n  ".join(problems) + "\nFix the environment variable(s) and retry."
        )
    return settings
