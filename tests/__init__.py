"""CareLoop test suite: scenario tests over signed HTTP against the fake Slack
(tests/fake_slack.py), process tests, reliability tests (tests/reliability/) and unit tests
(tests/unit/)."""
