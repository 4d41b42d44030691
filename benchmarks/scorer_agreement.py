"""Agreement of our scorers with the original's (inspect_evals 0.3.103 on inspect-ai 0.3.150, run through the
pinned original-scorer environment) on a corpus of output styles built from the test data.

    PTB_DATA_DIR=/work/shared/data python benchmarks/scorer_agreement.py [--limit N] [--benchmark B ...]

Prints, per benchmark and per style: items, agreement, ours right, original right ("right" = the verdict the
style deserves by the benchmark's definition, when the style has one).
"""

import argparse
import sys
from collections import defaultdict

from posttrainbench.evaluation import original
from posttrainbench.evaluation.original import corpus

# Styles whose right verdict is fixed by the benchmark's definition (the stated answer is, or is not, the target).
RIGHT = {
    "aime2025": {"prompted": 1, "prompted_wrong": 0, "boxed_only": 1, "answer_boxed": 1, "bold_marker": 1,
                 "degrees": 1, "zero_padded": 1, "ramble_after": 1, "last_number_only": 1, "think_then_answer": 1,
                 "empty": 0},
    "gsm8k": {"prompted": 1, "prompted_wrong": 0, "thousands": 1, "dollars": 1, "decimal": 1, "boxed": 1,
              "the_answer_is": 1, "ramble_after": 1, "gsm_hashes": 1, "empty": 0},
    "gpqamain": {"prompted": 1, "prompted_wrong": 0, "lowercase": 1, "parenthesized": 1, "bold_letter": 1,
                 "two_answer_lines": 1, "period": 1, "empty": 0},
    "humaneval": {"fenced_function": 1, "fenced_body": 1, "unfenced_body": 1, "py_fence": 1,
                  "fenced_then_prose": 1, "wrong": 0, "exit_zero": 0, "empty": 0},
    "bfcl": {"hermes": 1, "hermes_wrong_argument": 0, "hermes_unclosed": 1, "hermes_after_prose": 1,
             "backend_parsed": 1, "two_calls": 0, "empty": 0},
}


def measure(benchmark: str, limit: int | None) -> dict[str, list[tuple[bool, bool]]]:
    cases = list(corpus.cases(benchmark, limit))
    theirs = original.score([case.record() for case in cases])
    rows: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for case, verdict in zip(cases, theirs, strict=True):
        rows[case.style].append((corpus.our_verdict(case), verdict.correct))
    return rows


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f} %" if whole else "   – "


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", action="append", choices=list(corpus.STYLES))
    parser.add_argument("--limit", type=int, default=None, help="items per benchmark (default: all)")
    args = parser.parse_args()
    original.install()
    print(f"original scorer: {original.versions()}; ours: {original.our_versions()}")
    for benchmark in args.benchmark or list(corpus.STYLES):
        rows = measure(benchmark, args.limit)
        print(f"\n{benchmark}\n{'style':24} {'n':>5} {'agree':>8} {'ours right':>11} {'orig right':>11}")
        total = [0, 0, 0, 0, 0]
        for style, pairs in rows.items():
            right = RIGHT[benchmark].get(style)  # None: the style has no verdict fixed by the definition
            n, agree = len(pairs), sum(a == b for a, b in pairs)
            judged = n if right is not None else 0
            ours = sum(a == right for a, _ in pairs) if judged else 0
            theirs = sum(b == right for _, b in pairs) if judged else 0
            total = [t + v for t, v in zip(total, (n, agree, judged, ours, theirs), strict=True)]
            print(f"{style:24} {n:5d} {pct(agree, n):>8} {pct(ours, judged):>11} {pct(theirs, judged):>11}")
        n, agree, judged, ours, theirs = total
        print(f"{'all':24} {n:5d} {pct(agree, n):>8} {pct(ours, judged):>11} {pct(theirs, judged):>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
