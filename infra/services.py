"""``oms up`` / ``down`` / ``status``: the three services as one unit."""

from __future__ import annotations

from dataclasses import dataclass

from infra import clickhouse, kafka, redis_server
from infra.process import ServiceError
from oms.settings import Settings


@dataclass(frozen=True)
class Health:
    name: str
    healthy: bool
    address: str
    version: str
    detail: str


def up(settings: Settings) -> list[str]:
    """Install on first use and start what is local and not yet running. Idempotent."""
    lines = []
    if settings.kafka_is_local:
        lines.append(f"kafka      {settings.kafka_bootstrap}: {kafka.start(settings)}")
    else:
        lines.append(f"kafka      {settings.kafka_bootstrap}: external, not started by oms")
    if settings.redis_is_local:
        lines.append(f"redis      {settings.redis_url}: {redis_server.start(settings)}")
    else:
        lines.append(f"redis      {settings.redis_url}: external, not started by oms")
    if settings.clickhouse_embedded:
        clickhouse.chdb_path(settings).mkdir(parents=True, exist_ok=True)
        lines.append(f"clickhouse chdb://{clickhouse.chdb_path(settings)}: embedded, opened by the process using it")
    else:
        lines.append(f"clickhouse {settings.clickhouse_url}: external, not started by oms")
    return lines


def down(settings: Settings) -> list[str]:
    """Stop exactly what ``up`` started (by PID file); leave anything else alone."""
    lines = []
    for proc in (kafka.process(settings), redis_server.process(settings)):
        pid = proc.pid()
        stopped = proc.stop()
        lines.append(f"{proc.name:<10} {'stopped pid ' + str(pid) if stopped else 'was not running (by oms)'}")
    return lines


def status(settings: Settings) -> list[Health]:
    out = []
    kafka_pid = kafka.process(settings).pid()
    kafka_ok = kafka.broker_answers(settings.kafka_bootstrap)
    out.append(
        Health(
            "kafka",
            kafka_ok,
            settings.kafka_bootstrap,
            settings.kafka_version if settings.kafka_is_local else "external",
            _who(kafka_ok, kafka_pid),
        )
    )
    redis_version = redis_server.answers(settings.redis_url)
    redis_pid = redis_server.process(settings).pid()
    out.append(
        Health(
            "redis",
            redis_version is not None,
            settings.redis_url,
            redis_version or "-",
            _who(bool(redis_version), redis_pid),
        )
    )
    out.append(_clickhouse_health(settings))
    return out


def _who(healthy: bool, pid: int | None) -> str:
    if not healthy:
        return "down: run `oms up`" if pid is None else f"not answering (pid {pid} is alive: see its log)"
    return f"pid {pid}" if pid else "not started by oms"


def _clickhouse_health(settings: Settings) -> Health:
    address = settings.clickhouse_url or f"chdb://{clickhouse.chdb_path(settings)}"
    if settings.clickhouse_embedded:
        owner = clickhouse.chdb_owner(settings)
        if owner is not None and owner != -1:
            return Health("clickhouse", True, address, "embedded", f"open in process {owner}")
    try:
        client = clickhouse.get_client(settings)
        try:
            return Health("clickhouse", True, address, clickhouse.version(client), "answers")
        finally:
            client.close()
    except (ServiceError, Exception) as exc:  # any driver error means "down" here, shown to the user
        return Health("clickhouse", False, address, "-", f"down: {exc}")
