"""`accuracy_original`: the original's scorer applied to our model outputs, through the libraries it pinned.

The original scored with inspect_evals (0.3.103-era scorer code) on inspect-ai 0.3.150. Those versions live in
their own virtual environment (requirements.txt, every package pinned exactly and installed without resolving),
created on first use under PTB_CACHE, so neither our inspect-ai nor a later release can drift them. score.py runs
there as a subprocess; HumanEval's programs come back to this process and run in our sandbox
(original/sandboxed.py), never in the scorer's process.
"""

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import venv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from posttrainbench import paths
from posttrainbench.errors import PtbError

HERE = Path(__file__).parent
REQUIREMENTS = HERE / "requirements.txt"
ENTRY = HERE / "score.py"
# Benchmarks whose original scorer is library code run here; the graded ones share our grader verdicts.
BENCHMARKS = ("aime2025", "gsm8k", "gpqamain", "humaneval", "bfcl")
ENV_VAR = "PTB_ORIGINAL_SCORER_PYTHON"  # an interpreter of an environment built from requirements.txt elsewhere


def env_dir() -> Path:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    return paths.cache_dir() / "original-scorer" / digest


def python_path() -> Path:
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return env_dir() / "bin" / "python"


def is_installed() -> bool:
    return bool(os.environ.get(ENV_VAR)) or (env_dir() / "installed").is_file()


def install(quiet: bool = True) -> Path:
    """Create the pinned environment if it is missing (PyPI is needed once); returns its interpreter."""
    if is_installed():
        return python_path()
    target = env_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "installed").is_file():
            return python_path()
        venv.EnvBuilder(clear=True, with_pip=True).create(target)
        pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        # --no-deps: exactly the listed versions, nothing a resolver could pick differently later.
        result = subprocess.run(
            [*pip, *(["-q"] if quiet else []), "--no-deps", "-r", str(REQUIREMENTS)],
            capture_output=quiet, text=True,
        )
        if result.returncode != 0:
            tail = (result.stderr or "").strip().splitlines()[-3:] if quiet else []
            raise PtbError(f"installing the original-scorer environment in {target} failed: {' | '.join(tail)}")
        versions()  # proves the scorer modules import offline
        (target / "installed").write_text(REQUIREMENTS.read_text())
    return python_path()


def _env() -> dict:
    # Offline: the scorer modules need no network and must not fetch anything.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "INSPECT_DISABLE_TELEMETRY": "1", "HOME": os.environ.get("HOME", "/root"), "PYTHONHASHSEED": "0"}


def versions() -> dict[str, str]:
    """inspect-ai and inspect-evals versions of the original-scorer environment."""
    result = subprocess.run(
        [str(python_path()), "-I", str(ENTRY), "--versions"], capture_output=True, text=True, env=_env(), timeout=600
    )
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
        raise PtbError(f"the original-scorer environment ({python_path()}) does not run: {tail[0]}")
    return json.loads(result.stdout)


@dataclass
class Verdict:
    id: str | int
    correct: bool
    answer: str | None


def score(records: Iterable[dict]) -> list[Verdict]:
    """The original's verdict for each record (see score.py for the record layout).

    Raises PtbError when the environment or a sandboxed program cannot run: an infrastructure failure is never a
    wrong answer.
    """
    from posttrainbench.evaluation.original.sandboxed import run_program

    process = subprocess.Popen(
        [str(python_path()), "-I", str(ENTRY)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=_env(), bufsize=1,
    )
    verdicts = []
    try:
        for record in records:
            process.stdin.write(json.dumps(record) + "\n")
            process.stdin.flush()
            while True:
                line = process.stdout.readline()
                if not line:
                    raise PtbError(f"the original scorer stopped on item {record.get('id')!r} "
                                   f"(exit status {process.wait()}); see its stderr above")
                message = json.loads(line)
                if "exec" in message:
                    reply = run_program(message["exec"]["cmd"], message["exec"]["timeout"])
                    process.stdin.write(json.dumps(reply) + "\n")
                    process.stdin.flush()
                    continue
                verdicts.append(Verdict(message["id"], message["value"] == "C", message.get("answer")))
                break
    finally:
        process.stdin.close()
        if process.wait(timeout=60) != 0 and sys.exc_info()[0] is None:
            raise PtbError(f"the original scorer exited with status {process.returncode}")
    return verdicts


def record_of(benchmark: str, sample) -> dict:
    """score.py's record for one inspect EvalSample of our evaluation."""
    message = sample.output.message if sample.output and sample.output.choices else None
    calls = [{"function": c.function, "arguments": c.arguments}
             for c in (message.tool_calls or []) if not c.parse_error] if message is not None else []
    target = sample.target if isinstance(sample.target, str) else "".join(sample.target)
    return {
        "benchmark": benchmark, "id": sample.id, "completion": sample.output.completion if sample.output else "",
        "target": target, "metadata": dict(sample.metadata or {}), "choices": sample.choices,
        "tool_calls": calls or None,
    }


def our_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("posttrainbench", "inspect_ai"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:  # run from a source tree that was never installed
            found[name] = "not installed"
    return found


def _correct(value) -> float:
    return 1.0 if value in ("C", 1, 1.0, True) else 0.0


def summarize(benchmark: str, log, out_dir: Path, accuracy: float | None = None) -> dict:
    """metrics.json fields beside `accuracy`: `accuracy_original`, the scorers' versions, and items.jsonl (per
    item: ours and the original's verdict). Without the pinned environment, or when it fails (e.g. the sandbox
    canary), `accuracy_original` is null and says why; it is never installed from inside an evaluation."""
    fields: dict = {"scorer_versions": {"ours": our_versions()}}
    if benchmark not in BENCHMARKS:
        # Arena-Hard and HealthBench aggregate the shared grader verdicts exactly as the original did.
        fields.update(accuracy_original=accuracy, accuracy_original_note=(
            "graded benchmark: the original's aggregation of the same grader verdicts"))
        return fields
    samples = [s for s in log.samples or [] if s.scores]
    ours = {s.id: _correct(next(iter(s.scores.values())).value) for s in samples}
    original: dict = {}
    if not is_installed():
        fields.update(accuracy_original=None, accuracy_original_note=(
            "original-scorer environment not installed: run `ptb original-scorer`"))
    else:
        try:
            verdicts = score(record_of(benchmark, s) for s in samples)
            fields["scorer_versions"]["original"] = versions()
        except PtbError as exc:
            # our accuracy stands; the original's is missing, and says why, rather than partly counted
            print(f"error: accuracy_original not computed: {exc}", file=sys.stderr)
            fields.update(accuracy_original=None, accuracy_original_note=f"original scorer failed: {exc}")
        else:
            original = {v.id: float(v.correct) for v in verdicts}
            fields["accuracy_original"] = sum(original.values()) / len(original) if original else None
    with (out_dir / "items.jsonl").open("w") as handle:
        for item, value in ours.items():
            handle.write(json.dumps({"id": item, "accuracy": value, "accuracy_original": original.get(item)}) + "\n")
    return fields
