"""The exception tree.

Every error carries the core's stable ``code`` (the same string as in REST
error bodies and in ``RunResult.error.code``)::

    OrchestraError            base; code e.g. "max_iterations_exceeded", "handoff_cycle"
    ├── InvalidRequest        the request was wrong; nothing ran
    │   └── InvalidAnswerError    an answer does not fit the question; the run keeps waiting
    ├── AgentError            an agent failed (after retries and fallbacks)
    ├── Timeout               the run's time limit passed
    │   └── InputExpiredError     nobody answered the run's question in time
    ├── Cancelled             the run was cancelled
    ├── StoreError            the session store failed
    ├── ApprovalDeniedError   a person refused an approval
    ├── RunNotFoundError      no run with this id
    ├── RunStateError         the run is not waiting (finished, or answered already)
    ├── CheckpointError       a stored checkpoint cannot be read by this release
    ├── InvalidHandoffPayloadError  a handoff's payload does not satisfy its route's schema
    └── InputRequired         raised by an agent to ask a person (pauses the run)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from ._types import RunResult

__all__ = [
    "OrchestraError",
    "InvalidRequest",
    "AgentError",
    "Timeout",
    "Cancelled",
    "StoreError",
    "InvalidAnswerError",
    "InputExpiredError",
    "ApprovalDeniedError",
    "RunNotFoundError",
    "RunStateError",
    "CheckpointError",
    "InvalidHandoffPayloadError",
    "InputRequired",
]


class OrchestraError(Exception):
    """Base of every error raised by orchestra."""

    #: The stable code of the error class; instances may carry a more
    #: specific one (e.g. ``"unknown_agent"`` for an ``InvalidRequest``).
    default_code = "orchestra_error"

    def __init__(
        self,
        message: str = "",
        *,
        code: Optional[str] = None,
        agent: Optional[str] = None,
        result: Optional[RunResult] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code: str = code or self.default_code
        #: The agent at fault, when one is.
        self.agent = agent
        #: The run's result, when the error comes from a finished run.
        self.result = result

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class InvalidRequest(OrchestraError):
    """The request is wrong (unknown pattern or agent, bad options, empty task…)."""

    default_code = "invalid_request"


class AgentError(OrchestraError):
    """An agent failed.

    Raise it from an agent to choose whether the retry policy may try again::

        raise orchestra.AgentError("upstream busy", retryable=True)
    """

    default_code = "agent_failed"

    def __init__(
        self,
        message: str = "",
        *,
        retryable: bool = False,
        code: Optional[str] = None,
        agent: Optional[str] = None,
        result: Optional[RunResult] = None,
    ) -> None:
        super().__init__(message, code=code, agent=agent, result=result)
        self.retryable = retryable


class Timeout(OrchestraError):
    """The run took longer than its ``timeout_ms``."""

    default_code = "timeout"


class Cancelled(OrchestraError):
    """The run was cancelled."""

    default_code = "cancelled"


class StoreError(OrchestraError):
    """The session store failed (unreachable, conflict, corrupt data)."""

    default_code = "store_error"


class InvalidAnswerError(InvalidRequest):
    """An answer does not satisfy the pending question's schema; the run keeps
    waiting and can be resumed again with a better one."""

    default_code = "invalid_answer"


class InputExpiredError(Timeout):
    """The run's question expired (``input_timeout_ms``); the run ended ``timed_out``."""

    default_code = "input_expired"


class ApprovalDeniedError(OrchestraError):
    """A person refused an approval (``approve_agents``, ``approve_plan``); the run failed."""

    default_code = "approval_denied"


class RunNotFoundError(OrchestraError):
    """No run with this id in the session store."""

    default_code = "run_not_found"


class RunStateError(OrchestraError):
    """The run is not in a state that allows this: it has finished, another
    answer was taken first, or it waits for an answer and none was given."""

    default_code = "run_not_waiting"


class CheckpointError(OrchestraError):
    """A stored checkpoint has a format this release cannot read."""

    default_code = "checkpoint_unreadable"


class InvalidHandoffPayloadError(OrchestraError):
    """A handoff's ``payload`` does not satisfy the schema the run sets for
    its target (handoff option ``payload_schemas``); the target did not run
    and the run failed. ``agent`` is the agent that handed off."""

    default_code = "invalid_handoff_payload"


class InputRequired(OrchestraError):
    """Raised by an agent that needs a person's answer before it can go on.

    The run pauses (status ``"waiting_for_input"``, event ``input_requested``)
    and, once resumed with ``orch.resume(run_id, answer)``, calls the agent
    again with the answer in ``ctx.answer`` (and ``inp.answer``)::

        def agent(inp: orchestra.AgentInput, ctx: orchestra.AgentContext) -> str:
            if ctx.answer is None:
                raise orchestra.InputRequired("How many?", schema={"type": "integer"})
            return f"{ctx.answer} it is"

    ``schema`` is a JSON schema the answer must satisfy; ``context`` is any
    JSON value shown to the person answering.
    """

    default_code = "input_required"

    def __init__(
        self,
        prompt: str = "",
        schema: Optional[Any] = None,
        context: Optional[Any] = None,
        *,
        code: Optional[str] = None,
        agent: Optional[str] = None,
        result: Optional[RunResult] = None,
    ) -> None:
        super().__init__(prompt, code=code, agent=agent, result=result)
        self.prompt = prompt
        self.schema = schema
        self.context = context


_INVALID = {
    "invalid_request",
    "unknown_pattern",
    "unknown_agent",
    "no_agents",
    "invalid_options",
    "invalid_session_id",
}
_STORE = {"session_conflict", "store_unavailable", "store_corrupt", "store_error"}
_BY_CODE: dict[str, type[OrchestraError]] = {
    "agent_failed": AgentError,
    # Codes of single agent calls (step errors, remote agent set-up).
    "agent_error": AgentError,
    "rate_limited": AgentError,
    "agent_timeout": AgentError,
    "invalid_agent_output": AgentError,
    "agent_unreachable": AgentError,
    "agent_http_error": AgentError,
    "timeout": Timeout,
    "timed_out": Timeout,
    "cancelled": Cancelled,
    "invalid_answer": InvalidAnswerError,
    "input_expired": InputExpiredError,
    "approval_denied": ApprovalDeniedError,
    "run_not_found": RunNotFoundError,
    "run_not_waiting": RunStateError,
    "checkpoint_unreadable": CheckpointError,
    "invalid_handoff_payload": InvalidHandoffPayloadError,
    "input_required": InputRequired,
}


def error_class(code: str) -> type[OrchestraError]:
    """The exception class for a core error code."""
    if code in _INVALID:
        return InvalidRequest
    if code in _STORE:
        return StoreError
    return _BY_CODE.get(code, OrchestraError)


def _from_info(
    code: str,
    message: str,
    agent: Optional[str] = None,
    result: Optional[RunResult] = None,
) -> OrchestraError:
    cls = error_class(code)
    return cls(message, code=code, agent=agent, result=result)
