"""Database-level append-only guard for usage records.

PostgreSQL: UPDATE and DELETE raise (TRUNCATE, used by test flushes and deliberate resets, is
not a row operation). SQLite: UPDATE raises; DELETE is left to the model guard because Django
flushes SQLite test databases with DELETE.
"""

from django.db import migrations

PG_UP = """
CREATE OR REPLACE FUNCTION metering_usagerecord_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'usage records are append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER metering_usagerecord_append_only
    BEFORE UPDATE OR DELETE ON metering_usagerecord
    FOR EACH ROW EXECUTE FUNCTION metering_usagerecord_append_only();
"""
PG_DOWN = """
DROP TRIGGER IF EXISTS metering_usagerecord_append_only ON metering_usagerecord;
DROP FUNCTION IF EXISTS metering_usagerecord_append_only();
"""
SQLITE_UP = [
    """CREATE TRIGGER metering_usagerecord_no_update BEFORE UPDATE ON metering_usagerecord
       BEGIN SELECT RAISE(ABORT, 'usage records are append-only'); END;""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS metering_usagerecord_no_update;",
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
    dependencies = [("metering", "0001_usage_records_rollups_streams")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": PG_UP, "sqlite": SQLITE_UP}),
            _run({"postgresql": PG_DOWN, "sqlite": SQLITE_DOWN}),
        )
    ]
