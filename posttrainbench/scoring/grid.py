"""Statistics of one table of cell values over the leaderboard's grid (models × benchmarks).

The same code computes point estimates (float cells) and bootstrap replicates (numpy-array cells).
"""

from dataclasses import dataclass

from posttrainbench.scoring.weights import covers, weighted_average

Key = tuple[str, str]  # (model, benchmark)


@dataclass(frozen=True)
class Grid:
    models: list[str]
    benchmarks: list[str]
    weights: dict[str, float]  # published
    weights_own: dict[str, float]  # from the store's baselines
    refs: dict[str, dict[str, dict[str, float]]]  # role ('base', 'instruct') -> model -> benchmark -> score

    def gap(self, model: str, bench: str) -> tuple[float, float] | None:
        """(base, instruct − base) of a cell, or None when a baseline is missing or instruct does no better."""
        base = self.refs["base"].get(model, {}).get(bench)
        inst = self.refs["instruct"].get(model, {}).get(bench)
        if base is None or inst is None or inst - base <= 0:
            return None
        return base, inst - base

    def summaries(self, values: dict[Key, object]) -> dict[str, object]:
        """'benchmark:<b>' (mean over models), 'model:<m>' (weighted over benchmarks), 'average',
        'average_own' and 'normalised'; None where nothing is there to summarise."""
        out: dict[str, object] = {}
        per_bench = {}
        for bench in self.benchmarks:
            present = [values[(m, bench)] for m in self.models if (m, bench) in values]
            per_bench[bench] = sum(present) / len(present) if present else None
            out[f"benchmark:{bench}"] = per_bench[bench]
        for model in self.models:
            out[f"model:{model}"] = weighted_average({b: values.get((model, b)) for b in self.benchmarks},
                                                     self.weights)
        out["average"] = weighted_average(per_bench, self.weights)
        out["average_own"] = weighted_average(per_bench, self.weights_own)
        normalised = []
        for bench in self.benchmarks:
            parts = [(values[(m, bench)] - ref[0]) / ref[1] for m in self.models if (m, bench) in values
                     for ref in [self.gap(m, bench)] if ref is not None]
            if parts:
                normalised.append(sum(parts) / len(parts))
        out["normalised"] = sum(normalised) / len(normalised) if normalised else None
        return out

    def completeness(self, present: set[Key]) -> dict[str, bool]:
        """Whether each summary covers its whole table."""
        full = {b: all((m, b) in present for m in self.models) for b in self.benchmarks}
        out = {f"benchmark:{b}": ok for b, ok in full.items()}
        for model in self.models:
            out[f"model:{model}"] = covers({b: True for b in self.benchmarks if (model, b) in present},
                                           self.weights)
        out["average"] = covers({b: True for b, ok in full.items() if ok}, self.weights)
        out["average_own"] = covers({b: True for b, ok in full.items() if ok}, self.weights_own)
        out["normalised"] = bool(self.models and self.benchmarks) and all(
            (m, b) in present and self.gap(m, b) is not None for m in self.models for b in self.benchmarks)
        return out
