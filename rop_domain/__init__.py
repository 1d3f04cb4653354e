"""Domain types shared by the workflow, the activities and the starters.

Everything here is pure and deterministic, so the workflow may import it.
"""
