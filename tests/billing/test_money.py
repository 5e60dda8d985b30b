"""The one rounding rule (ROUND_HALF_UP to minor units, once per line), exactly."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from billing.money import format_minor, month_total_minor, round_to_minor, usage_amount
from hypothesis import given
from hypothesis import strategies as st


def test_ties_round_half_up_not_to_even() -> None:
    assert round_to_minor(Decimal("0.005"), "EUR") == 1
    assert round_to_minor(Decimal("0.015"), "EUR") == 2
    assert round_to_minor(Decimal("0.025"), "EUR") == 3  # banker's rounding would give 2
    assert round_to_minor(Decimal("1.0049999999"), "EUR") == 100
    assert round_to_minor(Decimal("0.5"), "JPY") == 1  # no minor unit: rounds to the yen
    assert round_to_minor(Decimal("0.0005"), "KWD") == 1  # three decimals


def test_usage_amount_is_exact_until_the_single_rounding() -> None:
    amount = usage_amount(
        bytes_saved=1_234_567_891, value_per_gb=Decimal("0.033333"), share_percent=Decimal("33.33"),
        currency="USD",
    )  # fmt: skip
    assert amount.gb == Decimal("1.234567891")
    assert amount.precise == Decimal("1.234567891") * Decimal("0.033333") * Decimal("33.33") / 100
    assert amount.minor == 1  # 0.0137... USD


def test_negative_savings_bill_nothing() -> None:
    amount = usage_amount(
        bytes_saved=-5 * 10**9, value_per_gb=Decimal("1"), share_percent=Decimal("50"),
        currency="EUR",
    )  # fmt: skip
    assert (amount.billable_bytes, amount.minor) == (0, 0)
    assert month_total_minor(usage_minor=0, minimum_fee_minor=700) == 700


def test_format_minor() -> None:
    assert format_minor(123456, "EUR") == "1,234.56 EUR"
    assert format_minor(-5, "USD") == "-0.05 USD"
    assert format_minor(1500, "JPY") == "1,500 JPY"


@given(
    saved=st.integers(min_value=-(10**15), max_value=10**18),
    value_micro=st.integers(min_value=0, max_value=10**8),
    share_centi=st.integers(min_value=0, max_value=10_000),
)
def test_rounding_matches_exact_rational_arithmetic(
    saved: int, value_micro: int, share_centi: int
) -> None:
    value = Decimal(value_micro).scaleb(-6)
    share = Decimal(share_centi).scaleb(-2)
    amount = usage_amount(
        bytes_saved=saved, value_per_gb=value, share_percent=share, currency="EUR"
    )
    exact = (
        Fraction(max(saved, 0), 10**9) * Fraction(value_micro, 10**6) * Fraction(share_centi, 10**4)
    )
    cents = exact * 100
    expected = int(cents) + (1 if cents - int(cents) >= Fraction(1, 2) else 0)
    assert amount.minor == expected
    assert Fraction(amount.precise) == exact
