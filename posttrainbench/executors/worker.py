"""One attempt at one run, in its own process: `python -m posttrainbench.executors.worker RUN_DIR --store DB`.

Executors start one worker per run (a local child process or a Slurm job), so a crash in one run cannot take
the others down. The worker holds a lock on its run directory for its whole life, so a resumed attempt waits
for a stopped one to be gone; it then resumes the run at its first unfinished stage."""

import argparse
import ctypes
import fcntl
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import psutil

from posttrainbench.errors import PtbError
from posttrainbench.executors.pipeline import execute
from posttrainbench.executors.stages import STAGES
from posttrainbench.store import Store
from posttrainbench.untrusted import clean_text
from posttrainbench.workspace.layout import RunLayout

LOCK = ".worker.lock"
PR_SET_PDEATHSIG = 1
# Files in logs/ that belong to the worker or its job, not to an attempt of the agent.
OWN_LOGS = ("worker.log", "job.sbatch")


def reset_from(layout: RunLayout, stage: str) -> None:
    """Remove what an unfinished attempt left from `stage` on, so the next one starts clean. The agent's task
    dir and home are emptied (a retried agent starts afresh with its full budget); its logs are kept aside."""
    if stage == "agent":
        attempt = 1 + sum(1 for p in layout.logs.glob("attempt-*"))
        keep = layout.logs / f"attempt-{attempt}"
        moved = [p for p in layout.logs.iterdir()
                 if not p.name.startswith(("attempt-", "slurm-")) and p.name not in OWN_LOGS]
        if moved:
            keep.mkdir()
            for path in moved:
                path.rename(keep / path.name)
        for folder in (layout.task, layout.home, layout.sandbox_tmp):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
        shutil.rmtree(layout.final_model, ignore_errors=True)
        (layout.root / "collect.json").unlink(missing_ok=True)
    if stage in ("agent", "evaluate"):
        shutil.rmtree(layout.results("final"), ignore_errors=True)
        (layout.root / "score.json").unlink(missing_ok=True)


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the harness died before the request took effect
        sys.exit(1)


def _terminate(signum, frame):
    raise KeyboardInterrupt  # unwinds through the pipeline, which records the stage as interrupted


def _stop_children() -> None:
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        child.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="posttrainbench.executors.worker")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--parent", type=int, help="exit when this process (the harness) dies")
    args = parser.parse_args(argv)
    if args.parent:
        _die_with_parent(args.parent)
    signal.signal(signal.SIGTERM, _terminate)
    layout = RunLayout(args.run_dir.resolve())

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {clean_text(message)}", flush=True)  # read with tail -f

    with open(layout.root / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        store = Store(args.store)
        try:
            store.reap_stale()
            status = {s["stage"]: s["status"] for s in store.stages(layout.root.name)}
            unfinished = [stage for stage in STAGES if status.get(stage, "done") != "done"]
            if unfinished:
                log(f"{unfinished[0]}: a previous attempt did not finish; starting it again from a clean state")
                reset_from(layout, unfinished[0])
            row = execute(layout.root, store, log=log)
            log(f"run {row.id}: {row.status}, score {row.score} ({row.score_source})")
            return 0
        except PtbError as exc:
            log(f"error: {exc}")
            return 3
        except KeyboardInterrupt:
            log("stopped")
            return 130
        finally:
            _stop_children()
            store.close()


if __name__ == "__main__":
    sys.exit(main())
