"""Shared fixtures. Integration fixtures start the real services once per session (or reuse running
ones), and isolate each run by a unique topic prefix, a fresh chDB directory and database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oms.settings import Settings


@pytest.fixture(scope="session")
def service_settings() -> Settings:
    """Where the shared services live: the default data directory, as `oms up` uses it."""
    return Settings()


@pytest.fixture(scope="session")
def services(service_settings: Settings) -> Iterator[Settings]:
    """Kafka and Redis running for the whole session; stops only what this session started."""
    from infra import kafka, redis_server

    started = []
    if not kafka.broker_answers(service_settings.kafka_bootstrap):
        kafka.start(service_settings)
        started.append(kafka.process(service_settings))
    if redis_server.answers(service_settings.redis_url) is None:
        redis_server.start(service_settings)
        started.append(redis_server.process(service_settings))
    yield service_settings
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def run_settings(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """This run's settings: own topics (prefix), own chDB directory and database, same services."""
    run = uuid.uuid4().hex[:8]
    data_dir: Path = tmp_path_factory.mktemp("oms-data")
    return Settings(
        data_dir=data_dir,
        kafka_bootstrap=services.kafka_bootstrap,
        redis_url=services.redis_url,
        topic_prefix=f"t{run}.",
        clickhouse_database=f"oms_test_{run}",
        partitions=4,
        consumer_session_timeout_s=6.0,
        sink_flush_seconds=0.3,
    )


def own_settings(services: Settings, data_dir: Path, tag: str, **overrides: Any) -> Settings:
    """Settings for a test's own worker: its data directory, its own topics (``tag`` and a random
    suffix), the session's broker and Redis, and a 6 s consumer session so that the partitions of a
    killed worker move soon; ``overrides`` are the test's own settings."""
    return Settings(
        data_dir=data_dir,
        kafka_bootstrap=services.kafka_bootstrap,
        redis_url=services.redis_url,
        topic_prefix=f"{tag}{uuid.uuid4().hex[:8]}.",
        consumer_session_timeout_s=6.0,
        **overrides,
    )
