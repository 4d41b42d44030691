"""How an attempt at a run ended, decided in one place: a result (the agent's own doing, including crashing,
timing out or leaving no model), an infrastructure failure (retried), or an error that a retry will not fix."""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from posttrainbench.executors.pipeline import STAGES
from posttrainbench.store import Store
from posttrainbench.workspace.layout import RunLayout

# (cause, pattern) over error messages of the harness and its evaluation child.
INFRA = [
    ("no usable GPU", r"requested but /dev/nvidia\S* does not exist|no CUDA GPUs are available|CUDA-capable device"
                      r"|cuda_not_available|CUDA driver version is insufficient|NVML|CUDA error: (unknown|launch)"),
    ("out of memory", r"out of memory|OutOfMemoryError|\bOOM\b|exited with code (-9|137)\b"),
    ("LLM provider outage", r"upstream failed after \d+ attempts|LLM API unreachable"),
    ("filesystem", r"Stale file handle|No space left on device|Input/output error|database is locked"),
]
# A stage ends like this when its worker was stopped from outside (harness killed, job cancelled, node lost).
INTERRUPTED = ("interrupted", "KeyboardInterrupt", "Terminated", "the harness stopped before the run finished")


@dataclass(frozen=True)
class Outcome:
    kind: Literal["result", "retry", "fatal"]
    reason: str | None = None
    reopen: str | None = None  # for a retry of a run the store calls done: the first stage to do again


def infra_cause(text: str | None) -> str | None:
    if not text:
        return None
    for cause, pattern in INFRA:
        if re.search(pattern, text, re.IGNORECASE):
            return cause
    return None


def provider_gave_up(layout: RunLayout) -> str | None:
    """Why the metering proxy ended the agent's LLM access, when the provider stayed down through its retries
    (a token or cost limit is the agent's own doing)."""
    reason = _agent_exit(layout).get("stop_reason") or ""
    return reason if reason.startswith("LLM API unreachable") else None


def classify(store: Store, run_id: str, ended: str | None = None) -> Outcome:
    """`ended` says how the attempt's process ended, from the executor's point of view (exit code, Slurm state)."""
    row = store.get(run_id)
    layout = RunLayout(Path(row.run_dir))
    storm = provider_gave_up(layout)
    if row.status == "done":
        if storm:
            return Outcome("retry", storm, reopen="agent")
        agent_exit = _agent_exit(layout)
        if agent_exit.get("status") == "failed_to_start":
            return Outcome("retry", f"the sandbox did not start: {agent_exit.get('detail')}", reopen="agent")
        cause = infra_cause(row.error) if row.score_source == "base" else None
        if cause:
            return Outcome("retry", f"{cause} in evaluation: {row.error}", reopen="evaluate")
        return Outcome("result")
    if row.status == "failed":
        # The pipeline stops at its first failing stage; later ones may still carry an earlier attempt's error.
        failed = {s["stage"]: s["error"] for s in store.stages(run_id) if s["status"] == "failed"}
        first = next((failed[s] for s in ("prepare", *STAGES) if s in failed), None)
        error = first or row.error or "unknown error"
        if storm:
            return Outcome("retry", storm, reopen="agent")
        if error in INTERRUPTED:
            return Outcome("retry", f"interrupted{' (' + ended + ')' if ended else ''}")
        cause = infra_cause(error)
        if cause:
            return Outcome("retry", f"{cause}: {error}")
        return Outcome("fatal", error)
    # Still 'created' or 'running': the worker vanished without a word (SIGKILL, lost node, Slurm time limit).
    return Outcome("retry", f"the worker stopped before the run finished{' (' + ended + ')' if ended else ''}")


def _agent_exit(layout: RunLayout) -> dict:
    try:
        return json.loads(layout.agent_exit.read_text())
    except (OSError, ValueError):
        return {}
