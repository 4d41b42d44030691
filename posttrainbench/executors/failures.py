"""How an attempt at a run ended, decided in one place: a result (the agent's own doing, including crashing,
timing out or leaving no model), an infrastructure failure (retried), or an error that a retry will not fix.

The decision stands on what the harness measured (executors/facts.py: exception types of harness code, exit
statuses, the GPU check, free disk space net of the run's own files; the metering proxy's own stop reason; the
sandbox's own start failure), never on text the agent can influence: error messages quote its file names and
its model's output, so no message is searched for words like "out of memory"."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from posttrainbench.executors import facts
from posttrainbench.executors.stages import STAGES
from posttrainbench.store import Store
from posttrainbench.workspace.layout import RunLayout

# What the store writes, itself, for a stage whose worker vanished (reap_stale); no exception message can be
# written there in its place, since the stage then had no chance to record one.
REAPED = "interrupted"


@dataclass(frozen=True)
class Outcome:
    kind: Literal["result", "retry", "fatal"]
    reason: str | None = None
    reopen: str | None = None  # for a retry of a run the store calls done: the first stage to do again


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
        # Only before the agent ever ran: a later (reprompt) session may fail to start over what the agent left.
        first = (agent_exit.get("sessions") or [agent_exit])[0]
        if first.get("status") == "failed_to_start":
            return Outcome("retry", f"the sandbox did not start: {first.get('detail')}", reopen="agent")
        measured = facts.read(facts.evaluation_facts(layout)) if row.score_source == "base" else None
        cause = measured.infra() if measured else None
        if cause:
            return Outcome("retry", f"{cause} while evaluating the agent's model", reopen="evaluate")
        return Outcome("result")
    if row.status == "failed":
        # The pipeline stops at its first failing stage; later ones may still carry an earlier attempt's error.
        failed = {s["stage"]: s for s in store.stages(run_id) if s["status"] == "failed"}
        stage = next((s for s in ("prepare", *STAGES) if s in failed), None)
        error = (failed[stage]["error"] if stage else None) or row.error or "unknown error"
        if storm:
            return Outcome("retry", storm, reopen="agent")
        measured = facts.read(facts.stage_facts(layout))
        if measured is None or measured.stage != stage:
            if stage is not None and failed[stage]["error"] == REAPED:
                return Outcome("retry", f"interrupted{' (' + ended + ')' if ended else ''}")
            return Outcome("fatal", error)
        if measured.interrupted:
            return Outcome("retry", f"interrupted{' (' + ended + ')' if ended else ''}")
        cause = measured.infra()
        if cause:
            return Outcome("retry", f"{cause} (the {stage} stage failed: {error})")
        return Outcome("fatal", error)
    # Still 'created' or 'running': the worker vanished without a word (SIGKILL, lost node, Slurm time limit).
    return Outcome("retry", f"the worker stopped before the run finished{' (' + ended + ')' if ended else ''}")


def _agent_exit(layout: RunLayout) -> dict:
    try:
        return json.loads(layout.agent_exit.read_text())
    except (OSError, ValueError):
        return {}
