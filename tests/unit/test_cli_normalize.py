"""`oms normalize`: what an operations person runs to debug a channel payload, offline."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from connectors.raw_producer import sample
from oms.cli import main


def test_a_good_payload_prints_the_canonical_order_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "order.json"
    path.write_bytes(sample("shopee_order_detail.json"))
    assert main(["normalize", "--channel", "shopee", str(path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["order_key"].endswith(":shopee:2611270A1B2C3D") and printed["total_minor"] == 5980


def test_a_status_push_prints_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "push.json"
    path.write_bytes(
        orjson.dumps({"code": 3, "shop_id": 1, "timestamp": 5, "data": {"ordersn": "X", "status": "SHIPPED"}})
    )
    assert main(["normalize", "--channel", "shopee", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "shipped"


def test_a_bad_payload_exits_1_naming_the_file_the_field_and_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = orjson.loads(sample("shopee_order_detail.json"))
    body["response"]["order_list"][0]["item_list"][1]["model_quantity_purchased"] = -2
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(body))
    assert main(["normalize", "--channel", "shopee", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "response.order_list[0].item_list[1].model_quantity_purchased" in err


def test_a_missing_file_exits_2_with_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["normalize", "--channel", "shopee", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err
