from __future__ import annotations

import asyncio
import uuid
from typing import AsyncIterator, Callable, List, Sequence, Tuple

import pytest

import orchestra

REDIS_URL = "redis://127.0.0.1:6379/0"
PATTERNS = ["sequential", "concurrent", "group_chat"]


@pytest.fixture
def orch() -> orchestra.Orchestrator:
    """An orchestrator with a few trivial agents, sync and async."""
    o = orchestra.Orchestrator()

    @o.agent(description="finds facts and sources")
    def researcher(inp: orchestra.AgentInput) -> str:
        return f"facts about {inp.task}"

    @o.agent(description="writes prose and articles")
    async def writer(inp: orchestra.AgentInput) -> str:
        await asyncio.sleep(0)
        return f"article on {inp.task}"

    @o.agent(description="repeats the task")
    def echo(inp: orchestra.AgentInput) -> str:
        return inp.task

    return o


@pytest.fixture
def redis_prefix() -> str:
    return f"orchestra-py-test-{uuid.uuid4().hex}"


async def collect(events: orchestra.RunEvents) -> List[orchestra.Event]:
    return [ev async for ev in events]


@pytest.fixture
async def never() -> AsyncIterator[asyncio.Event]:
    """An event nobody sets: agents wait on it until they are cancelled."""
    yield asyncio.Event()


def waiting_agent(o: orchestra.Orchestrator, never: asyncio.Event) -> Tuple[asyncio.Event, asyncio.Event]:
    """An agent that waits until it is cancelled; returns (started, cancelled) signals."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def wait(inp: orchestra.AgentInput) -> str:
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    o.add_agent("wait", wait)
    return started, cancelled


async def a_hundred_runs(
    o: orchestra.Orchestrator, agents: Sequence[str], task: Callable[[int], str]
) -> List[orchestra.RunResult]:
    """A hundred runs at once, cycling through the three patterns."""
    return await asyncio.gather(
        *(
            o.run(
                PATTERNS[i % 3],
                task(i),
                agents=list(agents),
                options={"max_rounds": 3} if i % 3 == 2 else None,
            )
            for i in range(100)
        )
    )


async def cancel_mid_run(
    o: orchestra.Orchestrator,
    task: asyncio.Future[orchestra.RunResult],
    started: asyncio.Event,
    session_id: str,
) -> orchestra.Session:
    """Cancels ``task`` once its agent has started; checks that the run's
    session then records it as cancelled, and returns that session."""
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    session = await o.get_session(session_id)
    assert session is not None
    assert [r.status for r in session.runs] == ["cancelled"]
    return session
