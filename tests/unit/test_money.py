"""schemas.order.to_minor: channel amounts to exact integer minor units, or a refusal."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.order import CURRENCY_EXPONENT, MoneyError, to_minor


def test_money_as_float_is_converted_exactly_to_minor_units() -> None:
    assert 19.9 * 100 != 1990  # the trap: binary floats
    assert to_minor(19.9, "SGD") == 1990


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("14.95", "SGD", 1495),
        (14.95, "MYR", 1495),
        (59.8, "SGD", 5980),
        (0.1, "PHP", 10),
        (0, "THB", 0),
        (7, "SGD", 700),
        (Decimal("12.30"), "SGD", 1230),
        (" 3.5 ", "SGD", 350),
        (150000, "IDR", 150000),
        (150000.0, "IDR", 150000),
        ("150000", "IDR", 150000),
        (25000, "VND", 25000),
    ],
)
def test_amounts_convert_to_exact_minor_units(amount: object, currency: str, minor: int) -> None:
    result = to_minor(amount, currency)
    assert result == minor
    assert type(result) is int


def test_idr_is_stored_in_whole_rupiah_not_sen() -> None:
    assert CURRENCY_EXPONENT["IDR"] == 0
    assert to_minor(150000, "IDR") == 150000


@pytest.mark.parametrize(
    ("amount", "currency"),
    [(10.005, "SGD"), ("10.005", "SGD"), ("0.001", "MYR"), (150000.5, "IDR"), ("1.5", "VND")],
)
def test_amounts_finer_than_the_minor_unit_are_refused_not_rounded(amount: object, currency: str) -> None:
    with pytest.raises(MoneyError, match="more decimals"):
        to_minor(amount, currency)


@pytest.mark.parametrize("amount", ["abc", "", "  ", "1,50", "12.3.4"])
def test_non_numeric_strings_are_refused(amount: str) -> None:
    with pytest.raises(MoneyError, match="not a number"):
        to_minor(amount, "SGD")


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), float("-inf"), "NaN", "Infinity", "-inf", "sNaN"])
def test_nan_and_infinity_are_refused(amount: object) -> None:
    with pytest.raises(MoneyError, match="not finite"):
        to_minor(amount, "SGD")


@pytest.mark.parametrize("amount", [True, False])
def test_booleans_are_refused_although_bool_is_an_int(amount: bool) -> None:
    with pytest.raises(MoneyError, match="got bool"):
        to_minor(amount, "SGD")


@pytest.mark.parametrize("amount", [None, [1], {"amount": 1}, b"1.00"])
def test_non_numeric_types_are_refused(amount: object) -> None:
    with pytest.raises(MoneyError, match="must be a number"):
        to_minor(amount, "SGD")


@pytest.mark.parametrize("currency", ["EUR", "sgd", "", "XXX"])
def test_unknown_currency_is_refused(currency: str) -> None:
    with pytest.raises(MoneyError, match="unknown currency"):
        to_minor(1, currency)


def test_money_error_is_a_value_error() -> None:
    assert issubclass(MoneyError, ValueError)


@given(
    units=st.integers(min_value=-(10**20), max_value=10**20),
    places=st.integers(min_value=0, max_value=2),
)
def test_any_decimal_with_at_most_two_decimals_converts_exactly(units: int, places: int) -> None:
    d = Decimal(units).scaleb(-places)
    assert to_minor(str(d), "SGD") == int(d * 100)


@given(st.decimals(places=2, allow_nan=False, allow_infinity=False, min_value=-(10**15), max_value=10**15))
def test_decimals_with_two_places_convert_as_decimal_and_as_string(d: Decimal) -> None:
    assert to_minor(str(d), "SGD") == int(d * 100) == to_minor(d, "MYR")


@given(st.integers(min_value=-(10**13), max_value=10**13))
def test_two_decimal_floats_convert_to_the_cents_they_print_as(cents: int) -> None:
    assert to_minor(cents / 100, "SGD") == cents


@given(
    units=st.integers(min_value=-(10**12), max_value=10**12).filter(lambda n: n % 10 != 0),
)
def test_any_amount_with_a_nonzero_third_decimal_is_refused(units: int) -> None:
    with pytest.raises(MoneyError):
        to_minor(str(Decimal(units).scaleb(-3)), "SGD")
