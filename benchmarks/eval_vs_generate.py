"""Our transformers evaluation against one plain `model.generate` call on the same prompts (target >= 0.9x).

    PTB_CACHE=~/.cache/ptb-test PTB_DATA_DIR=/work/shared/data \\
        python benchmarks/eval_vs_generate.py --benchmark gsm8k --limit 16 --max-tokens 64

The evaluation runs in a fresh process, as the harness runs it (the first evaluation of a process is the one
that stalled), through `evaluate()`; its time is inspect's own (task start to end, the model load excluded). The
plain side loads the same checkpoint in float32, renders the prompts the evaluation logged with the same chat
template, and generates them as one left-padded batch under the pinned sampling settings. The two alternate
(--rounds) in one invocation, so compare within a run, round by round; the load average is printed with them.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVALUATE = """
import json, sys
from pathlib import Path
from posttrainbench.evaluation.runner import evaluate
args = json.loads(sys.argv[1])
metrics = evaluate(Path(args["model"]), args["benchmark"], base_model=args["base_model"], out_dir=Path(args["out"]),
                   limit=args["limit"], max_tokens=args["max_tokens"], max_connections=args["limit"],
                   backend="hf", device="cpu")
print(json.dumps({"eval_seconds": metrics["eval_seconds"], "n": metrics["n_samples"],
                  "batches": metrics["attempts"][-1].get("batches")}))
"""


def _prompts(logs: Path) -> list[list[dict]]:
    """The conversations the evaluation sent to the model, in sample order."""
    log = json.loads(next(logs.glob("*.json")).read_text())
    conversations = []
    for sample in sorted(log["samples"], key=lambda s: s["id"]):
        messages = [m for m in sample["messages"] if m["role"] != "assistant"]
        conversations.append([{"role": m["role"], "content": _text(m["content"])} for m in messages])
    return conversations


def _text(content) -> str:
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def _plain_generate(model_path: Path, base_model: str, benchmark: str, conversations: list, max_tokens: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from posttrainbench.evaluation.chat_templates import chat_template
    from posttrainbench.evaluation.runner import _hf_generation_config, _stop_token_ids
    from posttrainbench.specs import get_benchmark, get_model

    template = chat_template(get_model(base_model))
    stops, pad, bos = _stop_token_ids(model_path, template)
    pinned = get_benchmark(benchmark).generation.model_copy(update={"max_tokens": max_tokens})
    config = GenerationConfig(**_hf_generation_config(pinned, max_tokens, stops, pad, bos))
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, use_safetensors=True)
    texts = [
        tokenizer.apply_chat_template(c, chat_template=template.text, add_generation_prompt=True, tokenize=False,
                                      enable_thinking=True)
        for c in conversations
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)
    started = time.monotonic()
    with torch.inference_mode():
        out = model.generate(**batch, generation_config=config)
    seconds = time.monotonic() - started
    return {"seconds": round(seconds, 2), "prompt_tokens_padded": int(batch.input_ids.shape[1]),
            "new_tokens_padded": int(out.shape[1] - batch.input_ids.shape[1])}


def _evaluate(model_path: Path, args: argparse.Namespace, out: Path) -> dict:
    request = {"model": str(model_path), "benchmark": args.benchmark, "base_model": args.base_model,
               "out": str(out), "limit": args.limit, "max_tokens": args.max_tokens}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", EVALUATE, json.dumps(request)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the evaluation failed:\n{done.stderr[-2000:]}")
    evaluation = json.loads(done.stdout.strip().splitlines()[-1])
    evaluation["wall_seconds_incl_start_and_load"] = round(time.monotonic() - started, 2)
    return evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", type=Path, default=None, help="default: the cached smollm2-135m")
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument("--benchmark", default="gsm8k")
    parser.add_argument("--limit", type=int, default=16, help="items, all in one batch")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3,
                        help="evaluation and plain generate, alternated this many times (the load drifts)")
    args = parser.parse_args()

    if args.model_path is None:
        from posttrainbench.models import fetch
        from posttrainbench.specs import get_model

        args.model_path = fetch(get_model(args.base_model), progress=False)
    model_path = Path(args.model_path).resolve()
    load_before = os.getloadavg()[0]
    rounds = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="ptb-eval-vs-generate-") as tmp:
            evaluation = _evaluate(model_path, args, Path(tmp))
            plain = _plain_generate(model_path, args.base_model, args.benchmark, _prompts(Path(tmp) / "logs"),
                                    args.max_tokens)
        rounds.append({"evaluation": evaluation, "plain_generate": plain,
                       "ratio": round(plain["seconds"] / evaluation["eval_seconds"], 3)})
    result = {
        "benchmark": args.benchmark,
        "items": rounds[0]["evaluation"]["n"],
        "max_tokens": args.max_tokens,
        "rounds": rounds,
        "median_ratio_generate_over_evaluation": statistics.median(r["ratio"] for r in rounds),
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
