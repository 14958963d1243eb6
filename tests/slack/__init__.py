"""The Slack protocol end to end: signed requests to the real WSGI app, the fake Slack Web
API receiving what the bot sends, an injected clock."""
