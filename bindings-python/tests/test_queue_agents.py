"""Python functions served as queue workers (serve_agent) and orchestrated
through queue agents, on Redis Streams, core NATS and JetStream.

Needs Redis at 127.0.0.1:6379 and NATS with JetStream at 127.0.0.1:4222
(scripts/ensure-services starts both); a missing service fails the tests.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Dict, Tuple

import pytest

import orchestra

TRANSPORTS: Dict[str, Tuple[str, bool]] = {
    "redis": ("redis://127.0.0.1:6379", False),
    "nats": ("nats://127.0.0.1:4222", False),
    "jetstream": ("nats://127.0.0.1:4222", True),
}


@pytest.mark.parametrize("kind", list(TRANSPORTS))
async def test_served_functions_answer_an_orchestration(kind: str) -> None:
    url, jetstream = TRANSPORTS[kind]
    prefix = f"py{uuid.uuid4().hex}"

    def researcher(inp: orchestra.AgentInput) -> str:
        return f"facts about {inp.task}"

    async def writer(inp: orchestra.AgentInput) -> orchestra.AgentOutput:
        await asyncio.sleep(0)
        return orchestra.AgentOutput(
            content=f"article from {inp.task}", state_patch={"written": True}
        )

    w1 = await orchestra.serve_agent(
        "researcher", researcher, transport=url, prefix=prefix, jetstream=jetstream
    )
    w2 = await orchestra.serve_agent(
        "writer", writer, transport=url, prefix=prefix, jetstream=jetstream
    )
    assert w1.running and w1.id != w2.id

    orch = orchestra.Orchestrator()
    for name in ("researcher", "writer"):
        await orch.add_queue_agent(
            name, url, description=name, prefix=prefix, jetstream=jetstream, timeout_ms=10_000
        )
    result = await orch.run("sequential", "tides", agents=["researcher", "writer"])
    assert result.status == "completed", result.error
    assert result.output == "article from facts about tides"
    session = await orch.get_session(result.session_id)
    assert session is not None and session.state == {"written": True}

    await w1.stop()
    await w2.stop()
    assert not w1.running


async def test_an_agent_error_crosses_the_queue_with_its_retryability() -> None:
    url = "redis://127.0.0.1:6379"
    prefix = f"py{uuid.uuid4().hex}"
    calls = []

    def flaky(inp: orchestra.AgentInput) -> str:
        calls.append(inp.task)
        if len(calls) == 1:
            raise orchestra.AgentError("busy", retryable=True)
        return "second time lucky"

    async with await orchestra.serve_agent("flaky", flaky, transport=url, prefix=prefix):
        orch = orchestra.Orchestrator()
        await orch.add_queue_agent("flaky", url, prefix=prefix)
        result = await orch.run(
            "sequential",
            "t",
            agents=["flaky"],
            options={"retry": {"max_retries": 1, "initial_backoff_ms": 1}},
        )
    assert result.output == "second time lucky"
    assert calls == ["t", "t"]


async def test_an_unreachable_transport_raises() -> None:
    async def agent(inp: orchestra.AgentInput) -> str:
        return "x"

    with pytest.raises(orchestra.OrchestraError):
        await orchestra.serve_agent("a", agent, transport="nats://127.0.0.1:1")
    with pytest.raises(orchestra.OrchestraError):
        await orchestra.serve_agent("a", agent, transport="ftp://127.0.0.1:1")
