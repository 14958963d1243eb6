"""A local stand-in for Slack, standard library only.

Two halves, used both by the test-suite and by ``python -m bot demo``:

* :class:`FakeSlack` (``bot.dev.fakeslack.webapi``) is a fake Slack *Web API* server.  Point the
  bot's ``SLACK_API_URL`` at ``fake.url`` and every ``slack_sdk.WebClient`` call lands here,
  is recorded, changes an in-memory workspace, and can be scripted to fail.
* :class:`SlackSender` (``bot.dev.fakeslack.requests``) plays Slack *towards* the bot: it sends
  signed slash commands, block actions, view submissions and events to the bot's request URL.

Typical wiring::

    with FakeSlack() as fake:
        sender = SlackSender(bot_url, secret, response_url_factory=fake.response_url)
        sender.command("new", user="U0001")
        fake.wait_calls("views.open")
"""

from bot.dev.fakeslack.calls import Call
from bot.dev.fakeslack.requests import Response, SlackSender, sign
from bot.dev.fakeslack.webapi import FakeSlack
from bot.dev.fakeslack.workspace import BOT_ID, BOT_USER_ID, TEAM_ID

__all__ = [
    "BOT_ID",
    "BOT_USER_ID",
    "TEAM_ID",
    "Call",
    "FakeSlack",
    "Response",
    "SlackSender",
    "sign",
]
