"""Service lifecycle through the real CLI: up is idempotent, status tells the truth, down leaves nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from infra import kafka, redis_server
from infra.topics import ensure_topics
from oms.runtime import free_port, settings_env
from oms.settings import Settings
from schemas.topics import ALL, DEAD_LETTERS
from tests.conftest import own_settings

pytestmark = pytest.mark.integration


def _oms(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oms.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_topics_are_created_once_with_the_registry_partitions_and_config(kafka_topics: Settings) -> None:
    assert ensure_topics(kafka_topics) == [], "a second run creates nothing"
    admin = AdminClient({"bootstrap.servers": kafka_topics.kafka_bootstrap})
    meta = admin.list_topics(timeout=10).topics
    for spec in ALL:
        expected = spec.partitions or kafka_topics.partitions
        assert len(meta[spec.full_name(kafka_topics.topic_prefix)].partitions) == expected
    dead = admin.describe_configs([ConfigResource("topic", DEAD_LETTERS.full_name(kafka_topics.topic_prefix))])
    config = next(iter(dead.values())).result(10)
    spec_config = DEAD_LETTERS.kafka_config()
    assert config["max.message.bytes"].value == spec_config["max.message.bytes"]


def test_status_exits_zero_and_reports_three_healthy_services(run_settings: Settings) -> None:
    result = _oms(settings_env(run_settings), "status")
    assert result.returncode == 0, result.stdout + result.stderr
    table = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:4]}
    assert table == {"kafka": "up", "redis": "up", "clickhouse": "up"}
    assert "OMS_CLICKHOUSE_PASSWORD" in result.stdout


def test_a_wrong_setting_fails_at_start_naming_the_variable(run_settings: Settings) -> None:
    env = settings_env(run_settings)
    env["OMS_KAFKA_BOOTSTRAP"] = "no-port-here"
    result = _oms(env, "status")
    assert result.returncode == 2
    assert "OMS_KAFKA_BOOTSTRAP" in result.stderr


def test_up_is_idempotent_and_down_stops_exactly_what_up_started(tmp_path: Path, services: Settings) -> None:
    """A second, private pair of services on free ports, so the shared ones are untouched."""
    kafka_port, controller_port, redis_port = free_port(), free_port(), free_port()
    private = Settings(
        data_dir=tmp_path / "oms",
        kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        kafka_controller_port=controller_port,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        clickhouse_database="lifecycle",
    )
    env = settings_env(private)
    shared_kafka_pid = kafka.process(services).pid()

    first = _oms(env, "up")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "started" in first.stdout
    kafka_pid, redis_pid = kafka.process(private).pid(), redis_server.process(private).pid()
    assert kafka_pid and redis_pid

    again = _oms(env, "up")
    assert again.returncode == 0 and "already running" in again.stdout
    assert (kafka.process(private).pid(), redis_server.process(private).pid()) == (kafka_pid, redis_pid)

    status = _oms(env, "status", "-q")
    assert status.returncode == 0, status.stdout

    down = _oms(env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    for pid in (kafka_pid, redis_pid):
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    for port in (kafka_port, controller_port, redis_port):
        assert not kafka.port_open("127.0.0.1", port), f"port {port} still in use after down"
    assert _oms(env, "status", "-q").returncode == 1, "status must fail when services are down"
    assert kafka.process(services).pid() == shared_kafka_pid, "down must not touch other services"
    assert os.environ.get("OMS_DATA_DIR") != str(private.data_path)


def test_the_readme_demo_command_runs_end_to_end_and_exits_zero(
    services: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`oms demo` as a user runs it (on its own topics and embedded ClickHouse, the shared services)."""

    settings = own_settings(
        services,
        tmp_path_factory.mktemp("demo"),
        "demo",
    )
    result = _oms(settings_env(settings), "demo", "--events", "150", "--timeout", "120", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "dead letters (2 of 2)" in result.stdout
    landed = [line for line in result.stdout.splitlines() if "orders in ClickHouse after" in line]
    assert landed, result.stdout
    got, _, expected = landed[0].split()[:3]
    assert got == expected, landed[0]
