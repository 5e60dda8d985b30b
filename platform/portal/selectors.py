"""Reads composed for portal pages (each over the owning app's selectors, always scoped to
one customer). The dashboard figures are UTC calendar months of the daily usage rollups."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

from activation.models import Activation
from activation.selectors import activation_list
from billing.money import usage_amount
from customers.models import ContractTerms
from customers.selectors import contract_terms_in_force
from jobs.models import EncodeJob
from jobs.selectors import encode_job_list
from metering.selectors import usage_daily


@dataclass(frozen=True)
class MonthSavings:
    month: dt.date  # first day
    bytes_saved: int
    baseline_bytes: int
    bytes_delivered: int
    value_minor: int  # what the saved bandwidth was worth at the customer's price per GB
    fee_minor: int  # our share of that value (an estimate until the month is invoiced)

    @property
    def ratio(self) -> float | None:
        """Share of the baseline's bytes that were not delivered (None without baseline)."""
        if self.baseline_bytes <= 0:
            return None
        return self.bytes_saved / self.baseline_bytes


@dataclass(frozen=True)
class Dashboard:
    currency: str
    terms: ContractTerms | None
    months: list[MonthSavings]  # oldest first, the current month last
    active_devices: int
    jobs_in_flight: int

    @property
    def this_month(self) -> MonthSavings:
        return self.months[-1]

    @property
    def last_12_months(self) -> MonthSavings:
        return MonthSavings(
            month=self.months[0].month,
            bytes_saved=sum(m.bytes_saved for m in self.months),
            baseline_bytes=sum(m.baseline_bytes for m in self.months),
            bytes_delivered=sum(m.bytes_delivered for m in self.months),
            value_minor=sum(m.value_minor for m in self.months),
            fee_minor=sum(m.fee_minor for m in self.months),
        )


def month_start(day: dt.date, months_back: int = 0) -> dt.date:
    index = day.year * 12 + day.month - 1 - months_back
    return dt.date(index // 12, index % 12 + 1, 1)


def dashboard_summary(*, customer_id: uuid.UUID, today: dt.date) -> Dashboard:
    """Savings per month for the 12 months up to `today`, valued with the terms in force in
    each month, plus active devices and jobs in flight. Four queries plus one per month with
    usage for its terms (12 at most)."""
    first = month_start(today, 11)
    end = month_start(today, -1)
    sums: dict[dt.date, list[int]] = {month_start(today, i): [0, 0, 0] for i in range(12)}
    for row in usage_daily(customer_id=customer_id, start=first, end=end):
        bucket = sums[row.day.replace(day=1)]
        bucket[0] += row.bytes_saved
        bucket[1] += row.baseline_bytes
        bucket[2] += row.bytes_delivered
    current_terms = contract_terms_in_force(customer_id=customer_id, on=today)
    months: list[MonthSavings] = []
    for month in sorted(sums):
        saved, baseline, delivered = sums[month]
        terms = current_terms
        if month != month_start(today) and saved:
            last_day = month_start(month, -1) - dt.timedelta(days=1)
            terms = contract_terms_in_force(customer_id=customer_id, on=last_day)
        value = fee = 0
        if terms is not None:
            value = usage_amount(
                bytes_saved=saved,
                value_per_gb=terms.value_per_gb,
                share_percent=Decimal(100),
                currency=terms.currency,
            ).minor
            fee = usage_amount(
                bytes_saved=saved,
                value_per_gb=terms.value_per_gb,
                share_percent=terms.revenue_share_percent,
                currency=terms.currency,
            ).minor
        months.append(MonthSavings(month, saved, baseline, delivered, value, fee))
    return Dashboard(
        currency=current_terms.currency if current_terms else "",
        terms=current_terms,
        months=months,
        active_devices=activation_list(
            scope_customer_id=customer_id, state=Activation.State.ACTIVE
        ).count(),
        jobs_in_flight=encode_job_list(scope_customer_id=customer_id)
        .filter(state__in=[EncodeJob.State.QUEUED, EncodeJob.State.RUNNING])
        .count(),
    )
