"""CareLoop test suite, grouped by what each part proves: `units/` (pure domain, templates,
delivery parts), `slack/` (the Slack protocol end to end against the fake Slack), `data/`
(reports and storage on the real database), `processes/` (real `python -m bot` processes),
`reliability/` (signatures, exactly-once, outages, permissions, PHI), `dev/` (the demo and
the fake Slack) and `architecture/` (rooms, import direction, size limits)."""
