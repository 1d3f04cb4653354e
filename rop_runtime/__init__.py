"""What the worker and every way in share: settings, the Temporal client with its payload
codec, logging, and the set-up of task delivery.

It sits beside `rop_domain/` for the same reason: the worker (`worker.py`) needs it and so do
the ways in (`starter/`: the Python API, CLI, HTTP API, codec server), and neither should
import the other to get it.
"""
