"""``oms bench pipeline`` end to end, small: locust load, a worker, the sinks, the verifier, the peer, results.

The bench opens a private chDB directory, and chDB allows one per process, so it runs as the CLI in a
child process (as a user runs it), against the session's broker, on topics of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from oms.runtime import settings_env
from oms.settings import Settings

pytestmark = pytest.mark.integration


def test_bench_pipeline_loads_with_locust_verifies_and_writes_every_result(
    kafka_topics: Settings, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "oms.cli", "bench", "pipeline", "--rate", "40", "--seconds", "8"]
    command += ["--units", "5", "--out", str(tmp_path)]
    run = subprocess.run(command, env=settings_env(kafka_topics), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"

    (result,) = [p for p in tmp_path.glob("pipeline-*.json") if not p.name.endswith("-series.json")]
    numbers = json.loads(result.read_text())
    numbers = numbers["results"]
    assert numbers["verdict"] == "PASS"
    assert (numbers["oversold_units"], numbers["lost_inputs"], numbers["undecided_orders"]) == (0, 0, 0)
    assert numbers["orders"] > 0 and numbers["orders_decided"] == numbers["orders"]
    assert numbers["deliveries_sent"] >= 40  # locust sent (and Kafka acknowledged) at least a few seconds' worth
    assert numbers["peer_textbook_faust_orders_per_s"] > 0 and numbers["ceiling_bare_confluent_records_per_s"] > 0
    assert numbers["pipeline_orders_vs_peer"] > 0
    assert numbers["orders_decided_per_s_first_to_last"] > 0 and numbers["pipeline_first_to_last_vs_peer"] > 0
    assert numbers["kafka_records_per_order"] > 1
    assert numbers["raw_to_routing_ms.count"] > 0

    (series,) = tmp_path.glob("pipeline-*-series.json")
    rows = json.loads(series.read_text())
    assert rows["per_second"] and rows["per_second"][-1]["produced"] == numbers["deliveries_sent"]
    # orders routed per second by the worker's decision time, each once: at least those timed raw to routing
    routed = sum(row["n"] for row in rows["routed_per_second"])
    assert numbers["raw_to_routing_ms.count"] <= routed <= numbers["orders"]
    assert list(tmp_path.glob("pipeline-*.png")), "the chart of throughput, latency and lag"
    assert list(tmp_path.glob("pipeline-*.md"))


def test_bench_pipeline_on_queued_input_starts_the_workers_after_the_whole_load_is_on_kafka(
    kafka_topics: Settings, tmp_path: Path
) -> None:
    """``--load queued``: the peer's conditions (input queued, no load generator running)."""
    command = [sys.executable, "-m", "oms.cli", "bench", "pipeline", "--load", "queued", "--rate", "40"]
    command += ["--seconds", "8", "--units", "5", "--out", str(tmp_path)]
    run = subprocess.run(command, env=settings_env(kafka_topics), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert "queued 320 deliveries" in run.stdout

    (result,) = [p for p in tmp_path.glob("pipeline-*.json") if not p.name.endswith("-series.json")]
    numbers = json.loads(result.read_text())["results"]
    assert (numbers["load"], numbers["verdict"], numbers["deliveries_sent"]) == ("queued", "PASS", 320)
    assert numbers["orders"] > 0 and numbers["orders_decided"] == numbers["orders"]
    assert numbers["orders_decided_per_s_first_to_last"] >= numbers["orders_decided_per_s_from_worker_start"] > 0
    assert numbers["pipeline_from_start_vs_peer"] > 0
    # every delivery was on Kafka when the first sample was taken, before the worker had read any
    rows = json.loads(next(tmp_path.glob("pipeline-*-series.json")).read_text())["per_second"]
    assert rows[0]["produced"] == 320
