"""Evaluation progress as lines on stdout, for the harness that runs the evaluation in a child process:
`PTB-PROGRESS {"done": 12, "total": 164, "output_tokens": 3400}` after every finished item (written by the
inspect hook in progress_hook.py), and their reading into messages with ETA in the harness.

The child may be hostile (the agent's model steers it, and it runs in a sandbox because of that): a progress line
is read strictly (exactly these keys, whole numbers in range) and only the numbers reach the screen; anything else
is not progress. The harness also keeps the latest state in a small JSON file (`state_file`), which a grid's
driver reads to show each running cell's items and time left."""

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from posttrainbench import units

PREFIX = "PTB-PROGRESS "
KEYS = {"done", "total", "output_tokens"}
MAX_LINE = 200  # a real line is ~70 characters
MAX_COUNT = 10**9  # no benchmark has this many items, no evaluation this many tokens


def emit(record: dict) -> None:
    sys.stdout.write(PREFIX + json.dumps(record) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Progress:
    done: int
    total: int | None
    output_tokens: int


def parse(line: str) -> Progress | None:
    """The progress a line reports, or None when it is not a well-formed progress line."""
    line = line.rstrip("\r\n")
    if not line.startswith(PREFIX) or len(line) > MAX_LINE:
        return None
    try:
        record = json.loads(line[len(PREFIX):])
    except ValueError:
        return None
    if not isinstance(record, dict) or set(record) != KEYS:
        return None
    done, total, tokens = record["done"], record["total"], record["output_tokens"]
    if not (_count(done) and _count(tokens) and (total is None or _count(total))):
        return None
    if total is not None and done > total:
        return None
    return Progress(done, total, tokens)


def _count(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_COUNT  # noqa: E721 (bool is an int subclass: refuse it)


@dataclass
class ProgressReporter:
    """Turns progress lines into a message every `every_s` seconds (and at the end): items done of total,
    output tokens per second and the time left at the rate so far."""

    label: str
    log: Callable[[str], None]
    every_s: float = 15.0
    quiet_s: float = 60.0  # a batched backend finishes its items together: say it is alive meanwhile
    state_file: Path | None = None
    started: float = 0.0
    last: float = 0.0
    done: int = 0
    total: int | None = None

    def feed(self, line: str) -> bool:
        """True when the line was a progress line (and is handled)."""
        progress = parse(line)
        if progress is None:
            return False
        now = time.monotonic()
        self.done, self.total = progress.done, progress.total
        if progress.done == 0:
            self.started = self.last = now
            self._save(None, None)
            return True
        finished = progress.total is not None and progress.done >= progress.total
        if now - self.last < self.every_s and not finished:
            return True
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        rate = progress.output_tokens / elapsed
        message = f"evaluating {self.label}: {progress.done}/{_total(progress.total)} items, {rate:.0f} tok/s"
        left = None
        if progress.total and not finished:
            left = elapsed / progress.done * (progress.total - progress.done)
            message += f", about {units.duration(left)} left"
        self._save(rate, left)
        self.log(message)
        return True

    def heartbeat(self) -> None:
        """Called now and then while the evaluation runs: a line when nothing was said for quiet_s."""
        now = time.monotonic()
        if self.started and now - self.last >= self.quiet_s:
            self.last = now
            self.log(f"evaluating {self.label}: {self.done}/{_total(self.total)} items after "
                     f"{units.duration(now - self.started)}")

    def _save(self, rate: float | None, left: float | None) -> None:
        if self.state_file is None:
            return
        state = {"label": self.label, "done": self.done, "total": self.total,
                 "tok_s": None if rate is None else round(rate, 1), "eta_s": None if left is None else round(left),
                 "updated": time.time()}
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)


def _total(total: int | None) -> str:
    return "?" if total is None else str(total)


@contextmanager
def reporting(label: str, log: Callable[[str], None], state_file: Path | None = None,
              beat_s: float = 5.0) -> Iterator[ProgressReporter]:
    """A reporter for one evaluation, with a thread that calls its heartbeat until the block ends."""
    reporter = ProgressReporter(label, log, state_file=state_file)
    ended = threading.Event()

    def beat() -> None:
        while not ended.wait(beat_s):
            reporter.heartbeat()

    thread = threading.Thread(target=beat, name="eval-progress", daemon=True)
    thread.start()
    try:
        yield reporter
    finally:
        ended.set()
        thread.join(timeout=beat_s + 1)
        if state_file is not None:
            state_file.unlink(missing_ok=True)
