"""Bootstrap intervals over seeds and items.

Per replicate and cell, the cell's seeds are resampled with replacement; each chosen run contributes its score
shifted by an item-resampled deviation when its per-item scores are known, else its plain score.
"""

from pathlib import Path

import numpy as np

from posttrainbench.scoring.grid import Grid
from posttrainbench.scoring.items import item_scores, original_item_scores
from posttrainbench.scoring.schema import Cell, RunScore


def intervals(cells: list[Cell], runs: dict[str, RunScore], grid: Grid, n: int, rng: np.random.Generator,
              cache: dict[str, np.ndarray]) -> tuple[dict[str, tuple[float, float]], str]:
    """95% intervals of every grid summary (keys as Grid.summaries) and a line saying what was resampled.
    `cache` keeps each run's replicates across entries."""
    with_items = total = 0
    reps = {}
    for cell in cells:
        per_run = []
        for run_id in (run_id for ids in cell.runs.values() for run_id in ids):
            rs = runs[run_id]
            if run_id not in cache:
                cache[run_id] = _run_replicates(rs, n, rng)
            per_run.append(cache[run_id])
            total += 1
            with_items += rs.items is not None
        stacked = np.stack(per_run)
        pick = rng.integers(0, len(per_run), size=(n, len(per_run)))
        reps[(cell.model, cell.benchmark)] = stacked[pick, np.arange(n)[:, None]].mean(axis=1)
    method = _method(with_items, total, any(sum(map(len, c.runs.values())) > 1 for c in cells))
    out = {}
    for name, value in (grid.summaries(reps) if reps else {}).items():
        if value is not None and np.ptp(value) > 0:
            lo, hi = np.percentile(value, [2.5, 97.5])
            out[name] = (float(lo), float(hi))
    return out, method


def _run_replicates(rs: RunScore, n: int, rng: np.random.Generator) -> np.ndarray:
    read = item_scores if rs.scorer == "ours" else original_item_scores
    items = read(Path(rs.run_dir), rs.source) if rs.run_dir and rs.source in ("final", "base") else None
    if items is None or len(items) == 0:
        return np.full(n, rs.score)
    rs.items = len(items)
    # shifted by the run's own score so that a metric other than the item mean (a win rate, a clipped rubric
    # score) keeps its value while the items supply the spread
    idx = rng.integers(0, len(items), size=(n, len(items)))
    return rs.score + items[idx].mean(axis=1) - items.mean()


def _method(with_items: int, total: int, multi_seed: bool) -> str:
    if total == 0:
        return "none: no runs"
    if with_items == 0:
        return "seeds only (no per-item scores found)" if multi_seed else "none: one seed and no per-item scores"
    part = "" if with_items == total else f" (per-item scores for {with_items} of {total} runs)"
    return ("items × seeds" if multi_seed else "items only (one seed per cell)") + part
