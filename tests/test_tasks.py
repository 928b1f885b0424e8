"""Background tasks end when asked, even one whose cancellation was swallowed (asyncio.wait_for
before Python 3.12 does that when its work ends at the same moment): a console that never quit,
and a two-console test that hung in CI, waited on such a task."""

from __future__ import annotations

import asyncio

from cpconsole.core.tasks import cancel_and_wait


async def test_a_task_that_swallowed_its_cancellation_still_ends() -> None:
    swallowed = asyncio.Event()

    async def runs_on() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed.is_set():
                    raise
                swallowed.set()  # as wait_for does when its work is done as the cancel comes

    task = asyncio.create_task(runs_on())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, again_after=0.05), 60)  # a hang guard only
    assert swallowed.is_set() and task.cancelled()


async def test_ended_tasks_and_their_errors_are_left_quietly() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(failed, None)
    assert isinstance(failed.exception(), RuntimeError)
