"""evaluate.py with test access `hidden`: the same flags and summary as the local runner, but the evaluation runs in
the harness's service outside the sandbox, reached over a unix socket. Only metrics come back."""

import argparse
import json
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from posttrainbench.evaluation.protocol import MAX_LINE, Progress, Reply, Request


def _parser(benchmark: str, defaults: dict) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=f"Evaluate a model on {benchmark} through the harness's evaluation service (the test items stay "
                    "outside this machine; you get the metrics).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model-path", default="final_model", help="model directory inside your task or home dir")
    parser.add_argument("--limit", type=int, default=defaults["limit"],
                        help="evaluate only the first N items; -1 = all")
    parser.add_argument("--json-output-file", default=None, help="also write the metrics here")
    parser.add_argument("--max-tokens", type=int, default=defaults["max_tokens"])
    parser.add_argument("--max-connections", type=int, default=defaults["max_connections"],
                        help="concurrent requests (vLLM) or batch size (transformers)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=defaults["gpu_memory_utilization"])
    parser.add_argument("--templates-dir", default=None,
                        help="accepted for compatibility; the chat template is chosen by the base model")
    parser.add_argument("--out-dir", default=None,
                        help="where metrics.json goes (default: eval_results/<benchmark>-<time>)")
    return parser


def _exchange(socket_path: str, request: Request) -> Reply:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(socket_path)
        conn.sendall(request.model_dump_json().encode() + b"\n")
        reader = conn.makefile("rb")
        while True:
            line = reader.readline(MAX_LINE)
            if not line:
                raise ConnectionError("the evaluation service closed the connection without an answer")
            data = json.loads(line)
            if "ahead" in data:
                progress = Progress.model_validate(data)
                if progress.status == "queued" and progress.ahead:
                    print(f"waiting for {progress.ahead} earlier evaluation(s) of this run to finish "
                          "(your clock keeps running)", file=sys.stderr, flush=True)
                elif progress.status == "running":
                    print("evaluating…", file=sys.stderr, flush=True)
                continue
            return Reply.model_validate(data)


def main(argv: list[str], *, benchmark: str, base_model: str, socket_path: str, defaults: dict) -> int:
    args = _parser(benchmark, defaults).parse_args(argv)
    try:
        request = Request(model_path=args.model_path, limit=args.limit if args.limit and args.limit > 0 else None,
                          max_tokens=args.max_tokens, max_connections=args.max_connections,
                          gpu_memory_utilization=args.gpu_memory_utilization)
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"error: --{str(first['loc'][0]).replace('_', '-')}: {first['msg']}", file=sys.stderr)
        return 2
    try:
        reply = _exchange(socket_path, request)
    except (OSError, ValueError) as exc:
        print(f"error: cannot reach the evaluation service at {socket_path}: {exc}", file=sys.stderr)
        return 2
    if reply.status != "ok":
        print(f"error: {reply.error}", file=sys.stderr)
        return 2
    metrics = {**reply.metrics, "benchmark": benchmark, "base_model": base_model, "model_path": args.model_path,
               "limit": request.limit, "generation": reply.settings, "checkpoint_sha256": reply.checkpoint_sha256,
               "test_access": "hidden", "queued_s": reply.queued_s, "seconds": reply.seconds}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(args.out_dir or f"eval_results/{benchmark}-{stamp}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if args.json_output_file:
        Path(args.json_output_file).write_text(json.dumps(metrics, indent=2))
    print(f"{benchmark} accuracy: {metrics['accuracy']:.4f} (stderr {metrics['stderr'] or 0:.4f}, "
          f"n={metrics['n_samples']}) — details in {out_dir}/metrics.json")
    return 0
