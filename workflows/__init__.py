"""Temporal workflows: deterministic, free of I/O; every side effect is an activity."""
