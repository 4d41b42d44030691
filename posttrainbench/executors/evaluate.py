"""The harness's evaluations: the base model (cached: every run of a model on a benchmark shares it) and the
agent's vetted final_model. Each runs in a child process so that a crash or OOM there cannot take the harness
down, and its output streams to a log file; the agent's model's child runs in a sandbox (evaluate_model)."""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from posttrainbench import paths, units
from posttrainbench.evaluation.progress import reporting
from posttrainbench.executors.facts import OOM_EXIT, EvaluationFailed
from posttrainbench.workspace.layout import RunLayout
from posttrainbench.workspace.manifest import RunManifest

# Evaluation reads local folders only; without this the hub client retries DNS lookups for every sample.
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# The wall clock of the sandboxed evaluation of the agent's model: a hung one must not hold the run forever.
FINAL_TIME_LIMIT_S = 12 * 3600

CHILD = """
import json, sys, traceback
from pathlib import Path
from posttrainbench.errors import PtbError
from posttrainbench.evaluation.grader import grader_from_env
import posttrainbench.evaluation.progress_hook  # registers the hook that prints progress lines
from posttrainbench.evaluation.runner import evaluate
from posttrainbench.specs import get_benchmark
args = json.loads(sys.argv[1])
try:
    if get_benchmark(args["benchmark"]).grader:
        args["grader"] = grader_from_env(args.pop("grader_model", None))
    evaluate(Path(args.pop("model_path")), args.pop("benchmark"), out_dir=Path(args.pop("out_dir")), **args)
except PtbError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(3)
except BaseException as exc:
    torch = sys.modules.get("torch")
    if isinstance(exc, MemoryError) or (torch is not None and isinstance(exc, torch.OutOfMemoryError)):
        traceback.print_exc()
        sys.exit(OOM_EXIT)
    raise
""".replace("OOM_EXIT", str(OOM_EXIT))


def run_evaluation(model_path: Path, benchmark: str, *, base_model: str, out_dir: Path, limit: int | None,
                   max_tokens: int | None = None, fewshot_mode: bool = False, shots: int | None = None,
                   label: str = "the model", metadata: dict | None = None, settings: dict | None = None,
                   log: Callable[[str], None] = print, state_file: Path | None = None) -> dict:
    """`metadata` (run_id, agent, label: base/final/baseline) goes into the inspect log with the real model path;
    `settings` are further runner arguments (EvalSettings.runner_args); `state_file` keeps the latest progress
    (progress.ProgressReporter) while it runs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = {"model_path": str(model_path), "benchmark": benchmark, "out_dir": str(out_dir),
            "base_model": base_model, "limit": limit, "max_tokens": max_tokens, "metadata": metadata or {},
            **(settings or {})}
    if fewshot_mode:
        args.update(fewshot_mode=True, shots=shots)
    log_path = out_dir / "evaluate.log"
    log(f"evaluating {label} on {benchmark}; its log: {log_path}")
    last_error = ""
    with open(log_path, "w") as log_file, reporting(label, log, state_file) as progress:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1, env=os.environ | OFFLINE)
        for line in proc.stdout:
            if progress.feed(line):
                continue
            log_file.write(line)
            log_file.flush()
            if line.startswith("error: "):
                last_error = line.removeprefix("error: ").strip()
        proc.wait()
    metrics_file = out_dir / "metrics.json"
    if proc.returncode != 0 or not metrics_file.is_file():
        reason = last_error or f"evaluation exited with code {proc.returncode}; see {log_path}"
        raise EvaluationFailed(f"evaluating {label} on {benchmark} failed: {reason}", proc.returncode)
    metrics = json.loads(metrics_file.read_text())
    log(f"{benchmark} accuracy of {label}: {units.percent(metrics['accuracy'])} on "
        f"{units.count(metrics.get('n_samples'))} items")
    return metrics


def _base_key(manifest: RunManifest) -> str:
    parts = [manifest.model.model_dump(), manifest.benchmark.model_dump(), manifest.spec.limit, manifest.spec.max_tokens,
             manifest.versions.get("posttrainbench")]
    evaluation = manifest.spec.evaluation.runner_args()
    if evaluation:  # default settings keep the key that cached scores were stored under
        parts.append(evaluation)
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def evaluate_base(manifest: RunManifest, layout: RunLayout, *, log: Callable[[str], None] = print) -> dict:
    """The base model's score on the same items: the stand-in score when the agent's model can't be used."""
    cached = paths.cache_dir() / "baselines" / manifest.model.id / manifest.benchmark.id / _base_key(manifest)
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Runs of a grid share this cache and start together: one evaluates, the others wait for its result.
    with open(cached.with_name(cached.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cached / "metrics.json").is_file():
            tmp = cached.with_name(cached.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            run_evaluation(Path(manifest.base_model_dir), manifest.benchmark.id, base_model=manifest.model.id,
                           out_dir=tmp, limit=manifest.spec.limit, max_tokens=manifest.spec.max_tokens,
                           label=f"the base model {manifest.model.id}",
                           metadata={"label": "base", "run_id": manifest.run_id},
                           settings=manifest.spec.evaluation.runner_args(), log=log, state_file=layout.progress)
            shutil.rmtree(cached, ignore_errors=True)
            tmp.rename(cached)
        else:
            log(f"base score of {manifest.model.id} on {manifest.benchmark.id}: from cache")
    dest = layout.results("base")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(cached, dest)
    return json.loads((dest / "metrics.json").read_text())


def evaluate_model(manifest: RunManifest, model_path: Path, out_dir: Path, *, backend: str | None = None,
                   log: Callable[[str], None] = print, state_file: Path | None = None) -> dict:
    """The agent's model is hostile input (its config, tokenizer and weights steer the evaluation), so it is
    evaluated like the evaluation service does: in a sandbox of its own as an unprivileged uid, no network but the
    grader link, model and test data read-only, the run's GPUs (evaluation/sandboxed.py). The runner's output lies
    in out_dir/out/result, its log in out_dir/evaluate.log; out_dir/metrics.json is the harness's copy. Its
    progress lines are shown through `log` (and kept in `state_file`), read strictly: they come from inside the sandbox."""
    from posttrainbench.agents.launch import _gpu_indices, evaluation_env
    from posttrainbench.evaluation.sandboxed import SandboxedEvaluation

    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    evaluator = SandboxedEvaluation(manifest, backend=backend or manifest.spec.sandbox,
                                    gpus=_gpu_indices(manifest.spec.gpus), env=evaluation_env(),
                                    deadline=time.time() + FINAL_TIME_LIMIT_S)
    settings = {"limit": manifest.spec.limit, "max_tokens": manifest.spec.max_tokens,
                "metadata": {"label": "final", "run_id": manifest.run_id, "agent": manifest.spec.agent.name},
                **manifest.spec.evaluation.runner_args()}
    log(f"evaluating the agent's model on {manifest.benchmark.id} in a sandbox; its log: {out_dir / 'evaluate.log'}")
    try:
        with reporting("the agent's model", log, state_file) as progress:
            metrics = evaluator.evaluate(model_path, out_dir, settings, time_limit_s=FINAL_TIME_LIMIT_S,
                                         on_line=progress.feed)
    except EvaluationFailed as exc:
        raise EvaluationFailed(f"evaluating the agent's model on {manifest.benchmark.id} failed: {exc}",
                               exc.returncode, status=exc.status) from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("accuracy"), int | float):
        raise EvaluationFailed(f"evaluating the agent's model on {manifest.benchmark.id} gave no accuracy", 0)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log(f"{manifest.benchmark.id} accuracy of the agent's model: {units.percent(metrics['accuracy'])} on "
        f"{units.count(metrics.get('n_samples'))} items")
    return metrics
