"""Running the pipeline's own processes: a faust worker in the foreground or as a child, and the sinks."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from clickhouse_connect.driver.client import Client

from infra.process import ManagedProcess, ServiceError, wait_until
from oms.settings import ENV_PREFIX, Settings
from schemas.topics import INVENTORY, ORDERS
from sinks.clickhouse import clickhouse_sink
from sinks.redis_model import OrderStatusModel, order_status_sink
from sinks.runner import SinkSpec, SinkStats, run_sink
from sinks.stock_model import StockModel, stock_sink

if TYPE_CHECKING:
    from connectors.channel_stock import ChannelStockStats
    from oms.alerting import DeliveryStats, DetectorStats


def run_worker(settings: Settings) -> None:
    """Run a faust worker in this process until SIGTERM/SIGINT (``oms worker``)."""
    import faust  # imported here: the rest of the CLI starts faster without it

    from streams.app import create_app, group_id, source_topics
    from streams.watchdog import register_watchdog

    app = create_app(settings)
    register_watchdog(app, settings, source_topics(settings), group_id(settings))
    # faust's default level puts the root logger at DEBUG, which costs ~12 % CPU in formatting.
    worker = faust.Worker(app, loglevel=settings.log_level.upper())
    signal.signal(signal.SIGUSR1, lambda _sig, _frame: _log_tasks(app.loop))
    worker.execute_from_commandline()


def _log_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """``kill -USR1 <worker pid>``: every asyncio task's stack into the log (where is it waiting?)."""
    log = logging.getLogger("oms.worker")
    for task in asyncio.all_tasks(loop):
        stack = io.StringIO()
        task.print_stack(limit=12, file=stack)
        log.warning("task %s:\n%s", task.get_name(), stack.getvalue())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment that makes a child process see exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        env[ENV_PREFIX + name.upper()] = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    env[ENV_PREFIX + "DATA_DIR"] = str(settings.data_path)
    env.update({ENV_PREFIX + k.upper(): v for k, v in overrides.items()})
    return env


def spawn_worker(settings: Settings, name: str = "worker", web_port: int | None = None) -> ManagedProcess:
    """Start ``oms worker`` as a child (web server on 127.0.0.1, a free port unless given)."""
    logs = settings.data_path / "logs"
    proc = ManagedProcess(name, logs / f"{name}.pid", logs / f"{name}.log")
    if proc.pid() is not None:
        raise ServiceError(f"{name} is already running (pid {proc.pid()}); stop it first")
    env = settings_env(settings, worker_web_port=str(web_port or free_port()))
    proc.start([sys.executable, "-m", "oms.cli", "worker"], env=env)
    return proc


@dataclass
class Sinks:
    """The sinks running as threads of this process (which then owns the embedded ClickHouse)."""

    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    stats: dict[str, SinkStats] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    detector_stats: DetectorStats = field(default_factory=lambda: _detector_stats())
    delivery_stats: DeliveryStats = field(default_factory=lambda: _delivery_stats())
    query_address: str | None = None


def _detector_stats() -> DetectorStats:
    from oms.alerting import DetectorStats

    return DetectorStats()


def _delivery_stats() -> DeliveryStats:
    from oms.alerting import DeliveryStats

    return DeliveryStats()


def sink_specs(settings: Settings, client: Client) -> list[SinkSpec[Any]]:
    """Every fact topic into ClickHouse; Redis order status from orders.v1; Redis stock from the inventory.v1 ledger."""
    orders = ORDERS.full_name(settings.topic_prefix)
    store = redis.Redis.from_url(settings.redis_url)
    return [
        clickhouse_sink(client, settings.topic_prefix),
        order_status_sink(OrderStatusModel(store, prefix=settings.topic_prefix), orders),
        stock_sink(StockModel(store, prefix=settings.topic_prefix), INVENTORY.full_name(settings.topic_prefix)),
    ]


CHANNEL_STOCK_SINK = "channel-stock"


@contextmanager
def running_sinks(
    settings: Settings, client: Client, channel_stock: bool = True, detectors: bool = True
) -> Iterator[Sinks]:
    """Run the sinks of ``sink_specs`` as threads until the block exits, and (unless ``channel_stock`` is
    False) the stock sync: ATS per channel from the inventory.v1 ledger to Redis and channel.stock.v1.

    The stock sync is a thread of its own, not a ``SinkSpec``: it rebuilds its rows from the ledger's
    start, paces its writes per channel and commits only what was written (connectors/channel_stock.py).
    Its rules file is read first, so a bad one stops `oms sink` at start with the line to fix.

    Also (unless ``detectors`` is False) the anomaly detectors and, with OMS_ALERT_WEBHOOK_URL set, the
    alert delivery; and, on the embedded ClickHouse, the read-only query service for other processes.
    """
    sinks = Sinks()
    stack = ExitStack()
    if channel_stock:
        from connectors.channel_stock import ChannelStockStats, RulesError, load_rules, rules_path

        path = rules_path(settings)
        try:
            load_rules(path)
        except RulesError as exc:
            raise ServiceError(f"{exc}\n  Fix the file, or point OMS_CHANNEL_STOCK_RULES at a good one.") from exc
        sync_stats = ChannelStockStats()
        sinks.stats[CHANNEL_STOCK_SINK] = sync_stats
        _start(sinks, CHANNEL_STOCK_SINK, partial(_channel_stock, settings, sinks.stop, sync_stats, path))
    if detectors:
        from oms.alerting import run_alert_webhook, run_detectors

        _start(sinks, "detectors", partial(run_detectors, settings, sinks.stop, sinks.detector_stats))
        if settings.alert_webhook_url:
            _start(sinks, "alert-webhook", partial(run_alert_webhook, settings, sinks.stop, sinks.delivery_stats))
    if settings.clickhouse_embedded:
        from oms.analytics import serving_queries

        sinks.query_address = stack.enter_context(serving_queries(settings))
    for spec in sink_specs(settings, client):
        stats = sinks.stats.setdefault(spec.name, SinkStats())
        _start(sinks, spec.name, partial(run_sink, settings, spec, sinks.stop, stats))
    try:
        yield sinks
    finally:
        sinks.stop.set()
        for thread in sinks.threads:
            thread.join(timeout=30)
        stack.close()


def _start(sinks: Sinks, name: str, run: Callable[[], object]) -> None:
    """``run`` on a daemon thread named sink-<name>; a crash is logged and handed to the owner in sinks.errors."""

    def guarded() -> None:
        try:
            run()
        except BaseException as exc:  # surfaced to the owner through sinks.errors
            logging.getLogger(__name__).exception("sink %s crashed", name)
            sinks.errors.append(exc)

    thread = threading.Thread(target=guarded, name=f"sink-{name}", daemon=True)
    thread.start()
    sinks.threads.append(thread)


def _channel_stock(settings: Settings, stop: threading.Event, stats: ChannelStockStats, path: Path) -> None:
    from connectors.channel_stock import run_channel_stock

    run_channel_stock(settings, stop, stats, path=path)


def stop_process(proc: ManagedProcess) -> None:
    proc.stop()
    wait_until(lambda: proc.pid() is None, 10)
