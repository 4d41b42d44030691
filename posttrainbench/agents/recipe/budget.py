"""Time planning: read the task's timer like an agent would, keep a safety margin, size training to what fits."""

import math
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from posttrainbench.errors import PtbError

TIMER_LINE = re.compile(r"Remaining time \(hours:minutes\):\s*(\d+):(\d{1,2})")

SAFETY_FRACTION = 0.10  # of the whole budget, for everything the estimates below get wrong
EVAL_MIN_BUDGET_S = 45 * 60  # below this, comparing against the base model costs more than it tells
EVAL_FRACTION, EVAL_MAX_S = 0.20, 40 * 60
MIN_TRAIN_STEPS = 5
STEP_OVERHEAD = 1.10  # optimizer step, logging and the odd checkpoint on top of forward+backward


def parse_timer(output: str) -> float:
    """Seconds left from timer.sh's output (minute resolution; 0 once it prints `Timer expired!`)."""
    if "Timer expired" in output:
        return 0.0
    found = TIMER_LINE.search(output)
    if not found:
        raise PtbError(f"cannot read the remaining time from timer.sh: {output.strip()!r}")
    hours, minutes = int(found.group(1)), int(found.group(2))
    return float(hours * 3600 + minutes * 60)


def read_timer(task_dir: Path) -> float:
    timer = task_dir / "timer.sh"
    if not timer.is_file():
        raise PtbError(f"{timer} is missing: the reference agent runs in a task directory")
    done = subprocess.run(["bash", str(timer)], cwd=task_dir, capture_output=True, text=True, timeout=60)
    return parse_timer(done.stdout + done.stderr)


def finish_seconds(model_bytes: int) -> float:
    """Merging the adapter, writing the model and loading it back for a check: a fixed part plus ~100 MB/s
    (an H200's local disk did 8 GB in 11 s; the slack is for network file systems and CPU-only checks)."""
    return 30.0 + model_bytes / 100e6


@dataclass(frozen=True)
class Budget:
    total_s: float  # remaining when the agent started
    reserve_s: float  # safety margin + final save + check
    eval_s: float  # evaluate.py runs comparing the trained and the base model; 0 = skipped

    @property
    def train_s(self) -> float:
        """Time for everything before the final save: loading, data, probe and training."""
        return max(0.0, self.total_s - self.reserve_s - self.eval_s)


def plan_budget(remaining_s: float, model_bytes: int, want_eval: bool) -> Budget:
    reserve = SAFETY_FRACTION * remaining_s + finish_seconds(model_bytes)
    eval_s = 0.0
    if want_eval and remaining_s >= EVAL_MIN_BUDGET_S:
        # two evaluate.py runs and one extra save (the base model, packaged like the trained one)
        eval_s = min(EVAL_FRACTION * remaining_s, EVAL_MAX_S) + finish_seconds(model_bytes)
    return Budget(total_s=remaining_s, reserve_s=reserve, eval_s=eval_s)


def plan_steps(window_s: float, step_s: float, steps_per_epoch: int, max_epochs: float, cap: int | None) -> int:
    """Optimizer steps that fit in `window_s`, at most `max_epochs` passes over the data and at most `cap`;
    0 when not even MIN_TRAIN_STEPS fit (training that short would only add noise) — or `cap`, when smaller."""
    if step_s <= 0:
        raise ValueError("step time must be positive")
    fit = math.floor(window_s / (step_s * STEP_OVERHEAD))
    steps = min(fit, math.ceil(steps_per_epoch * max_epochs))
    minimum = MIN_TRAIN_STEPS
    if cap is not None:
        steps, minimum = min(steps, cap), min(minimum, cap)
    return steps if steps >= minimum else 0


class Clock:
    """Wall-clock deadlines on a monotonic clock, anchored when the timer was read."""

    def __init__(self, remaining_s: float, now: float | None = None):
        self.start = time.monotonic() if now is None else now
        self.end = self.start + remaining_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.end - time.monotonic()

    def at(self, seconds_from_start: float) -> float:
        return self.start + seconds_from_start


def hms(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
