"""Quick start: two agents (one plain function, one coroutine) in sequence,
then a second run that continues the same session.

Run:  python examples/python/quickstart.py
(after `maturin develop` in bindings-python, or `pip install orchestra-sdk`)
"""

from __future__ import annotations

import asyncio

import orchestra

orch = orchestra.Orchestrator()  # sessions in memory


@orch.agent(description="finds facts")
def researcher(inp: orchestra.AgentInput) -> str:
    # A plain function runs on a worker thread: blocking calls are fine here.
    return f"Tides are caused by the moon's gravity ({inp.task})."


@orch.agent(description="writes prose")
async def writer(inp: orchestra.AgentInput) -> str:
    # A coroutine runs on this program's event loop.
    await asyncio.sleep(0)
    return f"Article: {inp.task}"


async def main() -> None:
    result = await orch.run(
        "sequential",
        "Write about tides",
        agents=["researcher", "writer"],
        options={"timeout_ms": 30_000},
    )
    print(result.status, "-", result.output)
    for step in result.steps:
        print(f"  step {step.index}: {step.agent} ({step.duration_ms} ms)")

    # Continue the conversation: the agents now see the earlier messages.
    again = await orch.run(
        "sequential", "Shorter, please", agents=["writer"], session_id=result.session_id
    )
    session = await orch.get_session(again.session_id)
    assert session is not None and len(session.runs) == 2
    print(f"session {session.id}: {len(session.messages)} messages, {len(session.runs)} runs")
    assert await orch.delete_session(session.id)


if __name__ == "__main__":
    asyncio.run(main())
