"""Many runs at once on one orchestrator and one event loop."""

from __future__ import annotations

import asyncio
import time

import orchestra

from conftest import a_hundred_runs


async def test_a_hundred_concurrent_runs(orch: orchestra.Orchestrator) -> None:
    began = time.perf_counter()
    results = await a_hundred_runs(orch, ["researcher", "writer", "echo"], lambda i: f"task {i}")
    elapsed = time.perf_counter() - began
    assert [r.status for r in results] == ["completed"] * 100
    assert len({r.run_id for r in results}) == 100
    assert len({r.session_id for r in results}) == 100
    for i, r in enumerate(results):
        assert r.task == f"task {i}"
        if r.pattern == "sequential":
            assert r.output == f"article on facts about task {i}"
        assert len(r.steps) == 3
    # Generous bound: the whole batch takes well under a second on a laptop.
    assert elapsed < 30, elapsed
    assert orch.active_runs == 0


async def test_a_hundred_concurrent_streams(orch: orchestra.Orchestrator) -> None:
    async def one(i: int) -> orchestra.Event:
        last = None
        async for ev in orch.stream("sequential", f"t{i}", agents=["echo", "writer"]):
            last = ev
        assert last is not None
        return last

    finals = await asyncio.gather(*(one(i) for i in range(100)))
    outputs = [f.result.output if f.result else None for f in finals]
    assert outputs == [f"article on t{i}" for i in range(100)]


async def test_concurrent_runs_on_one_session_keep_every_message(orch: orchestra.Orchestrator) -> None:
    first = await orch.run("sequential", "start", agents=["echo"])
    await asyncio.gather(
        *(orch.run("sequential", f"m{i}", agents=["echo"], session_id=first.session_id) for i in range(20))
    )
    session = await orch.get_session(first.session_id)
    assert session is not None
    assert len(session.runs) == 21
    assert len(session.messages) == 42
