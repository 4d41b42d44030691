"""Cost of the weights-side memorisation test (integrity/memorisation.py): wall time and tokens scored for a
sample of test items, base model against itself (the cost does not depend on what the submission learned), at the
device's default scale (CPU_SCALE / GPU_SCALE) unless --items etc. are given.

    python benchmarks/memorisation_cost.py [--model smollm2-135m] [--benchmark gsm8k] [--device cpu]
        [--items N] [--answer-tokens N] [--prompt-tokens N] [--threads N] [--model-path DIR]

The model comes from the model cache (fetched once); PTB_DATA_DIR defaults to ../shared/data beside the checkout.
"""

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("PTB_DATA_DIR", str(REPO.parent / "shared" / "data"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="catalog id: the chat template, and the weights "
                        "unless --model-path is given")
    parser.add_argument("--model-path", type=Path, help="score these weights as both models instead (e.g. a random "
                        "model of the catalog model's shape on a machine without the hub)")
    parser.add_argument("--benchmark", default="gsm8k")
    parser.add_argument("--items", type=int)
    parser.add_argument("--answer-tokens", type=int)
    parser.add_argument("--prompt-tokens", type=int)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import dataclasses

    import torch

    from posttrainbench.integrity import memorisation
    from posttrainbench.models import fetch
    from posttrainbench.specs import get_benchmark, get_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    scale = memorisation.CPU_SCALE if device == "cpu" else memorisation.GPU_SCALE
    changes = {"items": args.items, "answer_tokens": args.answer_tokens, "prompt_tokens": args.prompt_tokens}
    scale = dataclasses.replace(scale, **{k: v for k, v in changes.items() if v is not None})
    model = get_model(args.model)
    path = args.model_path or fetch(model, progress=False)
    started = time.perf_counter()
    result = memorisation.check(path, path, get_benchmark(args.benchmark), model, scale=scale, seed=args.seed,
                                device=device, log=lambda _: None)
    seconds = time.perf_counter() - started
    numbers = result.numbers
    print(f"{args.model} on {args.benchmark}: {numbers['items']} items, controls {', '.join(numbers['controls'])}, "
          f"scale {numbers['scale']}, {torch.get_num_threads()} torch threads, "
          f"{numbers['tokens_scored']} tokens scored by two models in {seconds:.1f} s on {numbers['device']} "
          f"({numbers['tokens_scored'] / seconds:.0f} tok/s); status {result.status}")
    return 0 if result.status == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
