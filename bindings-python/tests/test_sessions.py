"""Sessions in memory and in the real Redis at 127.0.0.1:6379."""

from __future__ import annotations

import uuid
from typing import Optional

import pytest

import orchestra
from conftest import REDIS_URL


def remember(o: orchestra.Orchestrator) -> None:
    def memory(inp: orchestra.AgentInput) -> str:
        said = [m.content for m in inp.messages if m.role == "user"]
        return " / ".join(said)

    o.add_agent("memory", memory, description="repeats what the user said so far")


async def check_sessions(o: orchestra.Orchestrator, writes: Optional[int] = None) -> None:
    remember(o)
    first = await o.run("sequential", "hello", agents=["memory"])
    second = await o.run("sequential", "again", agents=["memory"], session_id=first.session_id)
    assert second.output == "hello / again"
    session = await o.get_session(first.session_id)
    assert session is not None
    assert session.id == first.session_id
    assert [r.run_id for r in session.runs] == [first.run_id, second.run_id]
    assert [r.status for r in session.runs] == ["completed", "completed"]
    assert [(m.role, m.content) for m in session.messages] == [
        ("user", "hello"),
        ("assistant", "hello"),
        ("user", "again"),
        ("assistant", "hello / again"),
    ]
    # The first run names no session: it writes its session once, at its end
    # (in memory; a checkpointed run, the default in Redis, keeps its start
    # record). The second writes its start and its end.
    if writes is not None:
        assert session.version == writes
    else:
        assert session.version >= 3
    run = session.run(second.run_id)
    assert run is not None and run.output == "hello / again"
    assert first.session_id in [s.id for s in await o.list_sessions(limit=1000)]
    assert await o.delete_session(first.session_id) is True
    assert await o.get_session(first.session_id) is None
    assert await o.delete_session(first.session_id) is False


async def test_memory_sessions_continue_a_conversation() -> None:
    await check_sessions(orchestra.Orchestrator(), writes=3)
    await check_sessions(orchestra.Orchestrator(store=orchestra.MemoryStore(max_sessions=10)), writes=3)


async def test_an_unknown_session_is_none(orch: orchestra.Orchestrator) -> None:
    assert await orch.get_session(str(uuid.uuid4())) is None
    assert await orch.delete_session(str(uuid.uuid4())) is False


async def test_redis_sessions_continue_a_conversation(redis_prefix: str) -> None:
    await check_sessions(orchestra.Orchestrator(store=orchestra.RedisStore(REDIS_URL, prefix=redis_prefix)))


async def test_redis_sessions_are_shared_between_orchestrators(redis_prefix: str) -> None:
    a = orchestra.Orchestrator(store=await orchestra.RedisStore.connect(REDIS_URL, prefix=redis_prefix))
    b = orchestra.Orchestrator(store=orchestra.RedisStore(REDIS_URL, prefix=redis_prefix))
    other = orchestra.Orchestrator(store=orchestra.RedisStore(REDIS_URL, prefix=redis_prefix + "-other"))
    remember(a)
    remember(b)
    first = await a.run("sequential", "one", agents=["memory"])
    second = await b.run("sequential", "two", agents=["memory"], session_id=first.session_id)
    assert second.output == "one / two"
    seen = await a.get_session(first.session_id)
    assert seen is not None and len(seen.runs) == 2
    assert await other.get_session(first.session_id) is None
    assert await b.delete_session(first.session_id) is True
    assert await a.get_session(first.session_id) is None


async def test_an_unreachable_redis_is_a_store_error() -> None:
    with pytest.raises(orchestra.StoreError) as e:
        await orchestra.RedisStore.connect("redis://127.0.0.1:1/0", prefix="nowhere")
    assert e.value.code == "store_unavailable"


async def test_a_run_against_an_unreachable_redis_fails_with_a_store_code() -> None:
    o = orchestra.Orchestrator(store=orchestra.RedisStore("redis://127.0.0.1:1/0", prefix="nowhere"))
    o.add_agent("echo", lambda inp: inp.task)
    r = await o.run("sequential", "t", agents=["echo"])
    assert r.status == "failed"
    assert r.error is not None and r.error.code == "store_unavailable"
    with pytest.raises(orchestra.StoreError):
        await o.get_session("anything")
