"""Sessions in Redis: two orchestrators (think: two processes) continue the
same conversation.

Run:  python examples/python/redis_sessions.py
Needs Redis at $REDIS_URL (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import asyncio
import os
import uuid

import orchestra

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = f"orchestra-example-{uuid.uuid4().hex[:8]}"


def recall(inp: orchestra.AgentInput) -> str:
    said = [m.content for m in inp.messages if m.role == "user"]
    return "You said: " + "; ".join(said)


async def main() -> None:
    first = orchestra.Orchestrator(store=await orchestra.RedisStore.connect(URL, prefix=PREFIX))
    second = orchestra.Orchestrator(store=orchestra.RedisStore(URL, prefix=PREFIX, ttl_seconds=600))
    for orch in (first, second):
        orch.add_agent("recall", recall, description="remembers")

    a = await first.run("sequential", "my name is Ada", agents=["recall"])
    b = await second.run("sequential", "what is my name?", agents=["recall"], session_id=a.session_id)
    print(b.output)
    session = await second.get_session(a.session_id)
    assert session is not None and len(session.runs) == 2
    print(f"session {session.id} has {len(session.messages)} messages (version {session.version})")
    assert await first.delete_session(a.session_id)


if __name__ == "__main__":
    asyncio.run(main())
