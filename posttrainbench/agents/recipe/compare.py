"""Score candidates with the task's own evaluate.py, as an agent would, to keep the better one."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from posttrainbench.agents.recipe import log
from posttrainbench.agents.recipe.budget import hms


def run_evaluate(task_dir: Path, model_path: Path, limit: int, timeout_s: float, out_json: Path,
                 env: dict[str, str] | None = None) -> float | None:
    """Accuracy of `model_path` on the first `limit` items, or None when the run fails or overruns."""
    out_json.unlink(missing_ok=True)
    cmd = [sys.executable, "evaluate.py", "--model-path", str(model_path), "--limit", str(limit),
           "--json-output-file", str(out_json)]
    log(f"evaluating {model_path.name} on {limit} items (at most {hms(timeout_s)}): {' '.join(cmd[1:])}")
    # own session: evaluate.py may start an inference server, and a timeout must take all of it down
    proc = subprocess.Popen(cmd, cwd=task_dir, start_new_session=True, env=env)
    try:
        rc = proc.wait(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log(f"evaluate.py ran out of time on {model_path.name}")
        return None
    if rc != 0 or not out_json.is_file():
        log(f"evaluate.py failed on {model_path.name} (exit {rc})")
        return None
    try:
        return float(json.loads(out_json.read_text())["accuracy"])
    except (ValueError, KeyError, TypeError):
        log(f"evaluate.py wrote no accuracy to {out_json}")
        return None


def keep_better(task_dir: Path, final: Path, make_base, limit: int, deadline: float, work: Path,
                env: dict[str, str] | None = None) -> None:
    """Evaluate the trained model, then (if time allows) the base model packaged the same way; if the base
    scores higher, it becomes final_model. `make_base(path)` writes that packaged base model."""
    start = time.monotonic()
    trained = run_evaluate(task_dir, final, limit, (deadline - start) * 0.45, work / "eval_trained.json", env)
    if trained is None:
        log("keeping the trained model (no evaluation result)")
        return
    took = time.monotonic() - start
    log(f"trained model: accuracy {trained:.4f} on {limit} items ({hms(took)})")
    left = deadline - time.monotonic()
    if left < 1.3 * took:
        log(f"{hms(left)} left is too little to evaluate the base model as well; keeping the trained model")
        return
    base = work / "base_model"
    make_base(base)
    base_score = run_evaluate(task_dir, base, limit, deadline - time.monotonic(), work / "eval_base.json",
                              env)
    if base_score is None:
        log("keeping the trained model (the base model could not be scored)")
        return
    log(f"base model: accuracy {base_score:.4f}; trained model: {trained:.4f}")
    if base_score > trained:
        log("the base model scores higher: submitting it as final_model")
        old = final.with_name(f".{final.name}.old")
        final.rename(old)
        base.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        log("the trained model scores at least as well: keeping it")
