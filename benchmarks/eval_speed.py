"""Time one benchmark evaluation on a model and print samples/s and generated tokens/s.

    python benchmarks/eval_speed.py --model-path DIR --benchmark gsm8k --limit 8 --backend hf [--fewshot]

Data comes from PTB_DATA_DIR (a mirror) or the canonical sources; the base model only picks the chat template.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from posttrainbench.evaluation.runner import evaluate


def _generated_tokens(model_path: Path, logs: Path) -> int:
    """Tokens of the completions themselves: the transformers provider reports padded batch lengths instead."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    total = 0
    for log in logs.glob("*.json"):
        for sample in json.loads(log.read_text()).get("samples", []):
            completion = sample["output"]["choices"][0]["message"]["content"]
            text = completion if isinstance(completion, str) else "".join(c.get("text", "") for c in completion)
            total += len(tokenizer(text, add_special_tokens=False).input_ids)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", required=True, type=Path)
    parser.add_argument("--benchmark", default="gsm8k")
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--backend", default="auto", choices=["auto", "hf", "vllm"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--max-tokens", type=int, default=None, help="default: the benchmark's pinned budget")
    parser.add_argument("--max-connections", type=int, default=None, help="batch size (hf) or concurrency (vllm)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--fewshot", action="store_true", help="the few-shot base prompting (plain text, examples)")
    args = parser.parse_args()

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="ptb-eval-speed-") as out:
        started = time.monotonic()
        metrics = evaluate(
            args.model_path, args.benchmark, base_model=args.base_model, out_dir=Path(out), limit=args.limit,
            backend=args.backend, device=args.device, max_tokens=args.max_tokens,
            max_connections=args.max_connections, fewshot_mode=args.fewshot,
        )
        wall = time.monotonic() - started
        generated = _generated_tokens(args.model_path, Path(out) / "logs")
    seconds = metrics["eval_seconds"] or wall
    result = {
        "benchmark": metrics["benchmark"],
        "backend": metrics["backend"],
        "device": metrics["device"],
        "samples": metrics["n_samples"],
        "max_tokens": metrics["generation"]["max_tokens"],
        "max_connections": args.max_connections,
        "prompting": metrics["prompting"]["mode"],
        "eval_seconds": round(seconds, 1),
        "wall_seconds_incl_load": round(wall, 1),
        "samples_per_s": round(metrics["n_samples"] / seconds, 3),
        "generated_tokens": generated,
        "generated_tokens_per_s": round(generated / seconds, 1),
        "provider_output_tokens": metrics["output_tokens"],
        "prompt_tokens": metrics["input_tokens"],
        "accuracy": metrics["accuracy"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
