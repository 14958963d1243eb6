"""report_hop_days: per-day seconds of finished hops for the reports' time held

`report_hop_days` keeps, per UTC day a hop ended on, service, role and holder, the hops'
seconds as the report computes them (working time under the service's hours for the
consult's urgency, else clock time), with a fingerprint of the hours used;
`bot.reports.hop_days` fills and reads it. Created on both databases (SQLite's stays
empty: its reports compute live); the triggers are PostgreSQL's only.

A finished hop never changes and is stored when it ends, so a day ended more than a day
ago keeps its hops. The triggers delete a day's rows when
- one of its hops is deleted or updated (`consult_hops`; TRUNCATE empties the table);
- a consult whose hops ended that day changes urgency (its hours may change; an UPDATE
  that does not set `urgency` never calls the trigger).
A change of working hours is the readers' business: rows whose fingerprint differs from
the catalogue's are not used, and the next fill replaces them.

The fill against those writes: as `report_days` (migration 0009), the fill takes SHARE ROW
EXCLUSIVE on `report_hop_days` before reading the hops, and the trigger takes ROW
EXCLUSIVE in a statement of its own before its DELETE; a REPEATABLE READ writer locks
`report_days_gate`, which the fill updates.

Revision ID: 0010_hop_days
Revises: 0009_report_days
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_hop_days"
down_revision = "0009_report_days"
branch_labels = None
depends_on = None

_FORGET = """
CREATE FUNCTION report_hop_days_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE report_hop_days IN ROW EXCLUSIVE MODE;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM 1 FROM report_days_gate FOR SHARE;
    END IF;
    IF TG_TABLE_NAME = 'consults' THEN
        DELETE FROM report_hop_days d USING consult_hops h
        WHERE h.consult_id = NEW.id AND d.service = h.service
          AND d.day = (h.ended_at AT TIME ZONE 'UTC')::date;
        RETURN NULL;
    END IF;
    DELETE FROM report_hop_days
    WHERE service = OLD.service AND day = (OLD.ended_at AT TIME ZONE 'UTC')::date;
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM report_hop_days
        WHERE service = NEW.service AND day = (NEW.ended_at AT TIME ZONE 'UTC')::date;
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION report_hop_days_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM report_hop_days;
    RETURN NULL;
END
$$;
CREATE TRIGGER report_hop_days_on_delete AFTER DELETE ON consult_hops FOR EACH ROW
    EXECUTE FUNCTION report_hop_days_forget();
CREATE TRIGGER report_hop_days_on_update AFTER UPDATE ON consult_hops FOR EACH ROW
    EXECUTE FUNCTION report_hop_days_forget();
CREATE TRIGGER report_hop_days_on_truncate AFTER TRUNCATE ON consult_hops FOR EACH STATEMENT
    EXECUTE FUNCTION report_hop_days_clear();
CREATE TRIGGER report_hop_days_on_urgency AFTER UPDATE OF urgency ON consults FOR EACH ROW
    WHEN (OLD.urgency IS DISTINCT FROM NEW.urgency)
    EXECUTE FUNCTION report_hop_days_forget();
"""


def upgrade() -> None:
    op.create_table(
        "report_hop_days",
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("user", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("hops", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.LargeBinary(), nullable=False),
        sa.Column("filled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("service", "day", "role", "user"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FORGET)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ("delete", "update", "truncate"):
            op.execute(f"DROP TRIGGER report_hop_days_on_{name} ON consult_hops")
        op.execute("DROP TRIGGER report_hop_days_on_urgency ON consults")
        op.execute("DROP FUNCTION report_hop_days_forget()")
        op.execute("DROP FUNCTION report_hop_days_clear()")
    op.drop_table("report_hop_days")
