"""Run one sandboxed process under a wall-clock limit, log its output with timestamps and classify how it ended."""

import collections
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Literal

import psutil

from posttrainbench.errors import PtbError
from posttrainbench.sandbox.bwrap import find_bwrap
from posttrainbench.sandbox.confine import Confined, confine
from posttrainbench.sandbox.gpus import host_gpu_env
from posttrainbench.sandbox.limits import Kind
from posttrainbench.sandbox.request import ExitInfo, SandboxRequest
from posttrainbench.specs.limits import SandboxLimits

log = logging.getLogger(__name__)

STOP_POLL_S = 0.5
_MAX_LINE = 1 << 16  # longer lines are split, so a newline-free flood cannot exhaust memory


def run(
    request: SandboxRequest,
    *,
    backend: Literal["bwrap", "none"],
    time_limit_s: float,
    log_path: Path,
    grace_s: float = 30.0,
    stop: Callable[[], str | None] | None = None,
    limits: SandboxLimits | None = None,
    on_line: Callable[[str], object] | None = None,
) -> ExitInfo:
    """Run `request`, appending its merged stdout/stderr to `log_path` as `[UTC time] line`.

    At `time_limit_s` every process of the sandbox gets SIGTERM, and SIGKILL `grace_s` later. If the harness is
    interrupted (KeyboardInterrupt, SIGTERM, any exception) the sandbox is killed before the exception propagates.
    `stop`, polled every STOP_POLL_S, returns a reason when the run must end early (a dead egress proxy): the
    sandbox is then ended the same way and the status is `stopped`. `limits` (the defaults when None) apply to the
    bwrap backend: the first one hit ends the sandbox the same way, with status `limit` and `limit` naming it.
    `on_line` sees every line as it is logged (decoded, hostile text: the caller parses it strictly); an error
    there is logged and never stops the copying.
    """
    request.validate()
    if time_limit_s <= 0 or grace_s < 0:
        raise PtbError(f"time limit must be positive and grace non-negative, got {time_limit_s} and {grace_s}")
    if backend == "bwrap":
        job = _BwrapJob(request, limits or SandboxLimits())
    elif backend == "none":
        job = _HostJob(request)
    else:
        raise PtbError(f"unknown sandbox backend {backend!r} (bwrap or none)")

    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "ab")
    started_at, start = _utc_now(), time.monotonic()
    try:
        job.start()
    except PtbError:
        log_file.close()
        job.close()
        raise
    except OSError as error:
        log_file.close()
        job.close()
        return ExitInfo(
            status="failed_to_start",
            returncode=None,
            wall_seconds=round(time.monotonic() - start, 3),
            started_at=started_at,
            ended_at=_utc_now(),
            detail=f"could not start {job.argv[0]}: {error}",
        )
    pump = _LogPump(job.proc.stdout, log_file, on_line)
    killed = None  # set when the clock ran out or `stop` fired: whether SIGKILL was needed after the grace
    stopped = None
    hit: tuple[Kind, str] | None = None

    def must_stop() -> str | None:
        nonlocal hit
        hit = job.limit_hit()
        if hit is not None:
            return f"limit: {hit[0]}"
        return stop() if stop is not None else None

    try:
        with _sigterm_raises():
            outcome = _wait(job.proc, start + time_limit_s, must_stop)
            if outcome is None:
                job.stop(0)  # what the agent left running in the background (only the none backend can have any)
            else:
                stopped = outcome or None
                killed = job.stop(grace_s)
    except BaseException as error:
        job.stop(0)
        pump.finish()
        job.close()
        if isinstance(error, _Terminated):
            # Die of the SIGTERM as we would have without the handler, now that nothing is left behind.
            signal.raise_signal(signal.SIGTERM)
        raise
    pump.finish()
    hit = hit or job.limit_hit(final=True)  # an OOM kill or a full disk may have ended it before a poll saw it
    job.close()
    wall = round(time.monotonic() - start, 3)
    returncode = job.returncode()
    if hit is not None:
        status = "limit"
        ending = "" if killed is None else f": sent SIGTERM, {'SIGKILL after the grace' if killed else 'it ended'}"
        detail = f"limit: {hit[0]}: {hit[1]}{ending}"
    elif stopped is not None:
        status = "stopped"
        ending = f"SIGKILL after {grace_s:g} s grace" if killed else "it ended within the grace"
        detail = f"stopped by the harness: {stopped}; sent SIGTERM, {ending}"
    elif killed is not None:
        status = "timed_out"
        ending = f"SIGKILL after {grace_s:g} s grace" if killed else "it ended within the grace"
        detail = f"time limit of {time_limit_s:g} s reached: sent SIGTERM, {ending}"
    elif job.never_ran():
        status, detail = "failed_to_start", f"the sandbox could not be set up: {pump.last_line() or 'no output'}"
    elif returncode == 0:
        status, detail = "finished", f"exit 0 after {wall:.1f} s"
    else:
        status = "crashed"
        detail = f"exit code {returncode}{_signal_note(returncode)} after {wall:.1f} s"
        if pump.last_line():
            detail += f"; last output: {pump.last_line()}"
    return ExitInfo(
        status=status,
        returncode=returncode,
        wall_seconds=wall,
        started_at=started_at,
        ended_at=_utc_now(),
        detail=job.label(detail),
        limit=hit[0] if hit is not None else None,
    )


def _wait(proc: subprocess.Popen, deadline: float, stop: Callable[[], str | None] | None) -> str | None:
    """Wait for the process until the monotonic `deadline` or until `stop()` gives a reason.

    Returns None if it ended, "" at the deadline, else the stop reason."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None if proc.poll() is not None else ""
        try:
            proc.wait(timeout=left if stop is None else min(left, STOP_POLL_S))
            return None
        except subprocess.TimeoutExpired:
            reason = stop() if stop is not None else None
            if reason:
                return reason


class _BwrapJob:
    """Isolated: bwrap's pid namespace holds every process the agent starts, detached or not."""

    def __init__(self, request: SandboxRequest, limits: SandboxLimits) -> None:
        self._request, self._limits = request, limits
        self.argv = [find_bwrap()]
        self._confined: Confined | None = None
        self._status_read = -1
        self._status = b""

    def start(self) -> None:
        self._status_read, status_write = os.pipe()
        try:
            self._confined = confine(self._request, self._limits, status_fd=status_write)
            self.argv = self._confined.argv
            # Called from the waiting thread on purpose: --die-with-parent fires when the *thread* that started
            # bwrap exits.
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={},
                start_new_session=True,
                pass_fds=(status_write, *self._confined.pass_fds),
            )
            self._confined.guard.started(self.proc.pid)
        finally:
            os.close(status_write)

    def limit_hit(self, *, final: bool = False) -> tuple[Kind, str] | None:
        return self._confined.guard.exceeded(final=final) if self._confined is not None else None

    def stop(self, grace_s: float) -> bool:
        """TERM the sandbox, KILL it after `grace_s`; True if the KILL was needed."""
        if self.proc.poll() is None and grace_s > 0:
            # Not bwrap itself: its death SIGKILLs the sandbox at once, leaving the agent no grace.
            _signal_all(_descendants(self.proc.pid), signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is not None:
            return False
        # The namespace's init dies with bwrap (--die-with-parent), and the kernel then kills everything left.
        _signal_all([psutil.Process(self.proc.pid), *_descendants(self.proc.pid)], signal.SIGKILL)
        self.proc.wait()
        return True

    def returncode(self) -> int:
        return _shell_code(self.proc.returncode)

    def never_ran(self) -> bool:
        # bwrap reports an exit-code only for a command it managed to exec; its own failures exit 1 without one.
        return self.proc.returncode == 1 and b'"exit-code"' not in self._status

    def label(self, detail: str) -> str:
        return detail

    def close(self) -> None:
        """Collect bwrap's status lines (all written once it has exited) and release the pipe and the cgroups."""
        if self._confined is not None:
            self._confined.close()
        if self._status_read < 0:
            return
        os.set_blocking(self._status_read, False)
        try:
            while chunk := os.read(self._status_read, 65536):
                self._status += chunk
        except BlockingIOError:
            pass
        os.close(self._status_read)
        self._status_read = -1


class _HostJob:
    """No isolation at all (debugging only): sandbox paths are translated back to the host paths they mount."""

    def __init__(self, request: SandboxRequest) -> None:
        log.warning(
            "SANDBOX BACKEND 'none': the agent runs UNISOLATED on this host with full access to its files, "
            "network and processes. Use it only for debugging."
        )
        self._mounts = [(m.target.rstrip("/") or "/", str(m.source)) for m in request.mounts]
        if not any(_within(request.cwd, target) for target, _ in self._mounts):
            raise PtbError(f"backend 'none' needs the cwd {request.cwd} to lie inside one of the request's mounts")
        self.argv = [self._host(arg) for arg in request.argv]
        self._cwd = self._host(request.cwd)
        self._env = {k: self._host_list(v) for k, v in request.env.items()} | host_gpu_env(request.gpus)
        self._seen: list[psutil.Process] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self._cwd,
            env=self._env,
            start_new_session=True,
        )

    def stop(self, grace_s: float) -> bool:
        # Best effort: a process that double-forks out of the group before we look escapes.
        if grace_s > 0:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        killed = self.proc.poll() is None
        self._signal(signal.SIGKILL)
        self.proc.wait()
        return killed

    def _signal(self, sig: int) -> None:
        self._seen += _descendants(self.proc.pid)
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        _signal_all(self._seen, sig)

    def returncode(self) -> int:
        return _shell_code(self.proc.returncode)

    def never_ran(self) -> bool:
        return False

    def limit_hit(self, *, final: bool = False) -> tuple[Kind, str] | None:
        return None  # no limits without isolation

    def label(self, detail: str) -> str:
        return f"{detail} (UNSANDBOXED backend 'none')"

    def close(self) -> None:
        pass

    def _host(self, path: str) -> str:
        """The host path behind a sandbox path: the last mount covering it wins, as it does inside the sandbox."""
        for target, source in reversed(self._mounts):
            if _within(path, target):
                rest = path if target == "/" else path[len(target) :]
                return source.rstrip("/") + rest if rest else source
        return path

    def _host_list(self, value: str) -> str:
        return ":".join(self._host(part) for part in value.split(":"))


class _LogPump:
    """Copies a pipe to the log line by line as it arrives, each line stamped with the time it was read."""

    def __init__(self, pipe: IO[bytes], log: IO[bytes], on_line: Callable[[str], object] | None = None) -> None:
        self._pipe = pipe
        self._log = log
        self._on_line = on_line
        self._tail: collections.deque[bytes] = collections.deque(maxlen=1)
        self._thread = threading.Thread(target=self._copy, name="sandbox-log", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        for line in iter(lambda: self._pipe.readline(_MAX_LINE), b""):
            stamp = datetime.now(timezone.utc).strftime("[%Y-%m-%dT%H:%M:%SZ] ").encode()
            self._log.write(stamp + line + (b"" if line.endswith(b"\n") else b"\n"))
            self._log.flush()
            if line.strip():
                self._tail.append(line)
            if self._on_line is not None:
                try:
                    self._on_line(line.decode("utf-8", "replace"))
                except Exception:  # the log must go on whatever a reader of it does
                    log.exception("reading a line of the sandbox's output failed")

    def finish(self) -> None:
        # A process that escaped the kill (backend none) may keep the pipe open: don't wait for it forever.
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._pipe.close()
            self._log.close()

    def last_line(self) -> str:
        if not self._tail:
            return ""
        return self._tail[-1].decode("utf-8", "replace").strip()[:300]


class _Terminated(BaseException):
    pass


@contextmanager
def _sigterm_raises():
    """Turn SIGTERM into an exception while we wait, so that the sandbox is killed on the way out."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def raise_terminated(signum, frame):
        raise _Terminated()

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _signal_all(processes: list[psutil.Process], sig: int) -> None:
    for process in processes:
        try:
            process.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def _shell_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _signal_note(code: int) -> str:
    if code > 128:
        try:
            return f" ({signal.Signals(code - 128).name})"
        except ValueError:
            return ""
    return ""


def _within(path: str, folder: str) -> bool:
    return folder == "/" or path == folder or path.startswith(folder + "/")


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
