"""Money arithmetic of savings invoices: Decimal throughout and ONE rounding rule.

The rule (contractual, docs/metering-billing.md): each usage line's exact amount

    GB saved × value per GB × share / 100,   GB = max(net bytes saved, 0) / 10^9

is computed exactly (a 60-digit context: no intermediate rounding happens) and rounded ONCE to
the currency's minor unit with ROUND_HALF_UP (a tie, x.xx5, goes up). Every other amount (the
minimum-fee top-up, delta lines, totals) is a difference or sum of already-rounded integers,
so nothing else rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal

BYTES_PER_GB = 10**9  # decimal GB, as CDNs bill
_CONTEXT = Context(prec=60, rounding=ROUND_HALF_UP)
# ISO 4217 minor-unit exponents that are not 2.
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip


def currency_exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def round_to_minor(amount: Decimal, currency: str) -> int:
    """The one rounding point: major units → integer minor units, ROUND_HALF_UP."""
    scaled = _CONTEXT.multiply(amount, Decimal(10) ** currency_exponent(currency))
    return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP, context=_CONTEXT))


def format_minor(amount_minor: int, currency: str) -> str:
    """12345 EUR → '123.45 EUR' (for documents; never parsed back)."""
    exp = currency_exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exp) if exp else (abs(amount_minor), 0)
    text = f"{whole:,}" + (f".{frac:0{exp}d}" if exp else "")
    return f"{sign}{text} {currency}"


@dataclass(frozen=True)
class UsageAmount:
    billable_bytes: int
    gb: Decimal
    precise: Decimal  # exact, major units
    minor: int  # rounded once


def usage_amount(
    *, bytes_saved: int, value_per_gb: Decimal, share_percent: Decimal, currency: str
) -> UsageAmount:
    """Amount for a month's net bytes saved. Negative net savings bill nothing (never a
    positive amount, and no credit either)."""
    billable = max(int(bytes_saved), 0)
    gb = _CONTEXT.divide(Decimal(billable), Decimal(BYTES_PER_GB))
    precise = _CONTEXT.divide(
        _CONTEXT.multiply(_CONTEXT.multiply(gb, value_per_gb), share_percent), Decimal(100)
    )
    return UsageAmount(
        billable_bytes=billable, gb=gb, precise=precise, minor=round_to_minor(precise, currency)
    )


def month_total_minor(*, usage_minor: int, minimum_fee_minor: int) -> int:
    """What a month costs: its usage amount, topped up to the contract's minimum fee."""
    return max(usage_minor, minimum_fee_minor)
