"""What the evaluation service of test access `hidden` adds to one evaluation of the agent's evaluate.py.

    python benchmarks/eval_service.py --repeat 3                      # CPU: the overheads alone
    python benchmarks/eval_service.py --real --benchmark gsm8k --limit 32 --model qwen3-1.7b-base   # GPU machine

Overheads, measured on a prepared run with the base model submitted as task/final_model:
- `service_start_s` / `service_close_s`: opening the socket and threads / closing them;
- `admit_s`: from the request to the evaluation's start: path checks, the vetted copy of the weights (collect's
  checks, sha256 of every file) and the queue, with `copy_mb_s` the copy's rate;
- `roundtrip_s`: client to service and back, minus the (scripted, instant) evaluation;
- `sandbox_s`: a sandbox laid out like the service's (no network, python, model, data, output) running an
  interpreter that imports what the evaluation child imports, minus the same command without a sandbox.
With --real, one real evaluation through the service (the agent's path) against the harness's own evaluation of
the same checkpoint with the same settings: the difference is what the service costs on that machine.
"""

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from posttrainbench import models, sandbox
from posttrainbench.agents.launch import evaluation_env
from posttrainbench.evaluation.protocol import Reply, Request
from posttrainbench.evaluation.runner import evaluate
from posttrainbench.evaluation.sandboxed import INSIDE_DATA, INSIDE_MODEL, INSIDE_OUT
from posttrainbench.evaluation.service import EvalService
from posttrainbench.specs import AgentSpec, RunSpec, get_model
from posttrainbench.workspace.layout import RunLayout
from posttrainbench.workspace.prepare import prepare

IMPORTS = "import torch, transformers, inspect_ai, posttrainbench.evaluation.runner"


def ask(service: EvalService, request: Request) -> Reply:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(service.socket_path))
        conn.sendall(request.model_dump_json().encode() + b"\n")
        lines = conn.makefile("rb").read().splitlines()
    return Reply.model_validate_json(lines[-1])


def prepared(folder: Path, model: str, benchmark: str) -> tuple:
    spec = RunSpec(agent=AgentSpec(scaffold="command", command=["true"]), model=model, benchmark=benchmark,
                   hours=1, gpus=0, network="offline")
    manifest = prepare(spec, runs_dir=folder)
    layout = RunLayout(folder / manifest.run_id)
    shutil.copytree(manifest.base_model_dir, layout.submitted_model)
    return manifest, layout


def overheads(manifest, layout, repeat: int) -> dict:
    started_at = {}

    def instant(job, cancelled):
        started_at[job.number] = time.monotonic()
        return {"accuracy": 0.0, "stderr": 0.0, "n_samples": 0}

    size = sum(p.stat().st_size for p in layout.submitted_model.iterdir())
    t0 = time.monotonic()
    service = EvalService(manifest, layout, deadline=time.time() + 3600, evaluator=instant).__enter__()
    start = time.monotonic() - t0
    admits, roundtrips = [], []
    for number in range(1, repeat + 1):
        sent = time.monotonic()
        reply = ask(service, Request())
        back = time.monotonic()
        assert reply.status == "ok", reply.error
        admits.append(started_at[number] - sent)
        roundtrips.append(back - started_at[number])
    t0 = time.monotonic()
    service.close()
    close = time.monotonic() - t0
    admit = statistics.median(admits)
    return {"checkpoint_mb": round(size / 1e6, 1), "service_start_s": round(start, 3), "admit_s": round(admit, 3),
            "copy_mb_s": round(size / 1e6 / admit, 1), "roundtrip_s": round(statistics.median(roundtrips), 3),
            "service_close_s": round(close, 3)}


def sandbox_start(manifest, layout, repeat: int) -> dict:
    out = layout.root / "bench-out"
    out.mkdir(exist_ok=True)
    request = sandbox.SandboxRequest(
        argv=[sys.executable, "-c", IMPORTS], cwd=INSIDE_OUT,
        mounts=[*sandbox.python_mounts(), sandbox.Mount(layout.submitted_model, INSIDE_MODEL),
                sandbox.Mount(Path(manifest.data_dir), INSIDE_DATA), sandbox.Mount(out, INSIDE_OUT, writable=True)],
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": INSIDE_OUT}, network="none")
    inside, outside = [], []
    for _ in range(repeat):
        t0 = time.monotonic()
        info = sandbox.run(request, backend="bwrap", time_limit_s=600, log_path=out / "log", grace_s=1)
        inside.append(time.monotonic() - t0)
        assert info.status == "finished", info.detail
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", IMPORTS], check=True)
        outside.append(time.monotonic() - t0)
    return {"sandboxed_imports_s": round(statistics.median(inside), 3),
            "plain_imports_s": round(statistics.median(outside), 3),
            "sandbox_s": round(statistics.median(inside) - statistics.median(outside), 3)}


def real(manifest, layout, args) -> dict:
    defaults = manifest.benchmark.agent_defaults
    settings = {"limit": args.limit, "max_tokens": args.max_tokens or defaults.max_tokens,
                "max_connections": defaults.max_connections, "gpu_memory_utilization": defaults.gpu_memory_utilization}
    gpus = list(range(args.gpus))
    with EvalService(manifest, layout, deadline=time.time() + 3 * 3600, gpus=gpus, env=evaluation_env()) as service:
        t0 = time.monotonic()
        reply = ask(service, Request(**settings))
        through_service = time.monotonic() - t0
    assert reply.status == "ok", reply.error
    t0 = time.monotonic()
    direct = evaluate(layout.submitted_model, manifest.benchmark.id, base_model=manifest.model.id,
                      out_dir=layout.root / "direct", **settings)
    harness = time.monotonic() - t0
    return {"service_s": round(through_service, 1), "harness_s": round(harness, 1),
            "added_s": round(through_service - harness, 1), "service_accuracy": reply.metrics["accuracy"],
            "harness_accuracy": direct["accuracy"], "settings": settings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="catalog id; its base weights are submitted")
    parser.add_argument("--benchmark", default="gsm8k")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--real", action="store_true", help="also one real evaluation through the service")
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--gpus", type=int, default=1, help="with --real: GPUs given to the service's sandbox")
    args = parser.parse_args()
    models.fetch(get_model(args.model), progress=False)
    with tempfile.TemporaryDirectory(prefix="ptb-bench-") as tmp:
        manifest, layout = prepared(Path(tmp), args.model, args.benchmark)
        result = {"overheads": overheads(manifest, layout, args.repeat),
                  "sandbox": sandbox_start(manifest, layout, args.repeat)}
        if args.real:
            result["real"] = real(manifest, layout, args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
