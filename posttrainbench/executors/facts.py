"""What the harness measured itself when a stage failed or the agent's model could not be evaluated.

These are the only grounds on which a failure is called the infrastructure's (retried) rather than the agent's
(scored as the base model): the type of the exception harness code raised, an evaluation child's exit status,
the harness's own GPU check, and the free space of the run directory's filesystem net of the run's own files.
No error message, log line or file name is read: the agent can put any text in those.
"""

import errno
import os
import shutil
import subprocess
import time
from pathlib import Path

from pydantic import BaseModel

from posttrainbench import untrusted
from posttrainbench.errors import PtbError
from posttrainbench.workspace.layout import RunLayout
from posttrainbench.workspace.manifest import read_manifest

FACTS = "failure.json"
# Less free space than this, even if the run's own files were gone, means the host's disk is full.
MIN_FREE = 2 << 30
# Exit status of an evaluation child that ran out of memory (torch's OutOfMemoryError or MemoryError).
OOM_EXIT = 4
INTERRUPTS = ("builtins.KeyboardInterrupt", "builtins.SystemExit", "posttrainbench.sandbox.runner._Terminated")
FILESYSTEM_ERRNOS = (errno.EIO, errno.ESTALE)


class EvaluationFailed(PtbError):
    """An evaluation child process ended without metrics; `returncode` is its exit status, `status` the sandbox's
    (ExitInfo.status) when it ran in one."""

    def __init__(self, message: str, returncode: int, *, status: str | None = None):
        super().__init__(message)
        self.returncode = returncode
        self.status = status


class Facts(BaseModel):
    stage: str
    at: float
    exception: str | None = None  # module.qualname of the exception's type
    errno: int | None = None  # of an OSError
    returncode: int | None = None  # of the evaluation child, when it was what failed
    gpus: int = 0  # GPUs the run asked for
    gpu_problem: str | None = None  # what the harness's GPU check found missing
    free_bytes: int | None = None
    run_bytes: int | None = None  # on disk under the run directory (the agent's files, the model copy, results)

    @property
    def interrupted(self) -> bool:
        return self.exception in INTERRUPTS

    def infra(self) -> str | None:
        """Why the infrastructure, not the agent, made this fail; None when nothing measured says so."""
        if self.gpu_problem:
            return f"no usable GPU: {self.gpu_problem}"
        if self.free_bytes is not None and self.free_bytes + (self.run_bytes or 0) < MIN_FREE:
            return f"the host's disk is full ({self.free_bytes >> 20} MiB free)"
        if self.errno in FILESYSTEM_ERRNOS:
            return f"filesystem: {os.strerror(self.errno)}"
        if self.exception == "sqlite3.OperationalError":
            return "the run store could not be written"
        if self.stage == "evaluate" and self.returncode is not None and (self.returncode < 0
                                                                          or self.returncode == OOM_EXIT):
            what = "ran out of memory" if self.returncode == OOM_EXIT else f"was killed by signal {-self.returncode}"
            return f"the evaluation {what}"
        return None


def gpu_problem(count: int, dev: Path = Path("/dev")) -> str | None:
    """The harness's GPU check: the driver's device nodes and nvidia-smi answering for at least `count` GPUs."""
    if count <= 0:
        return None
    if not (dev / "nvidiactl").exists():
        return f"{dev / 'nvidiactl'} does not exist"
    if not shutil.which("nvidia-smi"):
        return None  # the device nodes are all there is to check
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi did not answer ({type(exc).__name__})"
    if out.returncode != 0:
        return f"nvidia-smi exited with code {out.returncode}"
    listed = sum(1 for line in out.stdout.split() if line.isdigit())
    return f"nvidia-smi lists {listed} GPU(s), the run needs {count}" if listed < count else None


def _run_bytes(root: Path) -> int:
    return sum(e.allocated for e in untrusted.walk(root, caps=untrusted.SCAN_CAPS, on_cap=lambda message: None)
               if e.kind == "file")


def measure(layout: RunLayout, stage: str, exc: BaseException) -> Facts:
    """Facts about `exc`, raised by harness code in `stage`, and the host right after it."""
    kind = type(exc)
    facts = Facts(stage=stage, at=time.time(), exception=f"{kind.__module__}.{kind.__qualname__}",
                  errno=exc.errno if isinstance(exc, OSError) else None,
                  returncode=exc.returncode if isinstance(exc, EvaluationFailed) else None)
    if facts.interrupted:
        return facts  # the worker is being stopped: no time for measurements, and none would change the outcome
    # Each measurement on its own: one that fails leaves its field empty, never hides the failure being recorded.
    try:
        facts.gpus = read_manifest(layout.manifest).spec.gpus
        facts.gpu_problem = gpu_problem(facts.gpus)
    except Exception:  # noqa: BLE001
        pass
    try:
        facts.free_bytes = shutil.disk_usage(layout.root).free
        facts.run_bytes = _run_bytes(layout.root)
    except Exception:  # noqa: BLE001
        pass
    return facts


def record(path: Path, facts: Facts) -> None:
    """Write the facts; never raises (it runs while a failure is being handled)."""
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(facts.model_dump_json(indent=2))
        os.replace(tmp, path)
    except OSError:
        pass


def read(path: Path) -> Facts | None:
    try:
        return Facts.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def stage_facts(layout: RunLayout) -> Path:
    """Facts of the last failed stage of the run."""
    return layout.logs / FACTS


def evaluation_facts(layout: RunLayout) -> Path:
    """Facts of a failed evaluation of the agent's model (the run goes on, scored as the base model)."""
    return layout.results("final") / FACTS

