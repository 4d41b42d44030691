"""inspect-ai's own work in an evaluation, without model time: a benchmark's task against a mock model that answers
at once, every item in flight, as the vLLM backend runs it.

    PTB_DATA_DIR=DIR python benchmarks/inspect_overhead.py [--benchmark gsm8k] [--limit N] [--answer-words 500]

Prints seconds until the first model call, until the last, and in all. This is the part of an evaluation that the
engine cannot make faster (benchmarks/gpu_eval.py compares the whole evaluator with the engine).
"""

import argparse
import json
import tempfile
import time
from functools import partial

from inspect_ai import eval as inspect_eval
from inspect_ai.model import ModelOutput, ModelUsage, get_model

from posttrainbench.evaluation import data
from posttrainbench.evaluation.base import EvalContext
from posttrainbench.specs import get_benchmark, get_model as get_base_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="gsm8k")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--answer-words", type=int, default=500, help="length of every mock answer")
    args = parser.parse_args()

    import importlib

    spec = get_benchmark(args.benchmark)
    ctx = EvalContext(benchmark=spec, base_model=get_base_model("qwen3-1.7b-base"), limit=args.limit,
                      generation=spec.generation, data_file=partial(data.data_file, spec))
    task = importlib.import_module(f"posttrainbench.evaluation.{spec.module}").build_task(ctx)
    n = len(task.dataset) if args.limit is None else min(args.limit, len(task.dataset))
    calls: list[float] = []
    text = "word " * args.answer_words + "ANSWER: 42"

    def outputs():
        while True:
            calls.append(time.monotonic())
            output = ModelOutput.from_content(model="mockllm", content=text)
            words = args.answer_words
            output.usage = ModelUsage(input_tokens=1, output_tokens=words, total_tokens=1 + words)
            yield output

    model = get_model("mockllm/model", custom_outputs=outputs(), memoize=False)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as logs:
        inspect_eval(task, model=model, display="none", log_dir=logs, log_format="json", limit=n, max_connections=n,
                     log_realtime=False, score_display=False)
    total = time.monotonic() - started
    print(json.dumps({"benchmark": spec.id, "samples": n, "first_call_s": round(calls[0] - started, 1),
                      "last_call_s": round(calls[-1] - started, 1), "total_s": round(total, 1)}))


if __name__ == "__main__":
    main()
