"""`oms stock load`: a stock count is loaded whole or not at all, every problem named by line."""

from __future__ import annotations

import pytest

from connectors.stock_load import StockFileError, parse


def _parse(text: str | bytes, version: int = 7) -> list:  # type: ignore[type-arg]
    data = text.encode() if isinstance(text, str) else text
    return parse(data, "stock.csv", "t1", default_version=version, now_ms=1_795_824_000_000)


def test_rows_become_versioned_snapshots_with_ids_stable_for_the_same_file() -> None:
    text = "sku,warehouse,on_hand\nSKU-1,WH-SG-1,50\nSKU-1,WH-SG-2,0\nSKU-2,WH-SG-1,12\n"
    rows = _parse(text)
    assert [(r.sku, r.warehouse, r.quantity, r.version, r.kind) for r in rows] == [
        ("SKU-1", "WH-SG-1", 50, 7, "snapshot"),
        ("SKU-1", "WH-SG-2", 0, 7, "snapshot"),
        ("SKU-2", "WH-SG-1", 12, 7, "snapshot"),
    ]
    assert [r.adjustment_id for r in rows] == [r.adjustment_id for r in _parse(text, version=8)]
    assert rows[0].source == "csv:stock.csv:2"
    assert _parse(text.replace("50", "51"))[0].adjustment_id != rows[0].adjustment_id, "another file, other ids"


def test_a_version_column_wins_over_the_default_and_a_bom_and_spaces_are_fine() -> None:
    rows = _parse("\ufeffSKU, Warehouse ,ON_HAND,version\n SKU-1 ,WH-A, 3 ,42\n".encode())
    assert [(r.sku, r.warehouse, r.quantity, r.version) for r in rows] == [("SKU-1", "WH-A", 3, 42)]


def test_every_problem_is_reported_with_its_line_and_nothing_is_loaded() -> None:
    text = (
        "sku,warehouse,on_hand,colour\n"
        "SKU-1,WH-A,5,red\n"
        ",WH-A,5,red\n"
        "SKU-2,WH-A,-1,red\n"
        "SKU-3,WH-A,1.5,red\n"
        "SKU-1,WH-A,6,red\n"
        "SKU-4,WH-A,3,red,extra\n"
    )
    with pytest.raises(StockFileError) as info:
        _parse(text)
    problems = info.value.problems
    assert "line 1: unknown column 'colour'; columns are sku, warehouse, on_hand, version" in problems
    assert "line 3: column sku: empty" in problems
    assert any(p.startswith("line 4: column on_hand: '-1'") for p in problems)
    assert any(p.startswith("line 5: column on_hand: '1.5'") for p in problems)
    assert "line 6: SKU-1 in WH-A is counted twice (also line 2)" in problems
    assert "line 7: more fields than the header has columns" in problems
    assert "fix them and load the file again" in str(info.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"sku,on_hand\nA,1\n", "line 1: header needs sku, warehouse, on_hand; missing warehouse"),
        (b"sku,warehouse,on_hand\n", "the file has a header but no rows"),
        (b"sku,warehouse,on_hand\nA,W,1\n\xff\n", "line 3: not UTF-8 (byte 28); save the file as UTF-8"),
    ],
)
def test_files_that_cannot_be_read_as_a_count_say_why(data: bytes, expected: str) -> None:
    with pytest.raises(StockFileError) as info:
        _parse(data)
    assert info.value.problems == [expected]
