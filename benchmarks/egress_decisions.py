"""Cost of one egress policy decision (decide.Decider.request), the work the proxy adds to every request.

Usage: python benchmarks/egress_decisions.py [--requests 20000]
"""

import argparse
import time

from posttrainbench.egress.decide import Decider
from posttrainbench.egress.policy import compile_policy, load_policy
from posttrainbench.specs import get_benchmark, get_model

URLS = {
    "hub model file": ("GET", "huggingface.co", "/Qwen/Qwen3-1.7B-Base/resolve/main/model.safetensors", ""),
    "PyPI wheel": ("GET", "files.pythonhosted.org", "/packages/aa/bb/trl-0.25.0-py3-none-any.whl", ""),
    "GitHub raw file": ("GET", "raw.githubusercontent.com", "/openai/human-eval/master/data/example.jsonl", ""),
    "other site, query": ("GET", "example.org", "/a/b/c.html", "page=2&sort=new"),
    "POST to another site": ("POST", "api.wandb.ai", "/graphql", ""),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    decider = Decider(compile_policy(load_policy(), mode="proxied", base_model=get_model("qwen3-1.7b-base"),
                                     benchmark=get_benchmark("humaneval")))
    for name, (method, host, path, query) in URLS.items():
        started = time.perf_counter()
        for _ in range(args.requests):
            decider.request(method, host, path, query)
        elapsed = time.perf_counter() - started
        print(f"{name:22s} {elapsed / args.requests * 1e6:7.1f} µs per decision")


if __name__ == "__main__":
    main()
