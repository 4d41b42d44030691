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
from dataclasses import dataclass, field
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
    output tokens per second and the time left at the rate so far.

    A batched backend finishes a whole batch of items within a second after a long silence: a rate taken at the
    first item of such a burst would promise hours. So a message is only given once no item came for `settle_s`
    (from `heartbeat`, which the reporting thread calls every few seconds) or when the last item is done."""

    label: str
    log: Callable[[str], None]
    every_s: float = 15.0
    quiet_s: float = 60.0  # a batched backend finishes its items together: say it is alive meanwhile
    settle_s: float = 2.0
    state_file: Path | None = None
    started: float = 0.0
    last: float = 0.0  # when the latest message was given
    done: int = 0
    total: int | None = None
    tokens: int = 0
    item_at: float = 0.0  # when the latest item finished
    reported: int = 0  # items done at the latest progress message
    lock: threading.Lock = field(default_factory=threading.Lock)  # lines and heartbeats come from two threads

    def feed(self, line: str) -> bool:
        """True when the line was a progress line (and is handled)."""
        progress = parse(line)
        if progress is None:
            return False
        with self.lock:
            self._feed(progress)
        return True

    def _feed(self, progress: Progress) -> None:
        now = time.monotonic()
        self.done, self.total, self.tokens = progress.done, progress.total, progress.output_tokens
        if progress.done == 0:
            self.started = self.last = self.item_at = now
            self.reported = 0
            self._save(None, None)
            return
        self.item_at = now
        if progress.total is not None and progress.done >= progress.total:
            self._report(now)

    def heartbeat(self) -> None:
        """Called every few seconds while the evaluation runs: the progress once a burst of items has settled,
        and a line that it is alive when nothing was said for quiet_s."""
        with self.lock:
            self._heartbeat(time.monotonic())

    def _heartbeat(self, now: float) -> None:
        if not self.started:
            return
        if self.done > self.reported and now - self.item_at >= self.settle_s and now - self.last >= self.every_s:
            self._report(now)
        elif now - self.last >= self.quiet_s:
            self.last = now
            self.log(f"evaluating {self.label}: {self.done}/{_total(self.total)} items after "
                     f"{units.duration(now - self.started)}")

    def _report(self, now: float) -> None:
        self.last, self.reported = now, self.done
        elapsed = max(self.item_at - self.started, 1e-6)  # the rate up to the latest item, not up to now
        rate = self.tokens / elapsed
        message = f"evaluating {self.label}: {self.done}/{_total(self.total)} items, {rate:.0f} tok/s"
        left = None
        if self.total and self.done < self.total:
            left = max(0.0, elapsed / self.done * (self.total - self.done) - (now - self.item_at))
            message += f", about {units.duration(left)} left"
        self._save(rate, left)
        self.log(message)

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
