"""Orchestra: multi-agent orchestration with a Rust core.

::

    import orchestra

    orch = orchestra.Orchestrator()

    @orch.agent(description="finds facts")
    def researcher(inp: orchestra.AgentInput) -> str:
        return f"facts about {inp.task}"

    @orch.agent(description="writes prose")
    async def writer(inp: orchestra.AgentInput) -> str:
        return f"An article based on {inp.task}"

    result = await orch.run("sequential", "tides", agents=["researcher", "writer"])
    async for event in orch.stream("group_chat", "Plan a launch", agents=[...]):
        print(event.type, event.to_dict())
"""

import atexit as _atexit

from . import _orchestra
from ._bridge import AgentContext
from ._errors import (
    AgentError,
    ApprovalDeniedError,
    Cancelled,
    CheckpointError,
    InputExpiredError,
    InputRequired,
    InvalidAnswerError,
    InvalidHandoffPayloadError,
    InvalidRequest,
    OrchestraError,
    RunNotFoundError,
    RunStateError,
    StoreError,
    Timeout,
)
from ._orchestra import EVENT_SCHEMA_VERSION, __version__
from ._queue import AgentWorker, serve_agent
from ._orchestrator import (
    AgentFn,
    AgentLike,
    ManagerFn,
    MemoryStore,
    Orchestrator,
    PlannerFn,
    ConditionFn,
    RedisStore,
    RunEvents,
    patterns,
)
from ._types import (
    AgentInfo,
    AgentInput,
    AgentOutput,
    AgentResult,
    ErrorInfo,
    Event,
    Handoff,
    InputRequest,
    Message,
    PolicyDecision,
    RunResult,
    Session,
    SessionSummary,
    Step,
    Usage,
)

__all__ = [
    "__version__",
    "EVENT_SCHEMA_VERSION",
    "Orchestrator",
    "RunEvents",
    "AgentWorker",
    "serve_agent",
    "MemoryStore",
    "RedisStore",
    "AgentFn",
    "AgentLike",
    "AgentResult",
    "ManagerFn",
    "PlannerFn",
    "ConditionFn",
    "AgentInput",
    "AgentContext",
    "AgentOutput",
    "AgentInfo",
    "Handoff",
    "Message",
    "Usage",
    "ErrorInfo",
    "Step",
    "PolicyDecision",
    "InputRequest",
    "RunResult",
    "Event",
    "Session",
    "SessionSummary",
    "patterns",
    "OrchestraError",
    "InvalidRequest",
    "AgentError",
    "Timeout",
    "Cancelled",
    "StoreError",
    "InputRequired",
    "InvalidAnswerError",
    "InputExpiredError",
    "ApprovalDeniedError",
    "RunNotFoundError",
    "RunStateError",
    "CheckpointError",
    "InvalidHandoffPayloadError",
]

# Native threads must be out of Python before the interpreter finalizes.
_atexit.register(_orchestra.shutdown)
