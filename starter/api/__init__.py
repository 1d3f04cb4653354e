"""The HTTP API: FastAPI over the same `Pathways` API the CLI uses."""
