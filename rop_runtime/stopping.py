"""A graceful stop on SIGTERM, as container runtimes and Kubernetes ask for one.

In a container our process is PID 1, and the kernel delivers no signal to PID 1 that has
no handler: without one, SIGTERM is ignored and the runtime kills the process after its
grace period (exit 137), cutting off work in flight. Each long-running command (`rop
worker`, `rop codec-server`; uvicorn does the same for `rop api`) therefore turns SIGTERM,
and SIGINT for a terminal, into an event it waits on, and then drains and exits 0.
"""

from __future__ import annotations

import asyncio
import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT, in the running event loop."""
    loop = asyncio.get_running_loop()
    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, stop.set)
