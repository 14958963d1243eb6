"""The fake Slack the tests run the bot against, both directions over real HTTP on loopback.

* `FakeSlack`: a Web API server on 127.0.0.1, port 0. The bot's `SLACK_API_URL` points at
  it; it answers every Web API method the bot uses (chat.postMessage/update/postEphemeral,
  getPermalink, views.open/update/publish, conversations.open/history/replies/members,
  users.info, auth.test, files.upload_v2's three calls, …), records every call with its
  arguments (`calls`, `calls_to`, `wait_calls`), keeps the resulting channels, threads and
  DMs, and can be told to fail a method: HTTP 500, 429 with Retry-After, or a hang
  (`fail(method, status=..., retry_after=..., hang=...)`; see `tests/dev/test_fake_slack.py`).
* `SlackSender`: sends slash commands, block actions, view submissions and events to the
  bot's request URL, signed exactly as Slack signs them (`sign`).

The implementation lives in `bot/dev/fakeslack/` because `python -m bot demo` plays its day
against the same one (one implementation, not two); the tests take it from here.
"""

from bot.dev.fakeslack import *  # noqa: F403 - the package's __all__, re-exported
