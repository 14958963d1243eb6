"""Consult flows: open, acknowledge, reply, need-info, answer, hand off, close, reopen, cancel,
rate, snooze, and who is on call. Each flow is one unit of work: the state change, its audit
event and the messages it causes (queued in the outbox) commit together or not at all. No
Slack payloads here, and the only database access is through `storage.repo`.

`service.ConsultService` is what handlers use; it composes the parts: `drafts` (what a
requester typed, validated), `oncall` (the on-call roster), `roles` (who may act),
`queries` (read-only look-ups), `opening`, `actions` and `replies` (the changes),
`refusals` (what a refused user is told) and `keys` (exactly-once keys)."""
