"""Ending background tasks for sure. Before Python 3.12, asyncio.wait_for swallows a cancellation
that arrives just as its work ends (python/cpython#86296): the task runs on as if never cancelled,
and whoever awaits it after cancelling waits forever — a console that never quits."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None, again_after: float = 0.5) -> None:
    """Cancel the tasks and wait until each has ended, cancelling again any that ran on. What
    they ended with (a result, an error) is left unsaid: the caller no longer wants their work."""
    pending = {task for task in tasks if task is not None and not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=again_after)
    for ended in tasks:
        if ended is not None and not ended.cancelled():
            ended.exception()  # retrieved: no "exception was never retrieved" at exit
