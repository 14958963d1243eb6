"""Reports: queries and figures, export, the Slack-facing stats and the weekly digest."""
