"""The evaluation service of a run with test access `hidden`: the agent's evaluate.py asks, the harness evaluates.

The test items never enter the agent's sandbox. The service listens on a unix socket that is bind-mounted into it
(so it works whatever the sandbox's network), takes the path of a checkpoint inside the agent's task or home
directory, makes a vetted copy of it with the checks of `collect` (no links, safetensors only, no remote code) under
a size cap, and evaluates the copy in a sandbox of its own (sandboxed.py): no network, the test data read-only, the
run's GPUs. Graded benchmarks reach their grader through a metering proxy that holds the harness's key, so no key
enters either sandbox. The reply carries metrics only. One evaluation runs at a time, the others wait in a short
queue; the agent's clock keeps running meanwhile, and whatever is running or waiting when the service closes (the
agent's budget is over) is cancelled. Every request, refused ones included, is a line of logs/agent_evals.jsonl.

Everything a client sends is hostile: lines are size-capped, validated by the protocol models, paths are resolved
without following links, and no failure of one request reaches another or the harness.
"""

import hashlib
import json
import logging
import os
import posixpath
import queue
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from posttrainbench import sandbox
from posttrainbench.errors import PtbError
from posttrainbench.evaluation.protocol import MAX_LINE, REPLY_METRICS, Progress, Reply, Request
from posttrainbench.evaluation.sandboxed import SandboxedEvaluation
from posttrainbench.workspace.collect import collect
from posttrainbench.workspace.layout import SANDBOX_EVAL_SOCKET, SANDBOX_HOME, SANDBOX_TASK, RunLayout
from posttrainbench.workspace.manifest import RunManifest

log = logging.getLogger(__name__)

MAX_WAITING = 4  # evaluations queued behind the running one; more are refused
MAX_CONNECTIONS = 16  # open connections at once; more are closed unanswered
READ_TIMEOUT_S = 30.0  # for the request line
CLOSE_WAIT_S = 65.0  # for the worker to end a cancelled evaluation (the evaluator stops within its grace)
# A checkpoint may be stored in a wider dtype than the base model, not more.
SIZE_FACTOR = 4


class Refused(Exception):
    """A request the service does not evaluate; the message is the one line the client gets."""


@dataclass
class Job:
    number: int
    request: Request
    model_dir: Path  # the vetted copy
    work_dir: Path  # service/<number>/: the evaluation's logs and metrics
    checkpoint_sha256: str
    settings: dict
    requested_at: float
    started_at: float | None = None
    reply: Reply | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Evaluator(Protocol):
    def __call__(self, job: Job, cancelled: Callable[[], str | None]) -> dict:
        """Evaluate job.model_dir with job.settings; the full metrics, or PtbError (its message goes to the
        client). Must end soon after `cancelled()` returns a reason."""


def settings_for(manifest: RunManifest, request: Request) -> dict:
    """The original's agent-side defaults for whatever the request leaves open."""
    defaults = manifest.benchmark.agent_defaults
    return {
        "limit": request.limit,
        "max_tokens": request.max_tokens or defaults.max_tokens,
        "max_connections": request.max_connections or defaults.max_connections,
        "gpu_memory_utilization": request.gpu_memory_utilization or defaults.gpu_memory_utilization,
    }


def resolve_checkpoint(layout: RunLayout, model_path: str) -> tuple[Path, Path]:
    """The host folder behind a path the agent names, inside its task or home directory and reached without
    links, with that directory (copies start there, so that nothing swapped in later is followed)."""
    if "\0" in model_path:
        raise Refused("the model path contains a NUL byte")
    inside = posixpath.normpath(posixpath.join(SANDBOX_TASK, model_path))
    for sandbox_root, host_root in ((SANDBOX_TASK, layout.task), (SANDBOX_HOME, layout.home)):
        if inside == sandbox_root or inside.startswith(sandbox_root + "/"):
            parts = [p for p in inside[len(sandbox_root):].split("/") if p]
            break
    else:
        raise Refused(f"the model must be a folder inside {SANDBOX_TASK} or {SANDBOX_HOME}")
    host = host_root
    for part in parts:
        host = host / part
        try:
            mode = os.lstat(host).st_mode
        except OSError:
            raise Refused(f"{inside} does not exist") from None
        if stat.S_ISLNK(mode):
            raise Refused(f"{inside} is reached through a symbolic link; name the real folder")
    if not stat.S_ISDIR(os.lstat(host).st_mode) or not parts:
        raise Refused(f"{inside} is not a model folder")
    return host, host_root


def _size(folder: Path) -> int:
    total = 0
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            total += entry.stat(follow_symlinks=False).st_size
    return total


def checkpoint_hash(files: dict[str, str]) -> str:
    """One sha256 for a vetted copy: over its file names and their sha256s."""
    return hashlib.sha256("".join(f"{name}\0{digest}\n" for name, digest in sorted(files.items())).encode()).hexdigest()


class EvalService:
    """`with EvalService(...) as service:` serves until the block ends; add `service.mount` to the agent's
    sandbox. Closing cancels what is running or waiting."""

    def __init__(self, manifest: RunManifest, layout: RunLayout, *, deadline: float,
                 evaluator: Evaluator | None = None, backend: str = "bwrap", gpus: list[int] | None = None,
                 env: dict[str, str] | None = None):
        self.manifest = manifest
        self.layout = layout
        self.deadline = deadline
        if evaluator is None:
            evaluator = SandboxedEvaluation(manifest, backend=backend, gpus=gpus or [], env=env or {},
                                            deadline=deadline)
        self.evaluator = evaluator
        self._folder = Path(tempfile.mkdtemp(prefix="ptb-eval-"))  # unix socket paths must stay short
        self.socket_path = self._folder / "eval.sock"
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._waiting: list[Job] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._count = 0
        self._admitting = 0
        base = Path(manifest.base_model_dir)
        self.max_bytes = SIZE_FACTOR * sum(p.stat().st_size for p in base.glob("*.safetensors")) + (1 << 30)
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    @property
    def mount(self) -> sandbox.Mount:
        return sandbox.Mount(self.socket_path, SANDBOX_EVAL_SOCKET)

    def __enter__(self) -> "EvalService":
        self.layout.service.mkdir(parents=True, exist_ok=True)
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o666)  # the agent may run as another uid inside its sandbox
        listener.listen(MAX_CONNECTIONS)
        self._listener = listener
        for target, name in ((self._accept, "ptb-eval-accept"), (self._work, "ptb-eval-worker")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Cancel the running evaluation and refuse the waiting ones: the agent's time is up."""
        with self._lock:
            if self._closing.is_set():
                return
            self._closing.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            except OSError:
                pass
            self._listener.close()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=CLOSE_WAIT_S)
        shutil.rmtree(self._folder, ignore_errors=True)

    def cancelled(self) -> str | None:
        if self._closing.is_set():
            return "the agent's time is up"
        if time.time() >= self.deadline:
            return "the agent's budget ended"
        return None

    # -- connections -------------------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            if not self._slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), name="ptb-eval-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(READ_TIMEOUT_S)
                reply = self._answer(conn)
                conn.settimeout(READ_TIMEOUT_S)
                _send(conn, reply)
                _drain(conn)
        except OSError:
            pass  # the client went away; a job it queued still runs and is logged
        except Exception:  # a bug here must not take the harness down
            log.exception("evaluation service: request failed")
        finally:
            self._slots.release()

    def _answer(self, conn: socket.socket) -> Reply:
        requested_at = time.time()
        try:
            request = _read_request(conn)
            job = self._admit(request, requested_at)
        except Refused as exc:
            reply = Reply(status="error", error=str(exc), seconds=round(time.time() - requested_at, 3))
            self._log({"requested_at": _iso(requested_at), "status": "refused", "error": str(exc)})
            return reply
        ahead = self._enqueue(job)
        _send(conn, Progress(status="queued", ahead=ahead))
        announced = False
        while not job.done.wait(1.0):
            if job.started_at is not None and not announced:
                announced = True
                _send(conn, Progress(status="running"))
        return job.reply

    def _admit(self, request: Request, requested_at: float) -> Job:
        if self.cancelled():
            raise Refused(self.cancelled())
        with self._lock:
            # Copies in progress count too: each takes the disk space of a checkpoint.
            if len(self._waiting) + self._admitting > MAX_WAITING:
                raise Refused(f"{MAX_WAITING} evaluations of this run are waiting already; try again later")
            self._admitting += 1
            self._count += 1
            number = self._count
        try:
            job = self._copy(request, requested_at, number)
        except BaseException:
            with self._lock:
                self._admitting -= 1
            raise
        return job

    def _copy(self, request: Request, requested_at: float, number: int) -> Job:
        source, root = resolve_checkpoint(self.layout, request.model_path)
        size = _size(source)
        if size > self.max_bytes:
            raise Refused(f"the checkpoint holds {size / 1e9:.1f} GB, more than the {self.max_bytes / 1e9:.1f} GB "
                          "allowed for this base model")
        work_dir = self.layout.service / f"{number:04d}"
        try:
            result = collect(source, work_dir / "model", Path(self.manifest.base_model_dir), root=root)
        except OSError as exc:  # unreadable files, a folder changing under the copy, a full disk
            shutil.rmtree(work_dir, ignore_errors=True)
            raise Refused(f"cannot copy the checkpoint: {exc.strerror or type(exc).__name__}") from None
        if result.status != "ok":
            shutil.rmtree(work_dir, ignore_errors=True)
            raise Refused(result.reason or "the checkpoint was not accepted")
        return Job(number=number, request=request, model_dir=work_dir / "model", work_dir=work_dir,
                   checkpoint_sha256=checkpoint_hash(result.files), settings=settings_for(self.manifest, request),
                   requested_at=requested_at)

    def _enqueue(self, job: Job) -> int:
        """Queue an admitted job; its copy stops counting as one in progress in the same step."""
        with self._lock:
            self._admitting -= 1
            closing = self._closing.is_set()
            if not closing:
                self._waiting.append(job)
                ahead = len(self._waiting) - 1
                # Under the lock: once closing is set, the worker's end marker comes after every queued job.
                self._queue.put(job)
        if closing:
            self._finish(job, Reply(status="error", error=f"cancelled: {self.cancelled()}"))
            return 0
        return ahead

    # -- the one worker --------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                break
            try:
                self._run(job)
            except Exception as exc:  # the evaluator's bug: this request fails, the service goes on
                log.exception("evaluation service: job %d failed", job.number)
                self._finish(job, Reply(status="error", error=f"internal error of the evaluation service "
                                                              f"({type(exc).__name__})"))
        while True:  # what still waits when the service closes
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._finish(job, Reply(status="error", error=f"cancelled: {self.cancelled()}"))

    def _run(self, job: Job) -> None:
        reason = self.cancelled()
        if reason:
            self._finish(job, Reply(status="error", error=f"cancelled: {reason}"))
            return
        job.started_at = time.time()
        try:
            metrics = self.evaluator(job, self.cancelled)
        except PtbError as exc:
            reason = self.cancelled()
            error = f"cancelled: {reason}" if reason else (str(exc).splitlines() or ["the evaluation failed"])[0][:500]
            self._finish(job, Reply(status="error", error=error))
            return
        self._finish(job, Reply(status="ok", metrics={k: metrics.get(k) for k in REPLY_METRICS}))

    def _finish(self, job: Job, reply: Reply) -> None:
        now = time.time()
        started = job.started_at or now
        reply = reply.model_copy(update={
            "checkpoint_sha256": job.checkpoint_sha256, "settings": job.settings,
            "queued_s": round(started - job.requested_at, 3), "seconds": round(now - job.requested_at, 3),
        })
        shutil.rmtree(job.model_dir, ignore_errors=True)  # the weights; logs and metrics stay
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
        self._log({
            "n": job.number, "requested_at": _iso(job.requested_at), "started_at": _iso(job.started_at),
            "ended_at": _iso(now), "model_path": job.request.model_path, "checkpoint_sha256": job.checkpoint_sha256,
            "settings": job.settings, "status": reply.status, "error": reply.error, "metrics": reply.metrics,
            "queued_s": reply.queued_s, "seconds": reply.seconds,
        })
        job.reply = reply
        job.done.set()

    def _log(self, record: dict) -> None:
        with self._lock, open(self.layout.agent_evals, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def _read_request(conn: socket.socket) -> Request:
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = conn.recv(MAX_LINE + 1 - len(data))
        except TimeoutError:
            raise Refused(f"no complete request line within {READ_TIMEOUT_S:g} s") from None
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_LINE:
            raise Refused(f"the request line is longer than {MAX_LINE} bytes")
    try:
        return Request.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Refused(f"invalid request: {where + ': ' if where else ''}{first['msg']}") from None


def _drain(conn: socket.socket) -> None:
    """Read (a bounded amount of) what the client sent beyond its request: closing a socket with unread data resets
    the connection, and the client would lose the reply."""
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(1.0)
    left = MAX_LINE
    try:
        while left > 0 and (chunk := conn.recv(min(left, 4096))):
            left -= len(chunk)
    except OSError:
        pass


def _send(conn: socket.socket, message: Progress | Reply) -> None:
    conn.sendall(message.model_dump_json().encode() + b"\n")


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def read_history(layout: RunLayout) -> list[dict]:
    """The logged requests of a run (its evaluation history), oldest first; unreadable lines are skipped."""
    from posttrainbench.workspace.records import read_records

    return read_records(layout.agent_evals) if layout.agent_evals.is_file() else []
