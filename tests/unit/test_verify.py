"""The flash-sale verifier's arithmetic: confirmed units per SKU from the newest allocations, and the verdict."""

from __future__ import annotations

from loadtest.verify import Verdict, confirmed_units


def _outcome(outcome: str, *lines: tuple[str, int, str]) -> dict[str, object]:
    return {"outcome": outcome, "lines": [{"sku": s, "quantity": q, "state": st} for s, q, st in lines]}


def test_only_reserved_or_shipped_lines_of_allocated_or_partial_orders_count_as_confirmed() -> None:
    outcomes = [
        _outcome("allocated", ("A", 2, "reserved"), ("B", 1, "reserved")),
        _outcome("partial", ("C", 1, "shipped"), ("B", 3, "short")),
        _outcome("partial", ("A", 1, "reserved"), ("B", 3, "short")),
        _outcome("rejected", ("A", 5, "released")),
        _outcome("cancelled", ("B", 4, "released")),
    ]
    assert confirmed_units(outcomes) == {"A": 3, "B": 1, "C": 1}


def _verdict(**changes: object) -> Verdict:
    base: dict[str, object] = dict(
        orders_expected=10, orders_decided=10, undecided=[], stock_units=100, confirmed_units=100,
        oversold_units=0, oversold_skus=[], ledger_movements=50, ledger_below_zero=0, raw_records=30,
        raw_accounted=30, lost_inputs=0, dead_letters=1, sold_out_skus=2,
    )  # fmt: skip
    base.update(changes)
    return Verdict(**base)  # type: ignore[arg-type]


def test_the_verdict_fails_on_any_oversold_unit_lost_input_undecided_order_or_negative_ledger_row() -> None:
    assert _verdict().ok
    assert not _verdict(oversold_units=1, oversold_skus=["A"]).ok
    assert not _verdict(lost_inputs=1).ok
    assert not _verdict(undecided=["default:shopee:1"]).ok
    assert not _verdict(ledger_below_zero=1).ok
    assert "oversold units       1  ON ['A']" in _verdict(oversold_units=1, oversold_skus=["A"]).lines()
