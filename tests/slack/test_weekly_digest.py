"""The weekly digest end to end: queued by the scheduled job, delivered to each lead as a DM
with the week's figures and a PNG chart uploaded with the files upload API."""

from __future__ import annotations

from datetime import timedelta

from bot.reports.digest import send_weekly_digests
from tests.harness import RAD_LEAD, Bot

PNG = b"\x89PNG\r\n\x1a\n"


def test_weekly_digest_reaches_each_lead_with_a_chart_and_no_patient_details(bot: Bot):
    ref = bot.open("cards stat MRN-SECRET-4711: chest pain?")
    bot.command(f"answer {ref} Start heparin.", user="UCARDON")
    bot.clock.advance(timedelta(days=7))
    queued = send_weekly_digests(
        catalogue=bot.services.catalogue,
        sessions=bot.services.sessions,
        clock=bot.services.clock,
        outbox=bot.services.outbox,
    )
    assert queued == 3  # one lead per service
    bot.settle(timeout=30)
    for lead in ("UCARDLEAD", "UPATHLEAD", RAD_LEAD):
        texts = bot.dm_texts(lead)
        assert texts, f"no digest DM for {lead}"
        assert not any("MRN-SECRET-4711" in t or "heparin" in t for t in texts)
    uploads = bot.slack.uploads
    assert len(uploads) == 3
    assert all(u["bytes"].startswith(PNG) for u in uploads)
    assert all(u["channel_id"].startswith("D") for u in uploads)
    assert not any("MRN-SECRET" in str(u.get("title")) for u in uploads)
