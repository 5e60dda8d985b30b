"""A finalized invoice is immutable, in the database too.

Invoice: once not a draft, only the payment/Stripe columns and the state may change, the state
only finalized → paid | void, and paid/void are final. Lines of a non-draft invoice cannot be
inserted, changed (except their Stripe item id) or deleted. PostgreSQL gets all of it; SQLite
the UPDATE/INSERT guards (Django flushes SQLite test databases with DELETE).
"""

from django.db import migrations

MUTABLE = (
    "state", "paid_at", "voided_at", "payment_failed_at", "payment_failure_count",
    "stripe_invoice_id", "stripe_status", "sent_at",
)  # fmt: skip
FROZEN = (
    "customer_id", "terms_id", "period_month", "time_zone", "period_start", "period_end",
    "ingestion_cutoff", "currency", "total_minor", "number", "sequence_number",
    "finalized_at", "due_date", "created_at",
)  # fmt: skip
LINE_FROZEN = (
    "invoice_id", "position", "kind", "description", "period_month", "event_start",
    "event_end", "ingested_from", "ingested_before", "record_count", "bytes_delivered",
    "baseline_bytes", "bytes_saved", "negative_bytes_saved", "negative_records", "gb_saved",
    "value_per_gb", "share_percent", "minimum_fee_minor", "amount_precise", "amount_minor",
    "billed_before_minor", "recomputed_total_minor",
)  # fmt: skip

_MUTABLE_ARRAY = "ARRAY[" + ", ".join(f"'{c}'" for c in MUTABLE) + "]"

PG_UP = f"""
CREATE OR REPLACE FUNCTION billing_invoice_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.state <> 'draft' THEN
            RAISE EXCEPTION 'invoice % is finalized: it cannot be deleted', OLD.number
                USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.state <> 'draft' THEN
        IF (to_jsonb(NEW) - {_MUTABLE_ARRAY}) IS DISTINCT FROM (to_jsonb(OLD) - {_MUTABLE_ARRAY}) THEN
            RAISE EXCEPTION 'invoice % is finalized: its content is immutable', OLD.number
                USING ERRCODE = 'restrict_violation';
        END IF;
        IF NEW.state <> OLD.state AND NOT (OLD.state = 'finalized' AND NEW.state IN ('paid', 'void')) THEN
            RAISE EXCEPTION 'invoice %: % -> % is not allowed', OLD.number, OLD.state, NEW.state
                USING ERRCODE = 'restrict_violation';
        END IF;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER billing_invoice_guard BEFORE UPDATE OR DELETE ON billing_invoice
    FOR EACH ROW EXECUTE FUNCTION billing_invoice_guard();

CREATE OR REPLACE FUNCTION billing_invoiceline_guard() RETURNS trigger AS $$
DECLARE
    parent_state text;
BEGIN
    SELECT state INTO parent_state FROM billing_invoice
        WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END;
    IF parent_state IS NULL OR parent_state = 'draft' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'UPDATE'
       AND (to_jsonb(NEW) - 'stripe_invoice_item_id') = (to_jsonb(OLD) - 'stripe_invoice_item_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'lines of a finalized invoice are immutable (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER billing_invoiceline_guard BEFORE INSERT OR UPDATE OR DELETE ON billing_invoiceline
    FOR EACH ROW EXECUTE FUNCTION billing_invoiceline_guard();
"""
PG_DOWN = """
DROP TRIGGER IF EXISTS billing_invoice_guard ON billing_invoice;
DROP FUNCTION IF EXISTS billing_invoice_guard();
DROP TRIGGER IF EXISTS billing_invoiceline_guard ON billing_invoiceline;
DROP FUNCTION IF EXISTS billing_invoiceline_guard();
"""


def _changed(columns):
    return " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in columns)


SQLITE_UP = [
    f"""CREATE TRIGGER billing_invoice_frozen BEFORE UPDATE ON billing_invoice
        WHEN OLD.state <> 'draft' AND ({_changed(FROZEN)})
        BEGIN SELECT RAISE(ABORT, 'a finalized invoice is immutable'); END;""",
    """CREATE TRIGGER billing_invoice_state BEFORE UPDATE OF state ON billing_invoice
        WHEN NEW.state <> OLD.state AND NOT (OLD.state = 'draft' AND NEW.state = 'finalized')
             AND NOT (OLD.state = 'finalized' AND NEW.state IN ('paid', 'void'))
        BEGIN SELECT RAISE(ABORT, 'invoice state transition not allowed'); END;""",
    f"""CREATE TRIGGER billing_invoiceline_frozen BEFORE UPDATE ON billing_invoiceline
        WHEN (SELECT state FROM billing_invoice WHERE id = OLD.invoice_id) <> 'draft'
             AND ({_changed(LINE_FROZEN)})
        BEGIN SELECT RAISE(ABORT, 'lines of a finalized invoice are immutable'); END;""",
    """CREATE TRIGGER billing_invoiceline_no_insert BEFORE INSERT ON billing_invoiceline
        WHEN (SELECT state FROM billing_invoice WHERE id = NEW.invoice_id) <> 'draft'
        BEGIN SELECT RAISE(ABORT, 'lines of a finalized invoice are immutable'); END;""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS billing_invoice_frozen;",
    "DROP TRIGGER IF EXISTS billing_invoice_state;",
    "DROP TRIGGER IF EXISTS billing_invoiceline_frozen;",
    "DROP TRIGGER IF EXISTS billing_invoiceline_no_insert;",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor)
        if statements is None:
            return
        for sql in [statements] if isinstance(statements, str) else statements:
            schema_editor.execute(sql, params=None)  # no placeholders: % is plpgsql

    return run


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_savings_invoices_stripe_dunning")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": PG_UP, "sqlite": SQLITE_UP}),
            _run({"postgresql": PG_DOWN, "sqlite": SQLITE_DOWN}),
        )
    ]
