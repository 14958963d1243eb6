"""Issue 4, "Trustworthy under faults and bad input": each module proves one point."""
