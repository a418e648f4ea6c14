"""Group chat, streamed: a writer and a critic take turns until the critic
approves; a custom manager (a plain Python function) picks the speakers.

Run:  python examples/python/streaming_group_chat.py
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Optional

import orchestra

orch = orchestra.Orchestrator()


@orch.agent(description="drafts slogans")
def writer(inp: orchestra.AgentInput) -> str:
    drafts = sum(1 for m in inp.messages if m.name == "writer")
    return ["Rust: fast.", "Rust: fast, safe, fearless."][min(drafts, 1)]


@orch.agent(description="reviews drafts")
async def critic(inp: orchestra.AgentInput) -> str:
    last = inp.messages[-1].content
    return "APPROVED" if "fearless" in last else "Too short; add what makes it safe."


def writer_then_critic(chat: Dict[str, Any]) -> Optional[str]:
    """The writer speaks after the critic, the critic after the writer."""
    transcript = chat["transcript"]
    if not transcript:
        return "writer"
    return "critic" if transcript[-1]["name"] == "writer" else "writer"


orch.add_manager("writer_then_critic", writer_then_critic)


async def main() -> None:
    final: Optional[orchestra.RunResult] = None
    async for event in orch.stream(
        "group_chat",
        "A slogan for Rust",
        agents=["writer", "critic"],
        options={
            "manager": "writer_then_critic",
            "max_rounds": 6,
            "termination": {"text_mention": "APPROVED"},
        },
    ):
        if event.type == "agent_completed":
            print(f"{event.agent}: {event['message']['content']}")
        else:
            print(f"[{event.seq}] {event.type}")
        final = event.result or final
    assert final is not None and final.status == "completed"
    print("ended by", final.termination)


if __name__ == "__main__":
    asyncio.run(main())
