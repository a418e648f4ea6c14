"""The exception tree.

Every error carries the core's stable ``code`` (the same string as in REST
error bodies and in ``RunResult.error.code``)::

    OrchestraError            base; code e.g. "max_iterations_exceeded", "handoff_cycle"
    ├── InvalidRequest        the request was wrong; nothing ran
    ├── AgentError            an agent failed (after retries and fallbacks)
    ├── Timeout               the run's time limit passed
    ├── Cancelled             the run was cancelled
    └── StoreError            the session store failed
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from ._types import RunResult

__all__ = [
    "OrchestraError",
    "InvalidRequest",
    "AgentError",
    "Timeout",
    "Cancelled",
    "StoreError",
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
