"""report_days: per-day partial results of settled consults for the reports

`report_days` keeps, per UTC day of creation, service, urgency and assignee, the counts
and raw times of that day's consults once every consult of the day and service is settled
(answered, closed or cancelled); `bot.reports.days` fills it and reads it. Created on both
databases (SQLite's stays empty: its reports compute live); the triggers that keep it
right are PostgreSQL's only.

Invalidation is the database's, so that no write path can forget it: row triggers on
`consults` delete the rows of the day and service of OLD and of NEW
(`report_days_forget`) when
- a settled consult is updated (reopen, late feedback, close of an answered one, the
  retention's scrub, anything) or deleted;
- a consult changes service or creation time (a transfer of an open consult);
- a consult is inserted with a creation time more than an hour before now() (a backdated
  insert into a day that may be cached; an ordinary create is stamped now and does not
  call the function);
and TRUNCATE empties `report_days`. A press on an open consult pays nothing: the WHEN
clauses are false. An open consult's day is never cached, so its updates need nothing.

The fill against a concurrent write (`bot.reports.days.fill`): the fill takes
`LOCK TABLE report_days IN SHARE ROW EXCLUSIVE MODE` before it reads `consults`, and the
trigger takes ROW EXCLUSIVE (which that mode excludes) in a statement of its own before
its DELETE. A writer whose trigger ran first holds its lock until it commits, so the fill
waits and then reads the committed write; a writer whose trigger comes second waits for
the fill to commit, and its DELETE, a new statement under READ COMMITTED, sees the fill's
rows and deletes them. A REPEATABLE READ writer cannot see rows committed after its
snapshot: its trigger first locks the row of `report_days_gate` FOR SHARE, which the fill
updates, so PostgreSQL raises a serialization failure (to retry) when a fill committed
after that snapshot.

Revision ID: 0009_report_days
Revises: 0008_transfers
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_report_days"
down_revision = "0008_transfers"
branch_labels = None
depends_on = None

_COUNTS = (
    "closed", "cancelled", "escalated", "handed_off", "reopened",
    "sla_n", "sla_ok", "ack_n", "ack_ok", "fb_n", "fb_helpful",
)  # fmt: skip
_TIMES = ("t_created", "t_acknowledged", "t_first_reply", "t_answered", "t_waiting")
_SETTLED = "('answered', 'closed', 'cancelled')"

_FORGET = f"""
CREATE FUNCTION report_days_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- ROW EXCLUSIVE first, in a statement of its own: it waits for a fill holding SHARE
    -- ROW EXCLUSIVE to commit, and the DELETE below then takes a snapshot that sees the
    -- fill's rows (READ COMMITTED).
    LOCK TABLE report_days IN ROW EXCLUSIVE MODE;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM 1 FROM report_days_gate FOR SHARE;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM report_days
        WHERE service = OLD.service AND day = (OLD.created_at AT TIME ZONE 'UTC')::date;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        DELETE FROM report_days
        WHERE service = NEW.service AND day = (NEW.created_at AT TIME ZONE 'UTC')::date;
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION report_days_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM report_days;
    RETURN NULL;
END
$$;
CREATE TRIGGER report_days_on_insert AFTER INSERT ON consults FOR EACH ROW
    WHEN (NEW.created_at < now() - interval '1 hour')
    EXECUTE FUNCTION report_days_forget();
CREATE TRIGGER report_days_on_update AFTER UPDATE ON consults FOR EACH ROW
    WHEN (OLD.status IN {_SETTLED}
          OR OLD.service IS DISTINCT FROM NEW.service
          OR OLD.created_at IS DISTINCT FROM NEW.created_at)
    EXECUTE FUNCTION report_days_forget();
CREATE TRIGGER report_days_on_delete AFTER DELETE ON consults FOR EACH ROW
    WHEN (OLD.status IN {_SETTLED})
    EXECUTE FUNCTION report_days_forget();
CREATE TRIGGER report_days_on_truncate AFTER TRUNCATE ON consults FOR EACH STATEMENT
    EXECUTE FUNCTION report_days_clear();
"""


def upgrade() -> None:
    op.create_table(
        "report_days",
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("urgency", sa.String(length=16), nullable=False),
        sa.Column("assignee", sa.String(length=32), nullable=False),
        sa.Column("valid_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("filled_at", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTS),
        *(sa.Column(name, sa.LargeBinary(), nullable=False) for name in _TIMES),
        sa.PrimaryKeyConstraint("service", "day", "urgency", "assignee"),
    )
    op.create_table(
        "report_days_gate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("filled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO report_days_gate (id) VALUES (1)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FORGET)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ("insert", "update", "delete", "truncate"):
            op.execute(f"DROP TRIGGER report_days_on_{name} ON consults")
        op.execute("DROP FUNCTION report_days_forget()")
        op.execute("DROP FUNCTION report_days_clear()")
    op.drop_table("report_days_gate")
    op.drop_table("report_days")
