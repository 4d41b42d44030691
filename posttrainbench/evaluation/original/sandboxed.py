"""The programs the original HumanEval scorer executes (`python -c <prompt + completion + test>`), run in our
HumanEval sandbox instead of the scorer's process: same isolation and limits as our own verification."""

import subprocess

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import humaneval


def run_program(cmd: list, timeout: int | None) -> dict:
    """Run the original scorer's `["python", "-c", code]` sandboxed; the reply score.py expects."""
    if not (isinstance(cmd, list) and len(cmd) == 3 and cmd[:2] == ["python", "-c"] and isinstance(cmd[2], str)):
        raise PtbError(f"the original scorer asked to run an unexpected command: {str(cmd)[:200]!r}")
    humaneval.canary()
    process = humaneval._spawn((), subprocess.PIPE, subprocess.PIPE, no_spawn=True)
    try:
        program = humaneval._limits() + cmd[2]
        try:
            out, err = process.communicate(program.encode(), timeout=timeout or humaneval.WALL_SECONDS)
        except subprocess.TimeoutExpired:
            return {"timeout": True}
    finally:
        humaneval._kill(process)
    return {"success": process.returncode == 0, "returncode": process.returncode,
            "stdout": out.decode(errors="replace")[-4000:], "stderr": err.decode(errors="replace")[-4000:]}
