"""Agents served by workers behind a queue (Redis Streams or NATS).

::

    worker = await orchestra.serve_agent(
        "summarizer", summarize, transport="nats://127.0.0.1:4222"
    )
    # elsewhere: await orch.add_queue_agent("summarizer", "nats://127.0.0.1:4222")
    await worker.stop()   # finishes the request in flight, then returns
"""

from __future__ import annotations

from typing import Optional

from . import _bridge
from . import _orchestra as _native
from ._orchestrator import AgentFn

__all__ = ["AgentWorker", "serve_agent"]


class AgentWorker:
    """A running worker: takes one request at a time from its agent's queue.

    ``await worker.stop()`` stops taking requests and returns once the
    request in flight is answered; ``worker.abort()`` ends it at once, as a
    crash would (another worker then takes its request over). Also an async
    context manager that stops the worker on exit.
    """

    def __init__(self, native: _native.AgentWorker) -> None:
        self._native = native

    @property
    def id(self) -> str:
        """The worker's consumer name on the queue."""
        return self._native.id

    @property
    def running(self) -> bool:
        return self._native.running

    async def stop(self) -> None:
        await self._native.stop()

    async def wait(self) -> None:
        """Waits until the worker has stopped."""
        await self._native.wait()

    def abort(self) -> None:
        self._native.abort()

    async def __aenter__(self) -> AgentWorker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"AgentWorker(id={self.id!r}, running={self.running})"


async def serve_agent(
    name: str,
    fn: AgentFn,
    *,
    transport: str,
    description: Optional[str] = None,
    prefix: Optional[str] = None,
    jetstream: bool = False,
    claim_idle_ms: Optional[int] = None,
    registry_url: Optional[str] = None,
    registry_prefix: Optional[str] = None,
) -> AgentWorker:
    """Serves ``fn`` as agent ``name`` to orchestrators through a queue.

    ``transport`` is ``"redis://host:6379"`` or ``"nats://host:4222"``;
    ``prefix`` and ``jetstream`` must match the orchestrator's queue agent.
    ``fn`` is written exactly like an ``Orchestrator.add_agent`` function;
    coroutine functions run on the event loop that called ``serve_agent``.
    With ``registry_url`` (a Redis URL) the worker announces itself in the
    agent registry under ``registry_prefix`` while it runs, so servers using
    that Redis list it in ``/agents``. Returns once the worker receives
    requests.
    """
    if not callable(fn):
        raise TypeError("serve_agent(name, fn): fn must be callable")
    if description is None:
        doc = getattr(fn, "__doc__", None) or ""
        description = doc.strip().split("\n", 1)[0] if doc else ""
    wrapped, is_async = _bridge.adapt_agent(name, fn)
    native = await _native.serve_agent(
        name,
        description,
        wrapped,
        is_async,
        transport,
        prefix,
        jetstream,
        claim_idle_ms,
        registry_url,
        registry_prefix,
    )
    return AgentWorker(native)
