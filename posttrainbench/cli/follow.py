"""Echoes a growing log file (the agent's) on the console while a run goes on."""

import threading
import time
from collections.abc import Callable
from pathlib import Path


class Follower:
    """Prints every new line of `path` through `echo`, from a thread; `drain()` prints what is there now, so that
    the harness's next message never comes before the agent output that preceded it."""

    def __init__(self, path: Path, echo: Callable[[str], None], poll_s: float = 0.5):
        self.path, self.echo, self.poll_s = path, echo, poll_s
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.handle = None
        self.partial = ""
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "Follower":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.drain(final=True)
        if self.handle:
            self.handle.close()

    def drain(self, final: bool = False) -> None:
        with self.lock:
            if self.handle is None:
                if not self.path.exists():
                    return
                # a resumed session appends to the log: continue where the file is, not at its start
                self.handle = open(self.path, errors="replace")  # noqa: SIM115 (kept open while following)
            text = self.partial + self.handle.read()
            lines = text.split("\n")
            self.partial = "" if final else lines.pop()
            for line in lines:
                if line.strip():
                    self.echo(line.rstrip())

    def _loop(self) -> None:
        while not self.stopped.wait(self.poll_s):
            self.drain()
