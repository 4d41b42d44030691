"""The programs the original HumanEval scorer executes (`python -c <prompt + completion + test>`), run in our
HumanEval sandbox instead of the scorer's process: same isolation and limits as our own verification."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import humaneval


def run_program(cmd: list, timeout: int | None) -> dict:
    """Run the original scorer's `["python", "-c", code]` sandboxed; the reply score.py expects."""
    if not (isinstance(cmd, list) and len(cmd) == 3 and cmd[:2] == ["python", "-c"] and isinstance(cmd[2], str)):
        raise PtbError(f"the original scorer asked to run an unexpected command: {str(cmd)[:200]!r}")
    humaneval.canary()
    with tempfile.TemporaryDirectory(prefix="ptb-original-") as scratch:
        seccomp_fd = None
        if (bpf := humaneval.no_fork_filter()) is not None and shutil.which("bwrap"):
            (Path(scratch) / "seccomp.bpf").write_bytes(bpf)
            seccomp_fd = os.open(Path(scratch) / "seccomp.bpf", os.O_RDONLY)
        process = None
        try:
            process = humaneval._spawn((), subprocess.PIPE, subprocess.PIPE, scratch, seccomp_fd)
            program = humaneval._limits(", (_ptb_resource.RLIMIT_NPROC, 0)") + cmd[2]
            try:
                out, err = process.communicate(program.encode(), timeout=timeout or humaneval.WALL_SECONDS)
            except subprocess.TimeoutExpired:
                humaneval._kill(process)
                return {"timeout": True}
        finally:
            if seccomp_fd is not None:
                os.close(seccomp_fd)
            if process is not None:
                humaneval._kill(process)
    return {"success": process.returncode == 0, "returncode": process.returncode,
            "stdout": out.decode(errors="replace")[-4000:], "stderr": err.decode(errors="replace")[-4000:]}
