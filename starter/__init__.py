"""The ways in: the Python API backend services import, the `rop` CLI, and the local stack."""
