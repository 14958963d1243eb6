"""Units of work: consults, the overdue sweep, retention and the outbox. Each takes its
collaborators (sessions, catalogue, clock, outbox) explicitly."""
