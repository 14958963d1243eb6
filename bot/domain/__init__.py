"""The domain: pure Python (lifecycle, SLA policy, working hours, durations, catalogue,
clock, parsing, text and the vocabulary). Imports neither SQLAlchemy nor Slack."""
