"""Runs as Slurm jobs: one `sbatch` job per run, which executes the same worker as the local executor.

Run directories must lie on a filesystem the compute nodes share. SQLite must not be written from several hosts
over a network filesystem, so a job writes its run into a small store of its own (`run.sqlite` in the run dir)
and the harness copies that run into the main store when the job has ended. Job states come from `squeue`;
`sacct` adds the final state where accounting is enabled."""

import getpass
import math
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from posttrainbench import paths
from posttrainbench.errors import PtbError
from posttrainbench.executors.local import Ended
from posttrainbench.executors.scheduler import Job, priority
from posttrainbench.specs.grid import Grid
from posttrainbench.store import Store

JOB_STORE = "run.sqlite"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
            "DEADLINE", "SPECIAL_EXIT", "REVOKED"}
# Copied between the main store and a job's store, with the column that names the run.
RUN_TABLES = (("runs", "id"), ("stages", "run_id"), ("metrics", "run_id"))
ENV_PREFIXES = ("PTB_", "HF_", "TRANSFORMERS_", "PYTHONPATH", "NCCL_")


def job_name(grid: str) -> str:
    """Every job of a grid has this name, so `scancel -n ptb-GRID` stops a grid."""
    return f"ptb-{grid}"


def copy_run(store: Store, other: Path, run_id: str, *, into_other: bool) -> None:
    """Replace the run's rows in one store with those of the other (same schema, by column name)."""
    Store(other).close()  # creates the tables in a new job store
    db = store.db
    db.execute("ATTACH DATABASE ? AS job", (str(other),))
    try:
        src, dst = ("main", "job") if into_other else ("job", "main")
        db.execute("BEGIN IMMEDIATE")
        for table, column in RUN_TABLES:
            have = {r[1] for r in db.execute(f"PRAGMA {src}.table_info({table})")}
            cols = ", ".join(r[1] for r in db.execute(f"PRAGMA {dst}.table_info({table})") if r[1] in have)
            db.execute(f"DELETE FROM {dst}.{table} WHERE {column}=?", (run_id,))
            db.execute(f"INSERT INTO {dst}.{table} ({cols}) SELECT {cols} FROM {src}.{table} WHERE {column}=?",
                       (run_id,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    finally:
        db.execute("DETACH DATABASE job")


def job_script(grid: Grid, run_dir: Path, gpus: int, hours: float) -> str:
    opts = grid.slurm
    minutes = max(1, math.ceil((hours + opts.time_margin_hours) * 60))
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name(grid.name)}", f"#SBATCH --chdir={run_dir}",
             f"#SBATCH --output={run_dir}/logs/slurm-%j.log", f"#SBATCH --time={minutes}"]
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    for flag, value in (("partition", opts.partition), ("account", opts.account), ("qos", opts.qos),
                        ("cpus-per-task", opts.cpus_per_task), ("mem", opts.mem)):
        if value is not None:
            lines.append(f"#SBATCH --{flag}={value}")
    lines += [f"#SBATCH {arg}" for arg in opts.extra_args]
    # The job must see the caches and data of the harness even when it is resumed from another shell.
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    env["PTB_CACHE"] = str(paths.cache_dir())
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    lines += opts.setup
    python = opts.python or sys.executable
    lines.append(f"exec {shlex.quote(python)} -m posttrainbench.executors.worker {shlex.quote(str(run_dir))}"
                 f" --store {shlex.quote(str(run_dir / JOB_STORE))}")
    return "\n".join(lines) + "\n"


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True)


class SlurmExecutor:
    name = "slurm"

    def __init__(self, store: Store, grid: Grid):
        self.store = store
        self.grid = grid
        self.jobs: dict[str, tuple[str, Path, str]] = {}  # cell key -> (job id, run dir, run id)
        self.queue: dict[str, str] = {}  # job id -> state, as of the last poll

    def check(self, gpus_per_run: int) -> None:
        missing = [tool for tool in ("sbatch", "squeue") if shutil.which(tool) is None]
        if missing:
            raise PtbError(f"the slurm executor needs {' and '.join(missing)} on PATH (is this a Slurm login node?)")

    def describe(self) -> str:
        return f"slurm executor: jobs named {job_name(self.grid.name)}"

    def adopt(self, key: str, job_id: str | None, run_dir: Path, run_id: str) -> bool:
        """Track the job of an attempt started by an earlier harness."""
        if not job_id:
            return False
        self.jobs[key] = (job_id, run_dir, run_id)
        return True

    def start(self, jobs: list[Job], prepare: Callable[[str], Path | None]) -> list[tuple[str, str, str]]:
        """Submit every job (Slurm decides where and when each runs): (cell key, placement, job id) for each."""
        started = []
        for job in sorted(jobs, key=priority):  # Slurm starts equal-priority jobs in submission order
            run_dir = prepare(job.key)
            if run_dir is None:
                continue
            run_id = run_dir.name
            copy_run(self.store, run_dir / JOB_STORE, run_id, into_other=True)
            script = run_dir / "logs" / "job.sbatch"
            script.parent.mkdir(exist_ok=True)
            script.write_text(job_script(self.grid, run_dir, job.gpus, job.hours))
            out = _run(["sbatch", "--parsable", str(script)])
            if out.returncode != 0:
                raise PtbError(f"sbatch failed for {job.key}: {(out.stderr or out.stdout).strip()}")
            job_id = out.stdout.strip().split(";")[0]
            self.jobs[job.key] = (job_id, run_dir, run_id)
            started.append((job.key, f"Slurm job {job_id}", job_id))
        return started

    def poll(self) -> list[Ended]:
        if not self.jobs:
            return []
        queue = _queue()
        if queue is None:
            return []  # the controller may be briefly unreachable; ask again at the next poll
        self.queue = queue
        ended = []
        for key, (job_id, run_dir, run_id) in list(self.jobs.items()):
            state = self.queue.get(job_id)
            if state is not None and state not in TERMINAL:
                continue
            final = state or _sacct_state(job_id) or "no longer in the queue"
            if (run_dir / JOB_STORE).exists():
                copy_run(self.store, run_dir / JOB_STORE, run_id, into_other=False)
            del self.jobs[key]
            note = f"Slurm job {job_id} {final}"
            if final != "COMPLETED":
                note += f"; see {run_dir}/logs/slurm-{job_id}.log"
            ended.append(Ended(key, note))
        return ended

    def running(self) -> set[str]:
        return set(self.jobs)

    def queued(self) -> int:
        return sum(1 for job_id, _, _ in self.jobs.values() if self.queue.get(job_id) == "PENDING")

    def eta_hours(self, waiting: list[Job]) -> float | None:
        return None  # the cluster's other users decide when jobs start

    def stop(self) -> list[str]:
        return []  # jobs go on without the harness; a resume picks them up again


def _sacct_state(job_id: str) -> str | None:
    """None where accounting is off (accounting_storage/none) or sacct is missing."""
    if shutil.which("sacct") is None:
        return None
    out = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State"])
    lines = out.stdout.split()
    return lines[0] if out.returncode == 0 and lines else None


def _queue() -> dict[str, str] | None:
    """job id -> state of this user's jobs that squeue still knows; None where it can't be asked."""
    if shutil.which("squeue") is None:
        return None
    out = _run(["squeue", "-h", "-u", getpass.getuser(), "-o", "%i %T"])
    if out.returncode != 0:
        return None
    return dict(line.split()[:2] for line in out.stdout.splitlines() if len(line.split()) >= 2)


def queue_states(job_ids: list[str]) -> dict[str, str]:
    """Current squeue states of these jobs; empty where Slurm can't be asked."""
    states = _queue() if job_ids else None
    return {j: states[j] for j in job_ids if j in states} if states else {}
