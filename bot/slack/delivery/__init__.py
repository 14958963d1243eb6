"""Delivery of the outbox to Slack, off the request path: `pacing` (a token bucket per
channel), `transport` (the Web API call and how its errors are read), `landed` (finding an
earlier attempt of a post in the channel by the outbox id it carries) and `dispatcher`
(leadership, leasing, retries and the background loop). What a message says is not decided
here: the assembly injects a composer and a result callback (see `dispatcher.Dispatcher`)."""
