"""The development tools: the demo and the fake Slack it shares with the tests."""
