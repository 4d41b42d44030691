"""Benchmark weights and weighted averages, computed the way the original's scripts/factors.json was made.

A weight is w_b ∝ 1/(mean instruct_b − mean base_b): a benchmark on which the instruct models gain little over
the base models counts more, so every benchmark's headroom contributes about equally.
"""

from collections.abc import Mapping
from statistics import fmean

# role ('base' or 'instruct') -> model -> benchmark -> score (fraction in [0, 1])
BaselineTable = Mapping[str, Mapping[str, Mapping[str, float]]]


def gaps(table: BaselineTable) -> dict[str, float]:
    """mean instruct − mean base per benchmark, over the models that have both numbers for it."""
    base, instruct = table.get("base", {}), table.get("instruct", {})
    benchmarks = list(dict.fromkeys(b for scores in instruct.values() for b in scores))
    out = {}
    for bench in benchmarks:
        models = [m for m in instruct if bench in instruct[m] and bench in base.get(m, {})]
        if models:
            out[bench] = fmean(instruct[m][bench] for m in models) - fmean(base[m][bench] for m in models)
    return out


def weights_from_baselines(table: BaselineTable) -> dict[str, float]:
    """Weights normalised to sum to 1; a benchmark where the instruct models gain nothing gets no weight."""
    inverse = {b: 1.0 / g for b, g in gaps(table).items() if g > 0}
    total = sum(inverse.values())
    return {b: v / total for b, v in inverse.items()}


def weighted_average(scores: Mapping[str, object], weights: Mapping[str, float]):
    """Σ w_b·s_b over the weighted benchmarks that have a score, weights renormalised over those.

    Scores may be floats or numpy arrays of bootstrap replicates; None means missing. Returns None when no
    weighted benchmark has a score.
    """
    present = {b: w for b, w in weights.items() if scores.get(b) is not None}
    total = sum(present.values())
    if not present or total <= 0:
        return None
    return sum(w * scores[b] for b, w in present.items()) / total


def covers(scores: Mapping[str, object], weights: Mapping[str, float]) -> bool:
    return bool(weights) and all(scores.get(b) is not None for b in weights)
