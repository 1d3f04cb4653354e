"""Activities: the pathway's only contact with the outside world (PostgreSQL, notifications)."""
