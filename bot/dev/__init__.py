"""For development only: the demo, the local Slack stand-in and the terminal renderer."""
