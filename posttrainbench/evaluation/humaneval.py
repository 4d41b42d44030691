"""HumanEval (164 problems), pass@1, every completion verified in sandboxed processes.

The original ran `prompt + completion + test + check(...)` in one process and counted exit code 0 as a pass, so a
completion that called exit(0), or returned an object whose __eq__ is always True, passed. Here the completion and
the test never share a process:

  candidate process  prompt + completion, then a loop that answers calls to the entry point
  test process       prompt + test + check(remote), where `remote` forwards each call over a pipe

The test process holds only dataset code; every value it gets back is rebuilt from JSON into builtin types (see
humaneval_rpc.py), so the asserts compare plain data. Exiting early, os._exit, patching builtins or AssertionError,
hooking the interpreter, or printing fake output can only change the candidate's own process: at worst its answers
stop, which fails the call. A sample passes only if the test process prints a random per-sample token after
check() returns and exits 0. Both processes run in the project's sandbox (posttrainbench.sandbox: an unprivileged
uid in a user namespace even when the harness is root, no capabilities, seccomp, no network, own PID namespace,
read-only root with only the interpreter mounted, private /tmp, empty environment) with CPU, memory and file-size
limits, the candidate without any new process or thread, and both are killed at a wall-clock deadline. Without
bubblewrap the same split runs unisolated, with a loud warning.
"""

import asyncio
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from inspect_ai import Task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Scorer, Target, accuracy, scorer, stderr
from inspect_ai.solver import TaskState, generate

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import fewshot, humaneval_rpc
from posttrainbench.evaluation.base import SCORER_SETUP_FAILED, EvalContext
from posttrainbench.evaluation.data import read_jsonl
from posttrainbench.sandbox import SandboxRequest, python_mounts
from posttrainbench.sandbox.confine import confine

log = logging.getLogger(__name__)

# The instruction inspect_evals' humaneval puts before each prompt.
INSTRUCTION = """
Read the following function signature and docstring, and fully implement
the function described. Your response should only contain the code for
this function.\n
"""

WALL_SECONDS = 30  # inspect_evals' VERIFY_TIMEOUT
CPU_SECONDS = 20
MEMORY_BYTES = 2 << 30
FILE_BYTES = 16 << 20


def load_samples(path: Path) -> list[Sample]:
    return [
        Sample(
            id=r["task_id"],
            input=INSTRUCTION + r["prompt"],
            target=r["canonical_solution"],
            metadata={"prompt": r["prompt"], "test": r["test"], "entry_point": r["entry_point"]},
        )
        for r in read_jsonl(path)
    ]


def build_task(ctx: EvalContext) -> Task:
    return Task(
        name="humaneval",
        dataset=MemoryDataset(load_samples(ctx.data_file("test")), name="humaneval"),
        solver=generate(),
        scorer=verify(),
    )


def demo_messages(ctx: EvalContext) -> list[fewshot.Example]:
    """Each example answers with the whole function in a fence, the form find_code reads most reliably."""
    return fewshot.turns(
        [(INSTRUCTION + d["prompt"], f"```python\n{d['prompt']}{d['completion'].rstrip()}\n```")
         for d in fewshot.demos_for(ctx)]
    )


# --- code extraction -----------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*(python3?|py)?[ \t]*\r?\n(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)


def find_code(completion: str, entry_point: str) -> str:
    """The code to put after the prompt: a whole definition of the entry point (with its imports and helpers), or
    the body that continues the prompt's signature."""
    text = completion.rsplit("</think>", 1)[-1].replace("\r\n", "\n")
    blocks = _FENCE.findall(text)
    if blocks:
        labelled = [code for label, code in blocks if label]
        candidates = labelled or [code for _, code in blocks]
        defining = [c for c in candidates if re.search(rf"^def {re.escape(entry_point)}\s*\(", c, re.MULTILINE)]
        text = (defining or candidates)[0]
    if re.search(rf"^def {re.escape(entry_point)}\s*\(", text, re.MULTILINE):
        return "\n" + text.strip("\n") + "\n"
    return text


# --- verification --------------------------------------------------------------------------------------------

_LIMITS = """import resource as _ptb_resource
for _ptb_limit, _ptb_value in {limits}:
    try:
        _ptb_resource.setrlimit(_ptb_limit, (_ptb_value, _ptb_value))
    except (ValueError, OSError):
        pass
del _ptb_resource, _ptb_limit, _ptb_value
"""


def _limits(extra: str = "") -> str:
    limits = (
        f"((_ptb_resource.RLIMIT_CPU, {CPU_SECONDS}), (_ptb_resource.RLIMIT_AS, {MEMORY_BYTES}), "
        f"(_ptb_resource.RLIMIT_FSIZE, {FILE_BYTES}), (_ptb_resource.RLIMIT_CORE, 0){extra})"
    )
    return _LIMITS.format(limits=limits)


def candidate_program(prompt: str, code: str, entry_point: str, requests: int, replies: int) -> str:
    # No new processes or threads for the candidate: RLIMIT_NPROC here, a seccomp filter under bwrap.
    source = prompt + code
    return "\n".join([
        _limits(", (_ptb_resource.RLIMIT_NPROC, 0)"),
        Path(humaneval_rpc.__file__).read_text(),
        "_ptb_namespace = {'__name__': '__main__', '__builtins__': __builtins__}",
        f"exec(compile({source!r}, 'solution.py', 'exec'), _ptb_namespace)",
        f"serve(_ptb_namespace, {entry_point!r}, {requests}, {replies})",
    ])


def test_program(prompt: str, test: str, entry_point: str, requests: int, replies: int, token: str) -> str:
    # Dataset code runs in its own namespace: prompts define names like `encode` that would shadow the RPC helpers.
    # Some tests call the entry point by name rather than through `candidate`: that name is the remote too.
    source = f"{prompt}\n{entry_point} = _ptb_remote\n{test}\ncheck(_ptb_remote)\n"
    return "\n".join([
        _limits(),
        Path(humaneval_rpc.__file__).read_text(),
        f"_ptb_remote = Remote({requests}, {replies}, time.monotonic() + {WALL_SECONDS})",
        "_ptb_namespace = {'__name__': '__main__', '__builtins__': __builtins__, '_ptb_remote': _ptb_remote}",
        f"exec(compile({source!r}, 'test.py', 'exec'), _ptb_namespace)",
        f"print({token!r}, flush=True)",
    ])


@dataclass
class Verdict:
    passed: bool
    reason: str


_warned = threading.Event()

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SANDBOX_ENV = {"PATH": "/usr/bin:/bin", **{name: "1" for name in THREAD_VARS}}


def _spawn(keep: tuple[int, ...], stdout, stderr, *, no_spawn: bool = False,
           status_fd: int | None = None) -> subprocess.Popen:
    """A sandboxed interpreter that reads its program from stdin (no file of it on disk). Under bwrap it runs like
    an agent's sandbox (unprivileged uid, no capabilities, seccomp, read-only root but a private /tmp, no network);
    `no_spawn` also denies it new processes and threads, which RLIMIT_NPROC alone does not for root; bwrap writes
    its JSON status lines to `status_fd`."""
    argv = [sys.executable, "-I", "-B", "-"]
    if shutil.which("bwrap") is None:
        if not _warned.is_set():
            _warned.set()
            message = (
                "bubblewrap (bwrap) is not installed: HumanEval completions run WITHOUT isolation (network and "
                "filesystem open to generated code). Install it: apt-get install bubblewrap"
            )
            log.warning(message)
            print(f"WARNING: {message}", file=sys.stderr)
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, pass_fds=keep,
                                start_new_session=True, cwd=tempfile.gettempdir(), env=SANDBOX_ENV)
    request = SandboxRequest(argv=argv, cwd="/tmp", mounts=python_mounts(), env=SANDBOX_ENV)
    request.validate()
    confined = confine(request, None, no_spawn=no_spawn, status_fd=status_fd)
    status = () if status_fd is None else (status_fd,)
    try:
        return subprocess.Popen(confined.argv, stdin=subprocess.PIPE, stdout=stdout, stderr=stderr,
                                pass_fds=keep + status + confined.pass_fds, start_new_session=True, env={})
    finally:
        confined.close()


def _feed(process: subprocess.Popen, program: str) -> None:
    try:
        process.stdin.write(program.encode())
        process.stdin.close()
    except OSError:
        pass  # the process died early; its exit status tells


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, 9)
    except ProcessLookupError:
        pass
    process.wait()


def run_check(prompt: str, code: str, test: str, entry_point: str) -> Verdict:
    """Run the HumanEval test of one completion; blocking."""
    token = secrets.token_hex(16)
    to_candidate_r, to_candidate_w = os.pipe()
    to_test_r, to_test_w = os.pipe()
    status_r, status_w = os.pipe()
    open_fds = [to_candidate_r, to_candidate_w, to_test_r, to_test_w, status_w]
    processes: list[subprocess.Popen] = []
    try:
        candidate = _spawn((to_candidate_r, to_test_w), subprocess.DEVNULL, subprocess.DEVNULL, no_spawn=True)
        processes.append(candidate)
        # The interpreter reads its whole program before running any of it, so this write cannot deadlock.
        program = candidate_program(prompt, code, entry_point, to_candidate_r, to_test_w)
        threading.Thread(target=_feed, args=(candidate, program), daemon=True).start()
        checker = _spawn((to_candidate_w, to_test_r), subprocess.PIPE, subprocess.PIPE, status_fd=status_w)
        processes.append(checker)
        # Only the two sandboxes may hold the pipe ends, so either side sees EOF when the other dies.
        while open_fds:
            os.close(open_fds.pop())
        checks = test_program(prompt, test, entry_point, to_candidate_w, to_test_r, token)
        try:
            out, err = checker.communicate(checks.encode(), timeout=WALL_SECONDS + 5)
        except subprocess.TimeoutExpired:
            return Verdict(False, f"timed out after {WALL_SECONDS} s")
    finally:
        for fd in open_fds:
            os.close(fd)
        for process in processes:
            _kill(process)
        status = _drain(status_r)
    # The checker and the candidate get the same sandbox; if the checker's never ran (bwrap reports an exit-code
    # only for a command it started), nothing was scored: a failure, not a wrong answer that would count 0.
    if shutil.which("bwrap") is not None and b'"exit-code"' not in status:
        reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise PtbError(f"{SCORER_SETUP_FAILED} (HumanEval): {reason[0][:300]}")
    last = out.decode(errors="replace").strip().splitlines()[-1:] or [""]
    if checker.returncode == 0 and last[0] == token:
        return Verdict(True, "")
    tail = err.decode(errors="replace").strip().splitlines()[-8:]
    return Verdict(False, "\n".join(tail) or f"test process exited with status {checker.returncode}")


_canary_passed = threading.Event()


def canary() -> None:
    """Prove, once per process, that the sandboxed interpreter runs at all (`print(1+1)` through _spawn).

    Without it an interpreter the sandbox hides (e.g. a Python environment under /tmp, which the sandbox replaces
    by an empty tmpfs) fails every sample, and an infrastructure failure reads as a model scoring 0.
    """
    if _canary_passed.is_set():
        return
    process = _spawn((), subprocess.PIPE, subprocess.PIPE)
    try:
        out, err = process.communicate(b"print(1+1)\n", timeout=120)
    except subprocess.TimeoutExpired:
        out, err = b"", b"timed out after 120 s"
    finally:
        _kill(process)
    if process.returncode != 0 or out.decode(errors="replace").strip() != "2":
        detail = (err.decode(errors="replace").strip().splitlines() or [f"exit status {process.returncode}"])[-1]
        raise PtbError(
            f"the HumanEval sandbox cannot run {sys.executable} ({detail}); nothing was scored. The interpreter "
            "must be visible inside the sandbox (not under /tmp)"
        )
    _canary_passed.set()


def _drain(fd: int) -> bytes:
    """What was written to a pipe whose writers are all gone; closes it."""
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    finally:
        os.close(fd)
    return data


_slots = threading.BoundedSemaphore(max(1, (os.cpu_count() or 2)))


def _run_limited(prompt: str, code: str, test: str, entry_point: str) -> Verdict:
    with _slots:
        started = time.monotonic()
        verdict = run_check(prompt, code, test, entry_point)
        log.debug("humaneval check took %.2f s", time.monotonic() - started)
        return verdict


@scorer(metrics=[accuracy(), stderr()])
def verify() -> Scorer:
    canary()

    async def score(state: TaskState, target: Target) -> Score:
        meta = state.metadata
        code = find_code(state.output.completion, meta["entry_point"])
        verdict = await asyncio.to_thread(_run_limited, meta["prompt"], code, meta["test"], meta["entry_point"])
        return Score(value=CORRECT if verdict.passed else INCORRECT, answer=code, explanation=verdict.reason)

    return score
