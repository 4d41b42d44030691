"""The static HTML report: leaderboard, charts, per-run pages, CSV/JSON exports."""

from posttrainbench.report.build import build_report

__all__ = ["build_report"]
