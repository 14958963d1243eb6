"""The demo's critical result: the night radiologist sends a critical finding to the ward
physician, who does not acknowledge it at first; it is re-notified, escalated to the house
supervisor (the radiologist is told to phone), then acknowledged with a read-back."""

from __future__ import annotations

from bot.dev.demo.cast import BROWN, NOVAK, WALSH
from bot.dev.demo.records import StepFailed
from bot.dev.demo.stage import Stage
from bot.dev.fakeslack.requests import plain_text
from bot.slack.ids import ActionId, BlockId, CallbackId

REF = "CRIT-1"
FINDING = "Massive bilateral PE with right heart strain (RV/LV 1.4)."
READ_BACK = (
    "Massive bilateral PE with right heart strain. Starting heparin now, "
    "calling the PE response team."
)


class CriticalScene(Stage):
    """The critical-result scene, played as scene `index` of the day."""

    def critical_result(self, index: int) -> None:
        with self.scene(index):
            self.pause(10)
            self._radiologist_sends()
            self._nobody_acknowledges()
            self.pause(2)
            self._read_back()

    def _radiologist_sends(self) -> None:
        ack = self.people.command(
            NOVAK, f"critical <@{BROWN.id}|brown> MRN 67890: {FINDING}", "CRAD"
        )
        self.expect(
            f"{REF} stored and sent",
            lambda: f"{REF} sent" in ack,
            detail=f"the bot answered {ack!r}",
        )
        self.expect_dm(
            "the ward physician gets the finding with [Acknowledge receipt]",
            BROWN,
            "Critical result",
            REF,
            "right heart strain",
            "[Acknowledge receipt]",
        )

    def _nobody_acknowledges(self) -> None:
        s = self.seconds
        ladder = 3 * (s["critical_renotify"] + s["sweep"]) + 10
        self.expect_dm(
            "not acknowledged: the ward physician is re-notified",
            BROWN,
            REF,
            "reminder 1",
            timeout=ladder,
        )
        self.expect_dm(
            "after two re-notifications it goes to the house supervisor",
            WALSH,
            REF,
            "Escalated to you",
            "[Acknowledge receipt]",
            timeout=ladder,
        )
        self.expect_dm(
            "the radiologist is told it was not received: phone the clinician",
            NOVAK,
            f"{REF} has not been received",
            "Phone the clinician",
        )

    def _read_back(self) -> None:
        see = self.screens
        message = see.dm_message(BROWN, ActionId.CRITICAL_ACK, REF)
        if message is None:
            raise StepFailed(f"[Acknowledge receipt] on {REF}", "no DM with the button")
        self.people.click(BROWN, ActionId.CRITICAL_ACK, REF, message, "Acknowledge receipt")
        self.expect(
            "read-back form opens", lambda: see.form(CallbackId.CRITICAL_ACK, REF) is not None
        )
        view = see.form(CallbackId.CRITICAL_ACK, REF)
        assert view is not None
        values = {BlockId.READ_BACK: {"value": plain_text(READ_BACK)}}
        self.people.submit(BROWN, view, values, f"reads back: {READ_BACK}")
        self.expect_dm(
            "the radiologist is told at once, with the read-back",
            NOVAK,
            f"{REF} acknowledged by @Dr Brown",
            "Starting heparin",
        )
