"""Follow-up nudges with two independent bots (own engine, dispatcher and caches: two
gunicorn workers or hosts) on one PostgreSQL database: when both run the follow-up sweep at
the same moment, each period still gives one nudge to the owner and one escalation; and a
bot started afresh (a restart) neither repeats a nudge already sent nor skips the next."""

from __future__ import annotations

from datetime import timedelta

from bot.flows.followup_sweep import FollowUpSweepResult, followup_sweep
from tests.harness import REQUESTER, Bot, start_bot
from tests.reliability.twins import both_at_once, twin  # noqa: F401 - the fixture
from tests.slack.test_followups import (
    NURSE_MANAGER,
    OWED,
    bot,  # noqa: F401 - the fixture, with a [followups] table
    followup,
    owed_dms,
    row,
    steps,
)

H = timedelta(hours=1)


def sweep_both_at_once(first: Bot, second: Bot) -> list[FollowUpSweepResult]:
    """Both bots run the sweep at the same moment; what each did."""
    return both_at_once(first, second, lambda b: followup_sweep(b.services.consults.ctx))


def test_two_bots_sweeping_together_nudge_once_per_period(bot: Bot, twin: Bot, db_url: str):  # noqa: F811
    followup(bot, f"MRN 1: {OWED}")
    bot.clock.advance(24 * H)  # due now (due_within = 1d)
    for period in (1, 2, 3):
        done = sweep_both_at_once(bot, twin)
        assert sorted(r.nudged for r in done) == [[], ["FU-1"]], f"period {period}"
        assert [e for r in done for e in r.escalated] == ["FU-1"] * (period == 3)
        assert row(bot, "FU-1").nudge_count == period
        assert len(owed_dms(bot, REQUESTER)) == 1 + period
        bot.clock.advance(4 * H)
    # A restart: a new bot on the same database, within the period, then after it.
    bot.clock.advance(-H)
    restarted = start_bot(db_url, bot.slack, catalogue=bot.services.catalogue, clock=bot.clock)
    try:
        assert followup_sweep(restarted.services.consults.ctx).nudged == []
        bot.clock.advance(H)
        assert followup_sweep(restarted.services.consults.ctx).nudged == ["FU-1"]
        restarted.settle()
    finally:
        restarted.stop()
    assert len(owed_dms(bot, REQUESTER)) == 5
    assert len(bot.slack.dms(NURSE_MANAGER)) == 1
    assert steps(bot, "FU-1").count("followup_nudged") == 4
    assert steps(bot, "FU-1").count("followup_escalated") == 1
