"""Benchmarks, outside the production packages: `make bench` (bench/pathways.py, against the
no-op pathway of bench/baseline.py) and `make storm` (bench/storm.py)."""
