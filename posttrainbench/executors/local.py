"""Runs on this machine's GPUs: each run in its own worker process, pinned to its GPUs through
CUDA_VISIBLE_DEVICES, no GPU shared by two runs; runs without GPUs share a fixed number of CPU slots."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.executors.scheduler import Job, plan, simulate


@dataclass
class Ended:
    key: str
    note: str  # how the attempt's process ended, for the classifier and the log


@dataclass
class _Child:
    proc: subprocess.Popen
    gpus: list[int]
    started: float
    hours: float


def detect_gpus() -> list[int]:
    """The GPUs this harness may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi or /dev lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        parts = [p.strip() for p in visible.split(",") if p.strip()]
        if not all(p.isdigit() for p in parts):
            raise PtbError(f"CUDA_VISIBLE_DEVICES={visible!r} is not a list of GPU indices; pass the GPUs explicitly")
        return [int(p) for p in parts]
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True)
        if out.returncode == 0:
            return [int(line) for line in out.stdout.split() if line.isdigit()]
    return sorted(int(m.group(1)) for p in Path("/dev").glob("nvidia*") if (m := re.fullmatch(r"nvidia(\d+)", p.name)))


class LocalExecutor:
    name = "local"

    def __init__(self, store_path: Path, gpus: list[int], cpu_slots: int = 1):
        if len(set(gpus)) != len(gpus) or any(g < 0 for g in gpus):
            raise PtbError(f"GPU indices must be distinct and non-negative, got {gpus}")
        if cpu_slots < 1:
            raise PtbError("cpu_slots must be at least 1")
        self.store_path = Path(store_path)
        self.gpus = list(gpus)
        self.cpu_slots = cpu_slots
        self.children: dict[str, _Child] = {}

    def check(self, gpus_per_run: int) -> None:
        if gpus_per_run > len(self.gpus):
            have = f"GPUs {', '.join(map(str, self.gpus))}" if self.gpus else "no GPUs"
            raise PtbError(f"each run needs {gpus_per_run} GPUs but this machine offers {have}")

    def describe(self) -> str:
        gpus = ",".join(map(str, self.gpus)) or "none"
        return f"local executor: GPUs {gpus}, {self.cpu_slots} CPU slot(s) for runs without GPUs"

    def adopt(self, key: str, job_id: str | None, run_dir: Path, run_id: str) -> bool:
        return False  # a child of an earlier harness died with it

    def start(self, jobs: list[Job], prepare: Callable[[str], Path | None]) -> list[tuple[str, str, None]]:
        """Start what fits now: (cell key, placement, no job id) for each. `prepare(key)` returns the run dir
        (None: the cell could not be prepared)."""
        used = {g for child in self.children.values() for g in child.gpus}
        cpu_free = self.cpu_slots - sum(1 for child in self.children.values() if not child.gpus)
        started = []
        for job, gpus in plan(jobs, [g for g in self.gpus if g not in used], cpu_free):
            run_dir = prepare(job.key)
            if run_dir is None:
                continue
            env = os.environ | {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus)), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
            argv = [sys.executable, "-m", "posttrainbench.executors.worker", str(run_dir),
                    "--store", str(self.store_path), "--parent", str(os.getpid())]
            (run_dir / "logs").mkdir(exist_ok=True)
            with open(run_dir / "logs" / "worker.log", "ab") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
            self.children[job.key] = _Child(proc, gpus, time.time(), job.hours)
            started.append((job.key, f"GPUs {','.join(map(str, gpus))}" if gpus else "CPU", None))
        return started

    def poll(self) -> list[Ended]:
        ended = []
        for key, child in list(self.children.items()):
            code = child.proc.poll()
            if code is not None:
                del self.children[key]
                ended.append(Ended(key, f"worker exit code {code}"))
        return ended

    def running(self) -> set[str]:
        return set(self.children)

    def queued(self) -> int:
        return 0

    def eta_hours(self, waiting: list[Job]) -> float | None:
        """Replay the schedule of what is left, every run taking its whole budget."""
        t = time.time()
        busy = [(max(0.0, c.hours - (t - c.started) / 3600), c.gpus) for c in self.children.values()]
        if not waiting and not busy:
            return None
        return simulate(waiting, len(self.gpus), cpu_slots=self.cpu_slots, busy=busy).makespan

    def stop(self, grace_s: float = 60.0) -> list[str]:
        """SIGTERM every worker (each stops its sandbox and records the stage as interrupted), SIGKILL the rest."""
        for child in self.children.values():
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.time() + grace_s
        for child in self.children.values():
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        stopped = list(self.children)
        self.children.clear()
        return stopped
