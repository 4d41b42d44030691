"""Scores of stored runs: weighted averages, gap-normalised scores, seeds, intervals, time and cost."""

from posttrainbench.scoring.leaderboard import leaderboard
from posttrainbench.scoring.published import (
    import_published_baselines,
    published_averages,
    published_baselines,
    published_scores,
    published_weights,
)
from posttrainbench.scoring.schema import Cell, Entry, Leaderboard, RunScore, Stat
from posttrainbench.scoring.tables import all_tables, scores_table
from posttrainbench.scoring.weights import weighted_average, weights_from_baselines

__all__ = [
    "Cell",
    "Entry",
    "Leaderboard",
    "RunScore",
    "Stat",
    "all_tables",
    "import_published_baselines",
    "leaderboard",
    "published_averages",
    "published_baselines",
    "published_scores",
    "published_weights",
    "scores_table",
    "weighted_average",
    "weights_from_baselines",
]
