"""Evaluation progress as lines on stdout, for the harness that runs the evaluation in a child process:
`PTB-PROGRESS {"done": 12, "total": 164, "output_tokens": 3400}` after every finished item (written by the
inspect hook in progress_hook.py), and their reading into messages with ETA in the harness."""

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from posttrainbench import units

PREFIX = "PTB-PROGRESS "


def emit(record: dict) -> None:
    sys.stdout.write(PREFIX + json.dumps(record) + "\n")
    sys.stdout.flush()


@dataclass
class ProgressReporter:
    """Turns progress lines into a message every `every_s` seconds (and at the end): items done of total,
    output tokens per second and the time left at the rate so far."""

    label: str
    log: Callable[[str], None]
    every_s: float = 15.0
    quiet_s: float = 60.0  # a batched backend finishes its items together: say it is alive meanwhile
    started: float = 0.0
    last: float = 0.0
    done: int = 0
    total: int | None = None

    def feed(self, line: str) -> bool:
        """True when the line was a progress line (and is handled)."""
        if not line.startswith(PREFIX):
            return False
        try:
            record = json.loads(line[len(PREFIX):])
        except ValueError:
            return False
        now = time.monotonic()
        done, total = record.get("done") or 0, record.get("total")
        self.done, self.total = done, total
        if done == 0:
            self.started = self.last = now
            return True
        finished = total is not None and done >= total
        if now - self.last < self.every_s and not finished:
            return True
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        rate = record.get("output_tokens", 0) / elapsed
        message = f"evaluating {self.label}: {done}/{total if total is not None else '?'} items, {rate:.0f} tok/s"
        if total and not finished:
            left = elapsed / done * (total - done)
            message += f", about {units.duration(left)} left"
        self.log(message)
        return True

    def heartbeat(self) -> None:
        """Called now and then while the evaluation runs: a line when nothing was said for quiet_s."""
        now = time.monotonic()
        if self.started and now - self.last >= self.quiet_s:
            self.last = now
            total = self.total if self.total is not None else "?"
            self.log(f"evaluating {self.label}: {self.done}/{total} items after {units.duration(now - self.started)}")
