"""One `vllm serve` per evaluation, started and watched by us rather than by inspect-ai.

Why not inspect's own start-up: it imports vllm in this interpreter (the CPU build lives in its own venv because it
pins other torch/transformers versions), waits a fixed time, and cannot tell a crash from a slow start. Here the
server runs in its own process group on 127.0.0.1 with a random API key, its output goes to a log file, start-up
fails fast when the process exits (with the reason taken from its log), and a watchdog stops a generation phase
that runs past a deadline scaled to the workload, so that no evaluation can hang.
"""

import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from posttrainbench import untrusted
from posttrainbench.errors import PtbError

# The executable to run as `vllm`: a path or a name on PATH (e.g. a venv's vllm for the CPU build).
ENV_VLLM = "PTB_VLLM"
# Seconds `vllm serve` may take to answer; loading and compiling a 4B model cold takes a few minutes.
STARTUP_TIMEOUT_S = 1200.0
# KV cache of a CPU server: 2 GiB hold ~45k tokens of the demo model in float32.
CPU_KV_CACHE_BYTES = 2 * 2**30

_OOM = re.compile(
    r"out of memory|OutOfMemoryError|No available memory for the cache blocks|"
    r"less than desired GPU memory utilization|Free memory on device .* is less than|"
    r"larger than the available KV cache memory|KV cache .* is needed, which is larger",
    re.IGNORECASE,
)
_ERROR_LINE = re.compile(r"(Error|Exception|error:)", re.IGNORECASE)


class ServerStartError(PtbError):
    """`vllm serve` exited or timed out before it answered."""

    def __init__(self, message: str, *, out_of_memory: bool):
        super().__init__(message)
        self.out_of_memory = out_of_memory


def vllm_command() -> list[str] | None:
    """How to run `vllm`: $PTB_VLLM, else `vllm` on PATH, else the vllm package in this interpreter."""
    wanted = os.environ.get(ENV_VLLM)
    if wanted:
        found = shutil.which(wanted)
        if found is None:
            raise PtbError(f"{ENV_VLLM}={wanted} is not an executable")
        return [found]
    found = shutil.which("vllm")
    if found:
        return [found]
    if importlib.util.find_spec("vllm") is not None:
        return [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    return None


def require_vllm() -> list[str]:
    """`vllm_command()`, or the one error every caller that needs vLLM gives."""
    command = vllm_command()
    if command is None:
        raise PtbError(f"backend vllm asked for but vllm is not installed (pip install 'posttrainbench[vllm]', "
                       f"or set {ENV_VLLM} to a vllm executable)")
    return command


def generation_deadline_s(n_items: int, max_tokens: int, connections: int, device: str) -> float:
    """A generous bound on one generation phase: every item at max_tokens, at a floor throughput per stream.

    The floors (20 tok/s per stream on a GPU, 1 on a CPU, at most 64 streams counted) lie far below what vLLM
    does, so the bound only ends phases that stopped making progress; the original used a fixed 8 hours.
    """
    per_stream = 20.0 if device.startswith("cuda") else 1.0
    streams = max(1, min(connections, n_items, 64))
    return 600.0 + n_items * max_tokens / (per_stream * streams)


def server_args(
    *,
    chat_template: Path,
    seed: int | None,
    device: str,
    gpu_memory_utilization: float | None,
    extra: dict,
) -> list[str]:
    """`vllm serve` flags: our chat template and sampling defaults, prefix caching, and the benchmark's extras."""
    args = {
        "chat_template": str(chat_template),
        # the checkpoint's generation_config.json must not change sampling
        "generation_config": "vllm",
        "enable_prefix_caching": True,
        "disable_uvicorn_access_log": True,
    }
    if seed is not None:
        args["seed"] = seed
    if device.startswith("cuda"):
        if gpu_memory_utilization:
            args["gpu_memory_utilization"] = gpu_memory_utilization
    else:
        args["dtype"] = "float32"  # as the transformers backend on CPU: bf16 there is slow and on some CPUs inexact
        # on CPU the memory share means host RAM (0.92 by default): give the KV cache a fixed size instead
        args["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
        # torch.compile of the model took 6 of the 9.5 minutes a CPU start-up took here (2 cores): far more than
        # the short evaluations a CPU runs
        args["enforce_eager"] = True
    args.update(extra)
    flags: list[str] = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not False and value is not None:
            flags += [flag, str(value)]
    return flags


@dataclass
class Starting:
    """A server loading in the background: `ready` is set once it answered (`seconds` after its launch, at
    `answered_at` on the monotonic clock) or failed to (`error`)."""

    ready: threading.Event = field(default_factory=threading.Event)
    error: ServerStartError | None = None
    seconds: float | None = None
    answered_at: float | None = None
    _leader: object = None  # the anyio.Event the other waiters of one event loop wait on

    async def wait_async(self) -> None:
        """Wait without blocking the event loop: one waiter waits on a thread, the others on an event it sets."""
        import anyio

        while not self.ready.is_set():
            if self._leader is None:
                self._leader = leader = anyio.Event()
                try:
                    await anyio.to_thread.run_sync(self.ready.wait, abandon_on_cancel=True)
                finally:
                    self._leader = None
                    leader.set()
            else:
                await self._leader.wait()


@dataclass
class VllmServer:
    """A `vllm serve` process for one model folder, started in the background (`start`)."""

    model_dir: Path
    flags: list[str]
    log_path: Path
    device: str = "cuda"
    startup_timeout_s: float = STARTUP_TIMEOUT_S
    served_name: str = ""
    api_key: str = field(default_factory=lambda: secrets.token_hex(16))
    port: int = 0
    timed_out: bool = False
    _proc: subprocess.Popen | None = None
    _watchdog: threading.Timer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, deadline_s: float) -> "Starting":
        """Launch the server and wait for it on a thread; the returned Starting tells when it answered or why it
        did not. Once it answers, the watchdog is armed for `deadline_s` (see `arm`)."""
        starting = Starting()
        started = self._launch()

        def wait() -> None:
            try:
                self._wait(started)
                starting.answered_at = time.monotonic()
                starting.seconds = starting.answered_at - started
                self.arm(deadline_s)
            except ServerStartError as exc:
                starting.error = exc
            finally:
                starting.ready.set()

        threading.Thread(target=wait, name="vllm-serve-start", daemon=True).start()
        return starting

    def _launch(self) -> float:
        command = require_vllm()
        self.port = _free_port()
        # a name per server: inspect keeps a process-wide table of vLLM endpoints keyed by the model name
        self.served_name = f"ptb-eval-{self.port}"
        argv = [*command, "serve", str(self.model_dir), "--host", "127.0.0.1", "--port", str(self.port),
                "--served-model-name", self.served_name, *self.flags]
        env = os.environ.copy()
        env["VLLM_API_KEY"] = self.api_key  # not on the command line, where `ps` would show it
        if not self.device.startswith("cuda"):
            env.setdefault("VLLM_TARGET_DEVICE", "cpu")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=env, start_new_session=True, preexec_fn=_die_with_parent)
        return started

    def _wait(self, started: float) -> None:
        proc = self._proc
        while True:
            code = proc.poll() if proc is not None else -1
            if code is not None:
                self._proc = None
                raise self._start_error(f"vllm serve exited with code {code} during start-up")
            if self._answers():
                break
            if time.monotonic() - started > self.startup_timeout_s:
                self.stop()
                raise self._start_error(f"vllm serve did not answer within {self.startup_timeout_s:.0f} s")
            time.sleep(0.5)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def arm(self, seconds: float) -> None:
        """Stop the server after `seconds` unless disarmed: in-flight requests then fail instead of hanging."""
        self.disarm()
        self.timed_out = False

        def expire() -> None:
            self.timed_out = True
            self.stop()

        self._watchdog = threading.Timer(seconds, expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def failure(self) -> str | None:
        """Why the server is gone, or None while it runs."""
        if self.timed_out:
            return "the generation phase ran past its deadline and vllm serve was stopped"
        if self._proc is not None and self._proc.poll() is not None:
            return f"vllm serve died (exit code {self._proc.returncode}): {self.log_reason()}"
        return None

    def log_reason(self) -> str:
        """The most telling line of the server's log: an out-of-memory line, else the last error line."""
        lines = _tail(self.log_path)
        for line in reversed(lines):
            if _OOM.search(line):
                return line
        for line in reversed(lines):
            if _ERROR_LINE.search(line):
                return line
        return lines[-1] if lines else "no output"

    def out_of_memory(self) -> bool:
        return any(_OOM.search(line) for line in _tail(self.log_path))

    def stop(self) -> None:
        """SIGTERM the server's process group (API server and engine), SIGKILL what is left after 30 s."""
        proc = self._proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        # the engine process holds the GPU memory: wait for the whole group, not only the API server
        while time.monotonic() < deadline and _group_alive(proc):
            time.sleep(0.2)
        if _group_alive(proc):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()

    def close(self) -> None:
        self.disarm()
        self.stop()
        self._proc = None

    def _answers(self) -> bool:
        request = urllib.request.Request(f"{self.base_url}/models",
                                         headers={"Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _start_error(self, what: str) -> ServerStartError:
        reason = self.log_reason()
        return ServerStartError(f"{what}: {reason} (log: {self.log_path})", out_of_memory=self.out_of_memory())


def _tail(path: Path, lines: int = 200) -> list[str]:
    try:
        text = path.read_bytes()[-65536:].decode("utf-8", "replace")
    except OSError:
        return []
    # the log holds model output only indirectly (the model's own files can make the loader print): keep it printable
    return [untrusted.clean_text(line.strip(), limit=300) for line in text.splitlines() if line.strip()][-lines:]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the evaluating process dies, so no server outlives it on the GPU."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _group_alive(proc: subprocess.Popen) -> bool:
    proc.poll()  # reap the leader, so that a finished group does not look alive
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
