"""Property-based tests: generated cases checked against an oracle on disk."""
