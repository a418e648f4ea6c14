"""A program may exit right after its last native await: native threads must
be out of Python by then (CPython would otherwise end them mid-call, which
aborts the process)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import asyncio, orchestra
orch = orchestra.Orchestrator()
orch.add_agent("echo", lambda inp: inp.task)
async def main():
    r = await orch.run("sequential", "bye", agents=["echo"])
    assert (await orch.get_session(r.session_id)) is not None
    assert await orch.delete_session(r.session_id)
asyncio.run(main())
"""


def test_programs_exit_cleanly_right_after_a_native_await() -> None:
    codes = [
        subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, timeout=60).returncode
        for _ in range(15)
    ]
    assert codes == [0] * 15
