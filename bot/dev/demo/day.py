"""The demo's clinical day, scene by scene: what each person does in Slack and what should
then appear there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.dev.demo.acting import form_state
from bot.dev.demo.cast import (
    AHMED,
    BROWN,
    CHEN,
    GARCIA,
    LI,
    MOREAU,
    NOVAK,
    PATEL,
    Person,
    service_channel,
)
from bot.dev.demo.catalogue import radiology_rota
from bot.dev.demo.critical import CriticalScene
from bot.dev.demo.followups import FollowUpScene
from bot.dev.demo.records import StepFailed
from bot.dev.demo.screens import initial_value
from bot.dev.fakeslack.requests import plain_text
from bot.domain.vocabulary import Urgency
from bot.slack.ids import ActionId, BlockId, CallbackId

Json = dict[str, Any]


class Demo(CriticalScene, FollowUpScene):
    """The running demo: the Slack stand-in, the bot process, the people and the checks."""

    SCENES = (
        "starting CareLoop (python -m bot serve) on a fresh SQLite database",
        "radiology: a stat consult, acknowledged and answered",
        "pathology: nobody picks up; nudged, escalated to backup and lead, answered",
        "cardiology: the consultant needs information from the requester",
        "radiology: shift handoff to the night radiologist",
        "cardiology: a requester cancels",
        "radiology: the requester rates the answer and closes the consult",
        "radiology: a critical result, not acknowledged at first, escalated, then read back",
        "cardiology: a follow-up owed to the patient, from the answer to 'Reached the patient'",
        "end of the day: the lead's report",
    )

    def play(self) -> None:
        """The scripted day (scene 0, starting the bot, is run by `run_demo`)."""
        self.radiology_stat()
        self.pathology_escalation()
        self.cardiology_need_info()
        self.radiology_handoff()
        self.cardiology_cancel()
        self.radiology_rating()
        self.critical_result(7)
        self.followup(8)

    def expect_thread(self, name: str, ref: str, *needles: str, timeout: float = 10.0) -> None:
        """Wait for a reply in the thread of `ref`'s card holding every one of `needles`."""
        self.expect(name, lambda: self.screens.in_thread(ref, *needles), timeout=timeout)

    def _form_opens(self, name: str, callback_id: str, ref: str) -> Json:
        """Wait for the form `callback_id` for `ref` to open; returns it."""
        see = self.screens
        self.expect(name, lambda: see.form(callback_id, ref) is not None)
        view = see.form(callback_id, ref)
        assert view is not None
        return view

    def _write(self, person: Person, view: Json, block_id: str, text: str, summary: str) -> None:
        """`person` types `text` into the form's one text field and submits it."""
        self.people.submit(person, view, {block_id: {"value": plain_text(text)}}, summary)

    def _card_posted(self, ref: str, channel: str, *needles: str) -> None:
        see = self.screens
        self.expect(
            f"card {ref} posted in #{channel}",
            lambda: bool(see.card(ref)) and all(n in see.card_text(ref) for n in needles),
            detail=lambda: (
                f"#{channel} holds {len(self.fake.messages(service_channel(ref)))} message(s)"
            ),
        )

    # ------------------------------------------------------------------ scene 1
    def radiology_stat(self) -> None:
        with self.scene(1):
            self._stat_request()
            self.pause(5)
            self._stat_acknowledge()
            self.pause(5)
            self._stat_answer()

    def _stat_request(self) -> None:
        see, act = self.screens, self.people
        question = "CT head: new confusion on apixaban, rule out bleed?"
        ack = act.command(AHMED, f"rad stat MRN 12345: {question}", "CEMERG")
        self.expect(
            "missing accession: the form opens with what was typed",
            lambda: "opened the form" in ack and see.form(CallbackId.NEW_CONSULT) is not None,
            detail=f"the bot answered {ack!r}",
        )
        self.pause(2)
        view = see.form(CallbackId.NEW_CONSULT)
        assert view is not None
        values = form_state(view, {BlockId.INTAKE_PREFIX + "accession": "A2026-0412"})
        act.submit(AHMED, view, values, "adds Study / accession number: A2026-0412")
        self._card_posted("RAD-1", "radiology", "[Acknowledge]", "@Dr Chen")
        self.expect_dm(
            "requester gets a confirmation with the link",
            AHMED,
            "Your consult RAD-1 is in #radiology",
        )

    def _stat_acknowledge(self) -> None:
        see = self.screens
        card = see.card("RAD-1")
        assert card is not None
        self.people.click(CHEN, ActionId.ACKNOWLEDGE, "RAD-1", card, "Acknowledge")
        self.expect_dm("requester DM says 'acknowledged'", AHMED, "acknowledged RAD-1")
        self.expect(
            "card shows who acknowledged, without [Acknowledge]",
            lambda: (
                "owned by @Dr Chen" in see.card_text("RAD-1")
                and "[Acknowledge]" not in see.card_text("RAD-1")
            ),
            detail=lambda: see.card_text("RAD-1").splitlines()[1:2].__repr__(),
        )

    def _stat_answer(self) -> None:
        see, act = self.screens, self.people
        prelim = "Prelim: no acute haemorrhage. Old small left parietal infarct."
        act.reply(CHEN, "RAD-1", prelim)
        self.expect_dm(
            "thread reply relayed to the requester",
            AHMED,
            "replied on RAD-1",
            "no acute haemorrhage",
        )
        self.pause(5)
        card = see.card("RAD-1")
        assert card is not None
        act.click(CHEN, ActionId.ANSWER, "RAD-1", card, "Answer")
        self.expect(
            "answer form opens pre-filled with the reply",
            lambda: initial_value(see.form(CallbackId.ANSWER, "RAD-1"), BlockId.ANSWER) == prelim,
        )
        view = see.form(CallbackId.ANSWER, "RAD-1")
        assert view is not None
        answer = (
            "No acute intracranial haemorrhage. Old small left parietal infarct. "
            "No contraindication to continuing apixaban."
        )
        self._write(CHEN, view, BlockId.ANSWER, answer, f"edits the answer: {answer}")
        self.expect_thread(
            "answer posted in the RAD-1 thread", "RAD-1", "Answer from @Dr Chen", "contraindication"
        )
        self.expect_dm(
            "requester gets the answer with [Close] and [Helpful]",
            AHMED,
            "answered RAD-1",
            "contraindication",
            "[Helpful]",
        )

    # ------------------------------------------------------------------ scene 2
    def pathology_escalation(self) -> None:
        with self.scene(2):
            self.pause(5)
            self.people.command(
                AHMED, "path stat S26-01234: frozen section, are the margins clear?", "CEMERG"
            )
            self._card_posted("PATH-1", "pathology", "@Dr Singh")
            self._escalation_ladder()
            self.pause(3)
            self._backup_answers()

    def _escalation_ladder(self) -> None:
        s = self.seconds
        ladder_timeout = s["stat_ack"] + 3 * (s["stat_nudge"] + s["sweep"]) + 10
        self.expect_thread(
            "nudge in the PATH-1 thread mentions the on-call (Dr Singh)",
            "PATH-1",
            "@Dr Singh",
            "has not been acknowledged",
            timeout=ladder_timeout,
        )
        self.expect_dm("requester told PATH-1 is overdue", AHMED, "PATH-1 is overdue")
        self.expect_thread(
            "escalated to the backup in the thread",
            "PATH-1",
            "Escalated",
            "@Dr Patel",
            timeout=ladder_timeout,
        )
        self.expect_dm(
            "escalation DM to the backup (Dr Patel)", PATEL, "PATH-1", "escalated to you"
        )
        self.expect_dm(
            "requester told 'escalated'", AHMED, "PATH-1 is still waiting; escalated to @Dr Patel"
        )
        self.expect_dm(
            "escalation DM to the lead (Dr Moreau)",
            MOREAU,
            "PATH-1",
            "escalated to you",
            timeout=ladder_timeout,
        )

    def _backup_answers(self) -> None:
        see = self.screens
        card = see.card("PATH-1")
        assert card is not None
        self.people.click(PATEL, ActionId.ACKNOWLEDGE, "PATH-1", card, "Acknowledge")
        self.expect(
            "card shows the backup acknowledged",
            lambda: "owned by @Dr Patel" in see.card_text("PATH-1"),
        )
        self.pause(5)
        ack = self.people.command(
            PATEL,
            "answer PATH-1 Margins clear; closest 4 mm (posterior). Proceed with closure.",
            "CPATH",
        )
        self.expect(
            "the answer reaches the requester",
            lambda: "PATH-1 answered" in ack and see.has_dm(AHMED, "Margins clear"),
            detail=see.seen(AHMED, "dm"),
        )

    # ------------------------------------------------------------------ scene 3
    def cardiology_need_info(self) -> None:
        with self.scene(3):
            self.pause(5)
            act = self.people
            act.command(BROWN, "cards stat MRN 67890: new AF, rate 140. Anticoagulate?", "CWARD4B")
            self._card_posted("CARD-1", "cardiology", "@Dr Li")
            self.pause(2)
            ack = act.command(LI, "ack CARD-1", "CCARD")
            self.expect("Dr Li acknowledges CARD-1", lambda: "You acknowledged CARD-1" in ack)
            self.pause(3)
            self._ask_for_information()
            self.pause(3)
            self._requester_replies()
            self.pause(5)
            ack = act.command(
                LI,
                "answer CARD-1 Start apixaban 5 mg twice daily; bisoprolol 2.5 mg for rate. "
                "Echo as outpatient.",
                "CCARD",
            )
            self.expect(
                "the answer reaches the requester",
                lambda: "CARD-1 answered" in ack and self.screens.has_dm(BROWN, "Start apixaban"),
                detail=self.screens.seen(BROWN, "dm"),
            )

    def _ask_for_information(self) -> None:
        see, act, s = self.screens, self.people, self.seconds
        card = see.card("CARD-1")
        assert card is not None
        act.click(LI, ActionId.NEED_INFO, "CARD-1", card, "Need info")
        view = self._form_opens("need-info form opens", CallbackId.NEED_INFO, "CARD-1")
        ask = "Latest creatinine? Any history of bleeding or falls?"
        self._write(LI, view, BlockId.QUESTION, ask, f"asks: {ask}")
        self.expect_dm(
            "need-info DM to the requester", BROWN, "needs information for CARD-1", "creatinine"
        )
        self.expect(
            "card shows 'Waiting on requester'",
            lambda: "Waiting on requester" in see.card_text("CARD-1"),
        )
        self.expect_dm(
            "requester reminded while the clock is paused",
            BROWN,
            "waiting for your reply on CARD-1",
            timeout=s["stat_nudge"] + 2 * s["sweep"] + 10,
        )

    def _requester_replies(self) -> None:
        see = self.screens
        self.people.reply(
            BROWN, "CARD-1", "Creatinine 88. No bleeding history; one fall last year."
        )
        self.expect_dm(
            "requester's reply resumes the consult", LI, "replied on CARD-1", "running again"
        )
        self.expect(
            "card back to 'Acknowledged'",
            lambda: "owned by @Dr Li" in see.card_text("CARD-1"),
        )

    # ------------------------------------------------------------------ scene 4
    def radiology_handoff(self) -> None:
        with self.scene(4):
            self.pause(10)
            self._urgent_request_by_form()
            self.pause(3)
            ack = self.people.command(CHEN, "ack RAD-2", "CRAD")
            self.expect("Dr Chen acknowledges RAD-2", lambda: "You acknowledged RAD-2" in ack)
            self.pause(5)
            self._handoff_to_night()
            self._night_shift_starts()

    def _urgent_request_by_form(self) -> None:
        see, act = self.screens, self.people
        before = len(self.fake.views())
        ack = act.command(BROWN, "", "CWARD4B")
        self.expect(
            "/consult alone opens the form",
            lambda: (
                "Opening the consult form" in ack
                and see.form(CallbackId.NEW_CONSULT, after=before) is not None
            ),
            detail=f"the bot answered {ack!r}",
        )
        view = see.form(CallbackId.NEW_CONSULT, after=before)
        assert view is not None
        self.pause(2)
        typed = {
            BlockId.URGENCY: Urgency.URGENT,
            BlockId.PATIENT: "MRN 67890",
            BlockId.QUESTION: "CT pulmonary angiogram: pleuritic pain, D-dimer 2.1. PE?",
        }
        view = act.choose_service(BROWN, view, "radiology", "Radiology", typed)
        self.expect(
            "choosing Radiology adds its accession field",
            lambda: "Study / accession number" in str(self.fake.view(view["id"])),
        )
        view = self.fake.view(view["id"]) or view
        values = form_state(view, typed | {BlockId.INTAKE_PREFIX + "accession": "A2026-0413"})
        act.submit(
            BROWN,
            view,
            values,
            "Urgency: Urgent; Patient: MRN 67890; Question: CT pulmonary angiogram: "
            "pleuritic pain, D-dimer 2.1. PE?; Study / accession number: A2026-0413",
        )
        self._card_posted("RAD-2", "radiology", "Urgent")

    def _handoff_to_night(self) -> None:
        ack = self.people.command(
            CHEN,
            f"handoff <@{NOVAK.id}|novak> RAD-2 protocolled; scan booked 18:30, "
            "please report tonight.",
            "CRAD",
        )
        self.expect("handoff confirmed to Dr Chen", lambda: "Handed off to" in ack)
        self.expect_dm(
            "handoff DM lists the consults for Dr Novak",
            NOVAK,
            "handed off 1 consult(s) to you",
            "RAD-2",
            "18:30",
        )
        self.expect_thread(
            "RAD-2 thread records the handoff", "RAD-2", "Handed off from @Dr Chen to @Dr Novak"
        )
        self.expect_dm("requester told who owns RAD-2 now", BROWN, "RAD-2 is now with @Dr Novak")
        shown = self.people.command(BROWN, "show RAD-2", "CWARD4B")
        self.expect(
            "Dr Brown sees RAD-2's timeline: each hop with its holder",
            lambda: all(
                hop in shown
                for hop in ("Radiology queue", "@Dr Chen, Radiology", "@Dr Novak, Radiology")
            ),
            detail=f"the bot answered {shown[:300]!r}",
        )

    def _night_shift_starts(self) -> None:
        """The rota (re-read every second) says Dr Novak's night starts in two seconds:
        at the change of shift CareLoop tells him by itself."""
        now = datetime.now(UTC)
        self.rota_path.write_text(radiology_rota(now, now + timedelta(seconds=2)), "utf-8")
        self.expect_dm(
            "at the change of shift the rota puts Dr Novak on call, and he is told",
            NOVAK,
            "You are on call for",
            "Radiology",
            timeout=20,
        )

    # ------------------------------------------------------------------ scene 5
    def cardiology_cancel(self) -> None:
        see, act = self.screens, self.people
        with self.scene(5):
            self.pause(5)
            act.command(
                GARCIA, "cards MRN 24680: pre-op cardiac review before hip replacement?", "CORTHO"
            )
            self._card_posted("CARD-2", "cardiology", "Routine")
            self.pause(5)
            ack = act.command(GARCIA, "cancel CARD-2 surgery postponed, will re-refer", "CORTHO")
            self.expect(
                "cancel confirmed to the requester",
                lambda: "CARD-2 is cancelled" in ack,
                detail=f"the bot answered {ack!r}",
            )
            self.expect(
                "CARD-2 thread says cancelled, card has no buttons",
                lambda: (
                    see.in_thread("CARD-2", "Cancelled by @Dr Garcia", "postponed")
                    and "Cancelled" in see.card_text("CARD-2")
                    and "[Answer]" not in see.card_text("CARD-2")
                ),
            )

    # ------------------------------------------------------------------ scene 6
    def radiology_rating(self) -> None:
        with self.scene(6):
            self.pause(5)
            self._rate_and_comment()
            self.pause(2)
            self._requester_closes()

    def _press_on_answer(self, action_id: str, label: str) -> None:
        """Dr Ahmed presses a button on the RAD-1 answer in his DMs."""
        message = self.screens.dm_message(AHMED, action_id, "RAD-1")
        if message is None:
            raise StepFailed(f"[{label}] on the RAD-1 answer", "no DM with the button")
        self.people.click(AHMED, action_id, "RAD-1", message, label)

    def _rate_and_comment(self) -> None:
        see = self.screens
        self._press_on_answer(ActionId.HELPFUL, "Helpful")
        self.expect(
            "feedback recorded",
            lambda: any("rating of RAD-1 was recorded" in t for t in see.ephemeral_texts(AHMED)),
            detail=see.seen(AHMED, "ephemeral"),
        )
        view = self._form_opens("comment form opens", CallbackId.FEEDBACK, "RAD-1")
        comment = "Quick and clear, thank you."
        self._write(AHMED, view, BlockId.COMMENT, comment, comment)
        self.record("comment accepted", 0.0)

    def _requester_closes(self) -> None:
        see = self.screens
        self._press_on_answer(ActionId.CLOSE, "Close")
        self.expect(
            "requester closes RAD-1",
            lambda: (
                any("RAD-1 is closed" in t for t in see.ephemeral_texts(AHMED))
                and see.in_thread("RAD-1", "Closed by @Dr Ahmed")
            ),
            detail=see.seen(AHMED, "ephemeral"),
        )
        self.expect(
            "RAD-1 card shows Closed",
            lambda: "\nClosed" in see.card_text("RAD-1"),
        )
