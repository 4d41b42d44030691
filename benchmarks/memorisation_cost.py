"""Cost of the weights-side memorisation test (integrity/memorisation.py): wall time and tokens scored for a
sample of test items, base model against itself (the cost does not depend on what the submission learned).

    python benchmarks/memorisation_cost.py [--model smollm2-135m] [--benchmark gsm8k] [--items 48] [--device cpu]

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
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--benchmark", default="gsm8k")
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from posttrainbench.integrity import memorisation
    from posttrainbench.models import fetch
    from posttrainbench.specs import get_benchmark, get_model

    model = get_model(args.model)
    path = fetch(model, progress=False)
    started = time.perf_counter()
    result = memorisation.check(path, path, get_benchmark(args.benchmark), model, n=args.items, seed=args.seed,
                                device=args.device, log=lambda _: None)
    seconds = time.perf_counter() - started
    numbers = result.numbers
    print(f"{args.model} on {args.benchmark}: {numbers['items']} items, controls {', '.join(numbers['controls'])}, "
          f"{numbers['tokens_scored']} tokens scored by two models in {seconds:.1f} s on {numbers['device']} "
          f"({numbers['tokens_scored'] / seconds:.0f} tok/s); status {result.status}")
    return 0 if result.status == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
