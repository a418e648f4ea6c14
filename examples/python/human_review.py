"""Human input: a writer asks how long the piece should be, a publisher acts
only once approved, and an editor takes part in a group chat. Each pause is
answered here by a scripted "person"; a real app would show the question
(``result.input``) and resume when someone answers, from any process that
shares the store.

Run:  python examples/python/human_review.py
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Optional

import orchestra

orch = orchestra.Orchestrator()


def writer(inp: orchestra.AgentInput, ctx: orchestra.AgentContext) -> str:
    if ctx.answer is None:
        raise orchestra.InputRequired("How many words?", schema={"type": "integer", "minimum": 50})
    return f"a {ctx.answer}-word piece on {inp.task}"


orch.add_agent("writer", writer, description="writes pieces")
orch.add_agent("publisher", lambda inp: f"published: {inp.task}", description="publishes")
orch.add_human("editor", description="the editor", prompt="Your notes on the draft?")


def person(q: orchestra.InputRequest) -> Any:
    """Stands in for someone answering a review screen."""
    if q.kind == "approval":
        return {"approved": True}
    if q.kind == "human":
        return "shorter, please"
    return 300


async def main() -> None:
    result = await orch.run(
        "sequential",
        "tides",
        agents=["writer", "publisher"],
        options={"approve_agents": ["publisher"], "input_timeout_ms": 3_600_000},
    )
    while result.status == "waiting_for_input" and result.input is not None:
        q = result.input
        print(f"[{q.kind}] {q.agent} asks: {q.prompt}")
        try:
            result = await orch.resume(result.run_id, person(q))
        except orchestra.InvalidAnswerError as e:
            print("answer refused, still waiting:", e)
    print("->", result.status, result.output)

    order = ["writer", "editor", "writer"]

    def script(chat: Dict[str, Any]) -> Optional[str]:
        return order[chat["round"]] if chat["round"] < len(order) else None

    orch.add_manager("script", script)
    run_id = ""
    async for event in orch.stream(
        "group_chat", "tides", agents=["writer", "editor"], options={"manager": "script"}
    ):
        if event.type == "input_requested" and event.request is not None:
            print("paused:", event.request.prompt)
            run_id = event.run_id
    # Each of the writer's turns asks again (a new step), and the editor has one.
    while True:
        stored = await orch.get_run(run_id)
        if stored is None or stored.input is None:
            break
        async for event in orch.resume_stream(run_id, person(stored.input)):
            if event.type == "run_resumed":
                print("resumed after", event["recorded_steps"], "recorded steps")
            elif event.type == "input_requested" and event.request is not None:
                print("paused:", event.request.prompt)
            elif event.is_terminal and event.result is not None:
                print("->", event.type, event.result.output)


if __name__ == "__main__":
    asyncio.run(main())
