"""Critical results on PostgreSQL with two independent bots (own engine, dispatcher and
caches: two gunicorn workers or hosts) on one database: when both run the re-notification
sweep at the same moment, each period still gives one re-notification, one escalation, and
one direct message per person reached."""

from __future__ import annotations

from bot.flows.critical_sweep import CriticalSweepResult, critical_sweep
from tests.harness import REQUESTER, Bot
from tests.reliability.twins import both_at_once, twin  # noqa: F401 - the fixture
from tests.slack.test_critical_results import (
    SUPERVISOR,
    bot,  # noqa: F401 - the fixture, with seconds-long [critical] settings
    critical_dms,
    result,
    send,
    steps,
)

S = 1.0  # renotify_every = "5s", escalate_after = 2: escalated with the third re-notification


def sweep_both_at_once(first: Bot, second: Bot) -> list[CriticalSweepResult]:
    """Both bots run the sweep at the same moment; what each did."""
    return both_at_once(first, second, lambda b: critical_sweep(b.services.consults.ctx))


def test_two_bots_sweeping_together_renotify_once_per_period(bot: Bot, twin: Bot):  # noqa: F811
    ref = send(bot)
    assert len(critical_dms(bot, REQUESTER)) == 1
    for period in (1, 2, 3, 4):
        bot.clock.advance(5 * S)
        done = sweep_both_at_once(bot, twin)
        assert sorted(r.renotified for r in done) == [[], [ref]], f"period {period}"
        assert [ref] * (period == 3) == [e for r in done for e in r.escalated]
        assert result(bot, ref).renotify_count == period
        assert len(critical_dms(bot, REQUESTER)) == 1 + period
    # Nothing is due again within the period, however many sweeps run.
    assert all(r.renotified == [] for r in sweep_both_at_once(bot, twin))
    assert len(critical_dms(bot, SUPERVISOR)) == 2  # escalated (period 3), reminded (period 4)
    assert steps(bot, ref).count("critical_renotified") == 4
    assert steps(bot, ref).count("critical_escalated") == 1
