"""Reports and storage against the real database (SQLite, or PostgreSQL with
CARELOOP_TEST_DB=postgres)."""
