"""Metering policy knobs. Read from settings when present (the lead may add env helpers there);
the defaults are the documented contract (docs/metering-billing.md)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings

# A record may be at most this far in the future of server time (device clocks drift).
FUTURE_SKEW = dt.timedelta(seconds=getattr(settings, "METERING_FUTURE_SKEW_S", 300))
# Older records are refused: a bounded lateness keeps delta lines to the last two months.
LATENESS_LIMIT = dt.timedelta(days=getattr(settings, "METERING_LATENESS_LIMIT_DAYS", 35))
# Stripe-like batch size cap; the SDK sends at most this many records per signed batch.
MAX_BATCH_RECORDS = 1000
# Ingest bodies above this are refused before any parsing (1,000 records are ~300 KB).
MAX_BATCH_BYTES = 2 * 1024 * 1024
