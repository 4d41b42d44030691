"""Fixed names inside a run directory and inside the sandbox. Stages find files here, never by parsing names."""

from dataclasses import dataclass
from pathlib import Path

# Inside the sandbox.
SANDBOX_HOME = "/home/agent"
SANDBOX_TASK = "/home/agent/task"
SANDBOX_DATA = "/ptb/data"  # benchmark data, read-only, for evaluate.py
SANDBOX_BASE_MODEL = "/ptb/base_model"  # the base model, read-only
SANDBOX_EVAL_SOCKET = "/run/ptb/eval.sock"  # the harness's evaluation service (test access `hidden`)


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run directory."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def prompt(self) -> Path:
        return self.root / "prompt.txt"

    @property
    def task(self) -> Path:
        """The agent's working directory (read-write; evaluate.py, templates and timer are mounted read-only)."""
        return self.root / "task"

    @property
    def home(self) -> Path:
        """The agent's $HOME."""
        return self.root / "home"

    @property
    def sandbox_tmp(self) -> Path:
        """The agent's /tmp: on disk in the run, so that what it left there can be checked afterwards."""
        return self.root / "sandbox_tmp"

    @property
    def pristine(self) -> Path:
        """Harness-owned copies of evaluate.py, templates and task context: never mounted writable."""
        return self.root / "eval"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def agent_log(self) -> Path:
        return self.logs / "agent.log"

    @property
    def agent_exit(self) -> Path:
        return self.logs / "agent_exit.json"

    @property
    def progress(self) -> Path:
        """The running evaluation's latest progress (harness-written JSON; gone when it ends), for grid status."""
        return self.logs / "progress.json"

    @property
    def agent_data(self) -> Path:
        """The data mounted at SANDBOX_DATA with test access `hidden`: only what the agent may train on."""
        return self.root / "agent_data"

    @property
    def agent_evals(self) -> Path:
        """One JSON line per evaluation the agent asked the service for."""
        return self.logs / "agent_evals.jsonl"

    @property
    def service(self) -> Path:
        """The evaluation service's work: one folder per request (logs, metrics), outside the agent's reach."""
        return self.root / "service"

    @property
    def submitted_model(self) -> Path:
        """What the agent left in task/final_model."""
        return self.task / "final_model"

    @property
    def final_model(self) -> Path:
        """The vetted copy of the agent's model that the harness evaluates."""
        return self.root / "final_model"

    def results(self, label: str) -> Path:
        """results/<label>/ holds metrics.json and the inspect log of one evaluation (base, final, ...)."""
        return self.root / "results" / label
