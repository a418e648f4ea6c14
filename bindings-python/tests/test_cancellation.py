"""Cancelling the awaiting task, leaving `async for`, and explicit cancels
all cancel the run; the session then records it as cancelled."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import orchestra

from conftest import cancel_mid_run, waiting_agent


async def recorded_status(o: orchestra.Orchestrator, session_id: str, run_id: str) -> str:
    session = await o.get_session(session_id)
    assert session is not None
    run = session.run(run_id)
    assert run is not None
    return run.status


async def test_cancelling_the_awaiting_task_cancels_the_run(never: asyncio.Event) -> None:
    o = orchestra.Orchestrator()
    started, cancelled = waiting_agent(o, never)
    sid = str(uuid.uuid4())
    task = asyncio.ensure_future(o.run("sequential", "t", agents=["wait"], session_id=sid))
    # By the time the CancelledError arrives, the run is recorded as cancelled.
    session = await cancel_mid_run(o, task, started, sid)
    assert session.runs[0].error is not None and session.runs[0].error.code == "cancelled"
    # And the agent's own coroutine was cancelled, not left running.
    await asyncio.wait_for(cancelled.wait(), 10)
    assert o.active_runs == 0


async def test_breaking_out_of_async_for_cancels_the_run(never: asyncio.Event) -> None:
    o = orchestra.Orchestrator()
    started, cancelled = waiting_agent(o, never)
    run_id = session_id = ""
    async for ev in o.stream("sequential", "t", agents=["wait"]):
        run_id, session_id = ev.run_id, ev.session_id
        if ev.type == "agent_started":
            await started.wait()
            break
    # Leaving the loop dropped the stream, which cancels the run.
    result = await o.wait_run(run_id)
    if result is not None:
        assert result.status == "cancelled"
    assert await recorded_status(o, session_id, run_id) == "cancelled"
    await asyncio.wait_for(cancelled.wait(), 10)


async def test_cancelling_a_task_iterating_a_stream_cancels_the_run(never: asyncio.Event) -> None:
    o = orchestra.Orchestrator()
    started, _ = waiting_agent(o, never)
    stream = o.stream("sequential", "t", agents=["wait"])

    async def consume() -> None:
        async for _ in stream:
            pass

    task = asyncio.ensure_future(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await recorded_status(o, stream.session_id, stream.run_id) == "cancelled"


async def test_stream_cancel_ends_with_run_cancelled(never: asyncio.Event) -> None:
    o = orchestra.Orchestrator()
    started, _ = waiting_agent(o, never)
    stream = o.stream("sequential", "t", agents=["wait"])
    types = []
    async for ev in stream:
        types.append(ev.type)
        if ev.type == "agent_started":
            await started.wait()
            stream.cancel()
    assert types[-1] == "run_cancelled"
    assert "agent_completed" not in types


async def test_orchestrator_cancel_by_run_id(never: asyncio.Event) -> None:
    o = orchestra.Orchestrator()
    started, _ = waiting_agent(o, never)
    stream = o.stream("sequential", "t", agents=["wait"])
    await started.wait()
    assert o.active_runs == 1
    assert o.cancel(stream.run_id) is True
    result = await stream.result()
    assert result.status == "cancelled"
    assert o.cancel(stream.run_id) is False
    with pytest.raises(orchestra.Cancelled):
        result.raise_for_status()
