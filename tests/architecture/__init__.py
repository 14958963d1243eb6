"""The shape of the code: rooms, import direction, size limits."""
