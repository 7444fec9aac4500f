"""Locust users that send the simulator's raw marketplace orders into the pipeline.

- :class:`KafkaOrderUser`: the connector path. Each task produces ONE simulated delivery to
  ``raw.orders.<channel>`` through :class:`connectors.raw_producer.RawProducer` (acks=all, idempotent, the
  standard headers) and reports it to locust as request type ``kafka``, name ``raw.orders.<channel>``, with
  the produce -> broker acknowledgement time as its response time (a failed delivery is a failure). All users
  of a process share one producer, and the acknowledgements still in flight when the run stops are waited
  for, so the stats count every record.
- :class:`WebhookOrderUser`: the webhook path. Each task POSTs ONE simulated delivery, signed as its
  platform signs it, to ``<host>/webhooks/<channel>`` of ``oms connectors serve`` (``--host``; default the
  service OMS_WEBHOOK_HOST/OMS_WEBHOOK_PORT point at). Anything but a 2xx answer is a failure; an
  ``accepted`` and a ``duplicate`` answer (the simulator repeats a share of deliveries on purpose) both count
  as success.

The users of one process take their deliveries from ONE shared simulator stream, so no delivery is sent
twice except the simulator's deliberate duplicates. Every worker process of a distributed run
(``--processes``, ``--worker``) has its own stream: seed ``OMS_LOAD_SEED + 1000000 * worker index``.

Settings are the pipeline's (OMS_KAFKA_BOOTSTRAP, OMS_TOPIC_PREFIX, the webhook secrets OMS_SHOPEE_PARTNER_KEY
etc., OMS_WEBHOOK_PUBLIC_URL, ...), read on the first user's start, not at import. The scenario knobs:

==========================  ===========================================================================
``OMS_LOAD_USER_RATE``      deliveries per second per user (default 50): total = users x rate
``OMS_LOAD_SEED``           the simulator's seed (default 1): same seed, same deliveries
``OMS_LOAD_CHANNELS``       comma list of channels (default all: shopee, lazada, tiktok, tokopedia,
                            shopify, grab, pos)
``OMS_LOAD_MARKETS``        comma list of markets (default all: SG, MY, ID, TH, VN, PH)
``OMS_LOAD_SKUS``           comma list of SKU codes, or a count N for ``FS-000`` .. ``FS-<N-1>``
                            (default 100: ``FS-000`` .. ``FS-099``, the flash-sale catalog); the first
                            5 % are the hot SKUs that get 70 % of the demand
==========================  ===========================================================================

The OMS_LOAD_* variables are not pipeline settings: ``oms`` commands refuse unknown OMS_ variables, so set
them on the locust command line rather than exporting them in a shell that also runs ``oms``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent  # type: ignore[import-untyped]
from confluent_kafka import KafkaError, KafkaException, Message
from locust import FastHttpUser, User, constant_throughput, events, task
from locust.env import Environment
from locust.exception import StopTest
from pydantic import ValidationError

from connectors.raw_producer import ProduceError, RawProducer
from connectors.simulator import SimEvent, SimulatorError, WebhookSecrets, signed_headers
from loadtest.scenario import KNOB_PREFIX, Scenario
from oms.settings import Settings, SettingsError, unknown_env_settings
from schemas.topics import CHANNELS

log = logging.getLogger(__name__)

#: How often the producer's acknowledgements are served (their latency includes up to this much).
POLL_INTERVAL_S = 0.001
#: How long the end of a run waits for the acknowledgements still in flight.
FLUSH_TIMEOUT_S = 30.0


def load_run_settings() -> Settings:
    """``oms.settings.load_settings`` for a load process: the same checks, with the OMS_LOAD_* knobs allowed.

    (load_settings itself refuses every OMS_ variable that is not a setting, and these are not.)
    """
    problems = unknown_env_settings({k: v for k, v in os.environ.items() if not k.startswith(KNOB_PREFIX)})
    try:
        settings = Settings()  # pydantic-settings ignores the knobs (extra="ignore")
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(f"OMS_{'.'.join(str(p) for p in err['loc']).upper()}={err.get('input')!r}: {err['msg']}")
        settings = None
    if problems or settings is None:
        raise SettingsError("Invalid settings:\n  " + "\n  ".join(problems))
    return settings


class _Shared:
    """What the users of one process share; built on first use, dropped by :func:`reset`."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.scenario: Scenario | None = None
        self.events: Iterator[SimEvent] | None = None
        self.producer: RawProducer | None = None
        self.poller: Any = None  # the greenlet serving the producer's acknowledgements
        self.in_flight = 0


_shared = _Shared()


def _fail_fast(environment: Environment, what: str, exc: Exception) -> StopTest:
    """A misconfigured run: locust stops the test (StopTest from a user's __init__) and exits with 2."""
    environment.process_exit_code = 2
    return StopTest(f"load test cannot start: {what}: {exc}")


def shared_settings(environment: Environment) -> tuple[Settings, Scenario]:
    """This process's settings and scenario, read from the environment on first use."""
    if _shared.settings is None or _shared.scenario is None:
        try:
            settings, scenario = load_run_settings(), Scenario.from_env()
        except (SettingsError, ValueError) as exc:
            raise _fail_fast(environment, "settings", exc) from exc
        _shared.settings, _shared.scenario = settings, scenario
    return _shared.settings, _shared.scenario


def event_stream(environment: Environment) -> Iterator[SimEvent]:
    """This process's one simulator stream (built by the first user, where a bad scenario stops the test)."""
    if _shared.events is None:
        _, scenario = shared_settings(environment)
        worker_index = getattr(environment.runner, "worker_index", 0)
        try:
            _shared.events = scenario.simulator(worker_index).events()
        except SimulatorError as exc:
            raise _fail_fast(environment, "scenario", exc) from exc
    return _shared.events


def next_event(environment: Environment) -> SimEvent:
    """The next delivery of this process's one simulator stream."""
    return next(event_stream(environment))


def kafka_producer(environment: Environment) -> RawProducer:
    """This process's one raw-order producer (acks=all, idempotent; connectors.raw_producer)."""
    if _shared.producer is None:
        settings, _ = shared_settings(environment)
        _shared.producer = RawProducer(settings)
        _shared.poller = gevent.spawn(_serve_acks, _shared.producer)
    return _shared.producer


def _serve_acks(producer: RawProducer) -> None:
    """Serve acknowledgements as they arrive: a record's response time is produce -> its callback, so
    serving them only when the next task produces would add the users' pacing gaps to every latency."""
    while True:
        producer.poll(0)
        gevent.sleep(POLL_INTERVAL_S)


def flush_kafka(timeout: float = FLUSH_TIMEOUT_S) -> int:
    """Serve the acknowledgements still in flight (their request events fire); the number still missing."""
    producer = _shared.producer
    if producer is None:
        return 0
    deadline = time.monotonic() + timeout
    while _shared.in_flight > 0 and time.monotonic() < deadline:
        producer.poll(0)
        gevent.sleep(0.005)  # lets other greenlets run while librdkafka waits for the broker
    if _shared.in_flight:
        log.error("%d record(s) unacknowledged after %.0f s: not in the stats", _shared.in_flight, timeout)
    return _shared.in_flight


def reset() -> None:
    """Forget the shared settings, simulator stream and producer (after flushing it): for tests."""
    global _shared
    flush_kafka(5.0)
    if _shared.poller is not None:
        _shared.poller.kill()
    _shared = _Shared()


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _flush_on_stop(**_kwargs: Any) -> None:
    flush_kafka()


class KafkaOrderUser(User):
    """Raw orders straight to Kafka, one delivery per task, ``OMS_LOAD_USER_RATE`` tasks per second."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        _, scenario = shared_settings(environment)
        self._pace: Callable[[User], float] = constant_throughput(scenario.user_rate)
        event_stream(environment)
        self._producer = kafka_producer(environment)

    def wait_time(self) -> float:
        return self._pace(self)

    @task
    def send_one(self) -> None:
        event = next_event(self.environment)
        name = f"raw.orders.{event.channel}"
        fire = self.environment.events.request.fire
        started = time.perf_counter()

        def acked(err: KafkaError | None, msg: Message) -> None:
            _shared.in_flight -= 1
            latency = msg.latency() if err is None else None  # librdkafka's own produce -> ack time
            seconds = latency if latency is not None else time.perf_counter() - started
            fire(
                request_type="kafka",
                name=name,
                response_time=seconds * 1000,
                response_length=len(event.body),
                exception=None if err is None else ProduceError(f"{msg.topic()}: {err}"),
                context={"delivery_id": event.delivery_id, "kind": event.kind},
            )

        while True:
            try:
                self._producer.send(
                    event.channel, event.body, shop=event.shop, delivery_id=event.delivery_id, on_delivery=acked
                )  # also polls: serves the acknowledgements that arrived meanwhile
            except BufferError:  # librdkafka's queue is full: let it drain
                self._producer.poll(0)
                gevent.sleep(0.01)
                continue
            except KafkaException as exc:
                fire(
                    request_type="kafka",
                    name=name,
                    response_time=(time.perf_counter() - started) * 1000,
                    response_length=0,
                    exception=exc,
                    context={"delivery_id": event.delivery_id, "kind": event.kind},
                )
                return
            _shared.in_flight += 1
            return


def _wire(value: str) -> str:
    """A header value as geventhttpclient must get it to send its UTF-8 bytes (it writes headers as latin-1).

    aiohttp, which ``oms simulate --to webhooks`` uses, sends header values as UTF-8, and the service reads
    them so; some simulated shop ids are not ASCII (a POS shop in Hà Nội is ``nội-05``).
    """
    return value if value.isascii() else value.encode().decode("latin-1")


class WebhookOrderUser(FastHttpUser):
    """Signed deliveries to ``oms connectors serve`` at ``--host``, ``OMS_LOAD_USER_RATE`` requests per second."""

    def __init__(self, environment: Environment) -> None:
        settings, scenario = shared_settings(environment)
        if self.host is None:  # no --host: where the OMS settings put the service
            self.host = f"http://{settings.webhook_host}:{settings.webhook_port}"
        super().__init__(environment)
        self._secrets = WebhookSecrets.from_settings(settings)
        missing = self._secrets.missing(scenario.channels or CHANNELS)
        if missing:
            raise _fail_fast(
                environment, "webhook secrets", ValueError(f"set {', '.join(missing)} (the service needs the same)")
            )
        # Shopee signs the URL: the service's public URL when it has one, else the one we post to.
        self._signing_base = (settings.webhook_public_url or self.host).rstrip("/")
        self._pace: Callable[[User], float] = constant_throughput(scenario.user_rate)
        event_stream(environment)

    def wait_time(self) -> float:
        return self._pace(self)

    @task
    def post_one(self) -> None:
        event = next_event(self.environment)
        path = f"/webhooks/{event.channel}"
        headers = {k: _wire(v) for k, v in signed_headers(event, self._signing_base + path, self._secrets).items()}
        body: Any = event.body  # geventhttpclient sends bytes as they are (locust's hint says str or dict)
        with self.client.post(path, data=body, headers=headers, name=path, catch_response=True) as resp:
            if 200 <= (resp.status_code or 0) < 300:
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
