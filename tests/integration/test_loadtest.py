"""The locust load test against the real broker: every record locust counts as acknowledged is on the raw
topics, and nothing else is; the load shapes' profiles do what they promise.

locust monkey-patches the process with gevent when imported, so it never runs (or is imported) in the
pytest process: the run is a `python -m locust` child, and the shapes are tested through loadtest.profile,
which does not import locust.
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from infra import topics
from loadtest.profile import SHAPES, baseline, shape_from_env, spawn_rate, tick_at, users_at
from oms.routing_ops import read_topic
from oms.runtime import settings_env
from oms.settings import Settings
from schemas.topics import CHANNELS, RAW_ORDERS, raw_orders

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USERS = 4
SECONDS = 10
MIN_RECORDS = 200


def _stats(json_file: Path) -> tuple[Counter[str], Counter[str]]:
    """(requests, failures) per request name from locust's --json-file, written after the run ended."""
    requests: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for entry in json.loads(json_file.read_text()):
        assert entry["method"] == "kafka", entry
        requests[entry["name"]] += entry["num_requests"]
        failures[entry["name"]] += entry["num_failures"]
    return requests, failures


def test_locust_kafka_users_put_exactly_the_acknowledged_records_on_the_raw_topics(
    kafka_topics: Settings, tmp_path: Path
) -> None:
    # Raw topics of our own: other tests of the session produce to the session prefix's raw topics.
    settings = kafka_topics.model_copy(update={"topic_prefix": f"{kafka_topics.topic_prefix}lt."})
    names = [spec.full_name(settings.topic_prefix) for spec in RAW_ORDERS]
    assert topics.ensure_topics(settings, RAW_ORDERS) == names
    try:
        command = [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "KafkaOrderUser", "--headless"]
        command += ["-u", str(USERS), "-r", str(USERS), "-t", f"{SECONDS}s", "--only-summary", "--loglevel", "WARNING"]
        command += ["--csv", str(tmp_path / "run"), "--json-file", str(tmp_path / "run")]
        env = settings_env(settings)  # no OMS_LOAD_SHAPE: -u/-r/-t drive the run; 50 records/s per user
        run = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=SECONDS + 60,
        )
        assert run.returncode == 0, f"locust exited {run.returncode}:\n{run.stdout}\n{run.stderr}"

        requests, failures = _stats(tmp_path / "run.json")
        assert sum(requests.values()) >= MIN_RECORDS, (requests, run.stderr)
        assert sum(failures.values()) == 0, (failures, run.stderr)
        assert set(requests) <= {f"raw.orders.{c}" for c in CHANNELS}
        # The CSV is rewritten every second, so it may miss the last second, but never shows a failure.
        with (tmp_path / "run_stats.csv").open() as f:
            total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
        assert int(total["Failure Count"]) == 0 and 0 < int(total["Request Count"]) <= sum(requests.values())

        on_topics: Counter[str] = Counter()
        for channel in CHANNELS:
            topic = raw_orders(channel).full_name(settings.topic_prefix)
            for msg in read_topic(settings, topic):
                headers = dict(msg.headers() or [])
                assert headers["channel"] == channel.encode() and headers["delivery_id"] == msg.key(), headers
                on_topics[f"raw.orders.{channel}"] += 1
        acknowledged = requests - failures
        assert on_topics == acknowledged, "every acknowledged record on its raw topic, and no other record"
    finally:
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})  # alive until the deletes are done
        concurrent.futures.wait(admin.delete_topics(names, operation_timeout=10).values(), timeout=15)


def test_load_shapes_spike_tenfold_at_a_third_of_the_run_and_every_shape_ends() -> None:
    peak, seconds = 40, 90.0
    base = baseline(peak)
    assert base == 4
    # The midnight spike: the baseline, then 10x at a third of the run, reached within 3 s, then back.
    spike = [users_at("spike", t, peak, seconds) for t in range(int(seconds))]
    assert spike[:30] == [base] * 30 and spike[30:60] == [peak] * 30 and spike[60:] == [base] * 30
    assert users_at("spike", seconds / 3 - 0.01, peak, seconds) == base
    assert (peak - base) / spawn_rate("spike", peak, seconds) <= 3.0, "the jump must take seconds, not minutes"
    # The ramp climbs from 1 to the peak over the run; the plateau gets there in a tenth of it and stays.
    ramp = [users_at("ramp", t / 10, peak, seconds) for t in range(int(seconds * 10))]
    assert ramp[0] == 1 and ramp[-1] == peak and ramp == sorted(ramp)
    plateau = [users_at("plateau", t, peak, seconds) for t in range(int(seconds))]
    assert plateau[0] == 1 and plateau == sorted(plateau) and set(plateau[int(seconds / 10) :]) == {peak}
    for shape in SHAPES:
        for t in (0.0, seconds / 2, seconds - 0.01):
            tick = tick_at(shape, t, peak, seconds)
            assert tick is not None and 1 <= tick[0] <= peak and tick[1] >= 1, (shape, t, tick)
        assert tick_at(shape, seconds, peak, seconds) is None, f"{shape} must end the run"
        assert tick_at(shape, seconds + 5, peak, seconds) is None
    # A small peak still has a baseline of one user; the env picks the shape, "none" or unset for none.
    assert baseline(5) == 1 and users_at("spike", 0, 5, 60) == 1
    assert shape_from_env({}) is None and shape_from_env({"OMS_LOAD_SHAPE": "none"}) is None
    assert shape_from_env({"OMS_LOAD_SHAPE": "Spike"}) == "spike"
    with pytest.raises(ValueError, match="OMS_LOAD_SHAPE"):
        shape_from_env({"OMS_LOAD_SHAPE": "tsunami"})
    with pytest.raises(ValueError, match="unknown load shape"):
        users_at("tsunami", 0, peak, seconds)
    # Importing the profiles (as this test does) must not import locust, which would monkey-patch pytest.
    check = "import sys, loadtest.profile; assert 'locust' not in sys.modules and 'gevent' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], cwd=ROOT, check=True, timeout=30)
