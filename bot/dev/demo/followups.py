"""The demo's follow-up, what is owed to the patient: the orthopaedic surgeon asks cardiology
for a pre-operative opinion and notes what he owes the patient ("call him with the
clearance"); when cardiology answers he is told at once, calls the patient and marks it
done with "Reached the patient"."""

from __future__ import annotations

import re

from bot.dev.demo.acting import form_state
from bot.dev.demo.cast import GARCIA, LI
from bot.dev.demo.records import StepFailed
from bot.dev.demo.stage import Stage
from bot.slack.ids import ActionId, BlockId, CallbackId

REF = "FU-1"
OWED = "Call Mr Alvarez with the cardiology clearance before Friday's list."


class FollowUpScene(Stage):
    """The follow-up scene, played as scene `index` of the day."""

    def followup(self, index: int) -> None:
        with self.scene(index):
            self.pause(5)
            consult = self._surgeon_asks_and_notes_what_is_owed()
            self.pause(6)
            self._cardiology_answers(consult)
            self.pause(3)
            self._reached_the_patient()

    def _surgeon_asks_and_notes_what_is_owed(self) -> str:
        act = self.people
        ack = act.command(
            GARCIA, "cards urgent MRN 24680: hip replacement Friday, new systolic murmur. Fit?",
            "CORTHO",
        )  # fmt: skip
        found = re.search(r"CARD-\d+", ack)
        if found is None:
            raise StepFailed("the pre-operative consult is stored", f"the bot answered {ack!r}")
        consult = found.group(0)
        self.pause(1)
        ack = act.command(GARCIA, f"followup {consult}: {OWED}", "CORTHO")
        self.expect(
            f"{REF} saved, due a day after the answer",
            lambda: f"{REF} saved" in ack and f"after the answer to {consult}" in ack,
            detail=f"the bot answered {ack!r}",
        )
        self.expect_dm(
            "the surgeon owns it: what is owed, with [Done] and [Hand over]",
            GARCIA, f"Follow-up {REF}", "Mr Alvarez", "[Done]", "[Hand over]",
        )  # fmt: skip
        return consult

    def _cardiology_answers(self, consult: str) -> None:
        ack = self.people.command(
            LI, f"answer {consult} Echo: aortic sclerosis, no stenosis. Fit for surgery.", "CCARD"
        )
        self.expect("cardiology answers", lambda: f"{consult} answered" in ack)
        self.expect_dm(
            "the surgeon is told at once: the answer is in, and what is owed",
            GARCIA, f"The answer to {consult} is in", REF, "Mr Alvarez",
        )  # fmt: skip

    def _reached_the_patient(self) -> None:
        see = self.screens
        message = see.dm_message(GARCIA, ActionId.FOLLOWUP_DONE, REF)
        if message is None:
            raise StepFailed(f"[Done] on {REF}", "no DM with the button")
        self.people.click(GARCIA, ActionId.FOLLOWUP_DONE, REF, message, "Done")
        self.expect(
            "the outcome form opens", lambda: see.form(CallbackId.FOLLOWUP_DONE, REF) is not None
        )
        view = see.form(CallbackId.FOLLOWUP_DONE, REF)
        assert view is not None
        note = "Spoke to him; surgery goes ahead Friday."
        values = form_state(view, {BlockId.OUTCOME: "reached", BlockId.NOTE: note})
        self.people.submit(GARCIA, view, values, f"Outcome: Reached the patient. {note}")
        self.expect_dm("done: Reached the patient", GARCIA, f"{REF} done: Reached the patient")
