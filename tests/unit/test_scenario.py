"""The load scenario (loadtest/scenario.py): the knobs, and the property the pipeline bench relies on."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from loadtest.scenario import FLASH_SALE_SKUS, Scenario


def test_knobs_are_read_from_the_environment() -> None:
    knobs = {"OMS_LOAD_SEED": "17", "OMS_LOAD_USER_RATE": "37.5", "OMS_LOAD_CHANNELS": "shopee, pos",
             "OMS_LOAD_MARKETS": "sg", "OMS_LOAD_SKUS": "10"}  # fmt: skip
    scenario = Scenario.from_env(knobs)
    assert scenario == Scenario(17, 37.5, ("shopee", "pos"), ("SG",), tuple(f"FS-{i:03d}" for i in range(10)))
    assert Scenario.from_env({}).skus == FLASH_SALE_SKUS


@pytest.mark.parametrize(
    ("knob", "value", "says"),
    [("SEED", "x", "whole number"), ("USER_RATE", "0", "must be positive"), ("SKUS", "0", "at least 1 SKU")],
)
def test_a_bad_knob_names_itself_and_what_to_give(knob: str, value: str, says: str) -> None:
    with pytest.raises(ValueError, match=f"OMS_LOAD_{knob}.*{says}"):
        Scenario.from_env({f"OMS_LOAD_{knob}": value})


def test_the_first_n_deliveries_of_the_endless_stream_are_the_stream_of_n() -> None:
    """What locust's users sent (the first N of one stream) is rebuilt by the bench's verifier from N."""
    knobs = {"OMS_LOAD_SEED": "17", "OMS_LOAD_CHANNELS": "shopee,lazada", "OMS_LOAD_MARKETS": "SG"}
    scenario = Scenario.from_env(knobs)
    endless = [e.delivery_id for e in itertools.islice(scenario.simulator().events(), 500)]
    counted = [e.delivery_id for e in scenario.simulator().events(500)]
    assert endless == counted
    assert len(set(counted)) < len(counted)  # the simulator's deliberate duplicate deliveries are in it


def test_the_scenario_and_the_pipeline_bench_do_not_import_locust() -> None:
    """locust monkey-patches the importing process with gevent: the bench process must stay clean."""
    check = "import sys, loadtest.scenario, oms.bench_pipeline; assert 'locust' not in sys.modules, 'locust'; "
    check += "assert 'gevent' not in sys.modules, 'gevent'"
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
