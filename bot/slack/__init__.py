"""Slack: delivery of the outbox (transport, leasing, pacing, retries) and rendering."""
