"""Handoff: a triage agent routes a customer to billing, which may fail once
(a transient error, retried) and has a fallback.

Run:  python examples/python/handoff_support.py
"""

from __future__ import annotations

import asyncio
from typing import Union

import orchestra

orch = orchestra.Orchestrator()
attempts = 0


@orch.agent(description="routes customer requests")
def triage(inp: orchestra.AgentInput) -> Union[str, orchestra.Handoff]:
    if "refund" in inp.task:
        return orchestra.Handoff(to="billing", reason="refund request")
    return "How can I help?"


@orch.agent(description="handles refunds and invoices")
async def billing(inp: orchestra.AgentInput) -> orchestra.AgentOutput:
    global attempts
    attempts += 1
    if attempts == 1:
        # ConnectionError and TimeoutError are retryable; other exceptions are not.
        raise ConnectionError("payment service reset the connection")
    return orchestra.AgentOutput(
        "Your refund of 20 EUR is on its way.",
        data={"refund_eur": 20},
        state_patch={"refunds": 1},
    )


async def main() -> None:
    result = await orch.run(
        "handoff",
        "I want a refund for order 42",
        agents=["triage", "billing"],
        options={
            "routes": {"triage": ["billing"]},
            "retry": {"max_retries": 2, "initial_backoff_ms": 10},
        },
        raise_on_error=True,
    )
    print(result.output)
    print("path:", " -> ".join(s.agent for s in result.steps))
    print("billing attempts:", result.steps[-1].attempts)
    session = await orch.get_session(result.session_id)
    assert session is not None and session.state == {"refunds": 1}

    try:
        await orch.run("handoff", "refund", agents=["triage", "nobody"])
    except orchestra.InvalidRequest as e:
        print(f"invalid request ({e.code}): {e}")


if __name__ == "__main__":
    asyncio.run(main())
