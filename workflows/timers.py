"""Durable waiting: until a condition holds or an instant comes, whichever is first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow


async def settled_before(instant: datetime, settled: Callable[[], bool], summary: str) -> bool:
    """Wait until `settled()` or `instant`; True if it was settled (a timer is cancelled then).

    An instant already past does not wait: the caller acts at once, so a pathway that
    starts late (or resumes after continue-as-new) still sends what is owed.
    """
    remaining = instant - workflow.now()
    if remaining > timedelta(0) and not settled():
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(settled, timeout=remaining, timeout_summary=summary)
    return settled()
