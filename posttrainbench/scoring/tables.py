"""Flat tables of a leaderboard (for CSV/JSON exports and the terminal) and the `ptb scores` view.

Scores in these tables are percentages rounded to two decimals; a missing value is None (empty in CSV,
null in JSON, '—' on screen).
"""

from dataclasses import dataclass, field

from rich.table import Table as RichTable

from posttrainbench import units
from posttrainbench.errors import PtbError
from posttrainbench.scoring.leaderboard import leaderboard
from posttrainbench.scoring.schema import Entry, Leaderboard, Stat
from posttrainbench.store import Store, short_id

VIEWS = ("agent", "benchmark", "model", "run")
SHORT = {"aime2025": "AIME", "arenahardwriting": "Arena", "bfcl": "BFCL", "gpqamain": "GPQA", "gsm8k": "GSM8K",
         "healthbench": "Health", "humaneval": "HumanEval"}
MISSING = "—"


@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[dict] = field(default_factory=list)


def pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def _stat_columns(prefix: str, stat: Stat) -> dict:
    ci = stat.ci or (None, None)
    return {prefix: pct(stat.value), f"{prefix}_std": pct(stat.std), f"{prefix}_ci_low": pct(ci[0]),
            f"{prefix}_ci_high": pct(ci[1]), f"{prefix}_complete": stat.complete}


def leaderboard_table(lb: Leaderboard) -> Table:
    rows = []
    for e in lb.entries:
        reasons = sorted({r.flag for r in lb.runs if r.id in e.flagged and r.flag})
        rows.append({
            "rank": e.rank, "agent": e.label, "scaffold": e.scaffold, "kind": e.kind, "source": e.source,
            "budget_h": e.hours, **_stat_columns("average", e.average),
            "average_own_weights": pct(e.average_own.value), "normalised": pct(e.normalised.value),
            **{b: pct(e.benchmarks[b].value) for b in lb.benchmarks},
            "seeds": len(e.seeds), "runs": e.runs, "missing_cells": len(e.missing), "flagged_runs": len(e.flagged),
            "flag_reasons": "; ".join(reasons) or None, "ci_method": e.ci_method, "key": e.key,
        })
    columns = list(rows[0]) if rows else ["rank", "agent", "average"]
    return Table("leaderboard", "Leaderboard", columns, rows)


def benchmark_table(lb: Leaderboard) -> Table:
    rows = [{"agent": e.label, "key": e.key, "benchmark": b, **_stat_columns("score", e.benchmarks[b]),
             "models": sum(1 for c in e.cells if c.benchmark == b and c.model in lb.models)}
            for e in lb.entries for b in lb.benchmarks]
    columns = ["agent", "key", "benchmark", "score", "score_std", "score_ci_low", "score_ci_high",
               "score_complete", "models"]
    return Table("benchmarks", "Per benchmark (mean over models)", columns, rows)


def model_table(lb: Leaderboard) -> Table:
    rows = [{"agent": e.label, "key": e.key, "model": m, "average": pct(e.models[m].value),
             "average_std": pct(e.models[m].std), "average_complete": e.models[m].complete}
            for e in lb.entries for m in lb.models]
    return Table("models", "Per model (published weights)",
                 ["agent", "key", "model", "average", "average_std", "average_complete"], rows)


def cell_table(lb: Leaderboard) -> Table:
    rows = []
    for e in lb.entries:
        for m in lb.models:
            for b in lb.benchmarks:
                c = e.cell(m, b)
                rows.append({
                    "agent": e.label, "key": e.key, "model": m, "benchmark": b,
                    "mean": pct(c.mean) if c else None, "std": pct(c.std) if c else None,
                    "seeds": len(c.scores) if c else 0, "flagged": c.flagged if c else 0,
                    "per_seed": " ".join(f"{s}:{pct(v)}" for s, v in c.scores.items()) if c else None,
                })
    return Table("cells", "Every cell (model × benchmark)",
                 ["agent", "key", "model", "benchmark", "mean", "std", "seeds", "flagged", "per_seed"], rows)


def run_table(lb: Leaderboard) -> Table:
    rows = [{
        "run": r.id, "kind": r.kind, "agent": r.agent, "model": r.model, "benchmark": r.benchmark, "seed": r.seed,
        "budget_h": r.hours, "status": r.status, "score": pct(r.score), "score_source": r.source, "scorer": r.scorer,
        "flag": r.flag, "counted": r.counted, "note": r.note, "time_used_pct": pct(r.time_used),
        "working_time_h": _hours(r.working_time_s), "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens, "cost_usd": _money(r.cost_usd), "items": r.items,
    } for r in lb.runs]
    columns = ["run", "kind", "agent", "model", "benchmark", "seed", "budget_h", "status", "score", "score_source",
               "scorer", "flag", "counted", "note", "time_used_pct", "working_time_h", "input_tokens", "output_tokens",
               "cost_usd", "items"]
    return Table("runs", "Runs", columns, rows)


def usage_table(lb: Leaderboard) -> Table:
    rows = [{
        "agent": e.label, "key": e.key, "runs": e.runs, "time_used_pct": pct(e.time_used),
        "time_used_min_pct": pct(e.time_used_min), "time_used_max_pct": pct(e.time_used_max),
        "working_time_h": _hours(e.working_time_s), "tokens": e.tokens, "cost_usd": _money(e.cost_usd),
        "cost_per_run_usd": _money(e.cost_per_run), "runs_with_usage": e.usage_runs,
    } for e in lb.entries if e.kind == "agent"]
    columns = ["agent", "key", "runs", "time_used_pct", "time_used_min_pct", "time_used_max_pct",
               "working_time_h", "tokens", "cost_usd", "cost_per_run_usd", "runs_with_usage"]
    return Table("usage", "Time, tokens and cost per agent", columns, rows)


def weights_table(lb: Leaderboard) -> Table:
    rows = []
    for b in dict.fromkeys([*lb.weights, *lb.weights_own]):
        base = [v[b] for m, v in lb.references["base"].items() if b in v]
        inst = [v[b] for m, v in lb.references["instruct"].items() if b in v]
        rows.append({
            "benchmark": b, "published_weight": _round(lb.weights.get(b), 6),
            "own_weight": _round(lb.weights_own.get(b), 6),
            "base_mean": pct(sum(base) / len(base)) if base else None,
            "instruct_mean": pct(sum(inst) / len(inst)) if inst else None,
        })
    return Table("weights", "Benchmark weights",
                 ["benchmark", "published_weight", "own_weight", "base_mean", "instruct_mean"], rows)


def view_table(lb: Leaderboard, by: str) -> Table:
    """The flat table behind a `ptb scores --by` view (for --json and --csv)."""
    tables = {"agent": leaderboard_table, "benchmark": benchmark_table, "model": model_table, "run": run_table}
    if by not in tables:
        raise PtbError(f"unknown view '{by}'; valid: {', '.join(VIEWS)}")
    return tables[by](lb)


def all_tables(lb: Leaderboard) -> list[Table]:
    return [leaderboard_table(lb), benchmark_table(lb), model_table(lb), cell_table(lb), usage_table(lb),
            weights_table(lb), run_table(lb)]


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 3)


def _money(value: float | None) -> float | None:
    return _round(value, 4)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def fmt_stat(stat: Stat, *, std: bool = True) -> str:
    """'23.2 ± 1.8' in percent; '*' marks a value over an incomplete table."""
    if stat.value is None:
        return MISSING
    text = f"{100 * stat.value:.1f}"
    if std and stat.std is not None:
        text += f" ± {100 * stat.std:.1f}"
    return text + ("" if stat.complete else "*")


def scores_table(store: Store, by: str = "agent", **options) -> RichTable:
    """The `ptb scores` view: by 'agent' (the leaderboard), 'benchmark', 'model' or 'run'.
    Options go to leaderboard() (models, benchmarks, hours, grid, published, bootstrap, seed, scorer)."""
    if by not in VIEWS:
        raise PtbError(f"unknown view '{by}'; valid: {', '.join(VIEWS)}")
    lb = leaderboard(store, **options)
    if by == "run":
        return _run_view(lb)
    table = RichTable(title=_title(by), caption=_caption(lb, by), box=None, pad_edge=False, caption_justify="left",
                      collapse_padding=True)
    table.add_column("#", justify="right")
    table.add_column("agent", no_wrap=True, overflow="ellipsis", max_width=28)
    if by == "agent":
        # what fits 80 columns; per benchmark: --by benchmark; every column: --json / --csv
        for name in ("average", "95% CI", "norm.", "time", "cost", "flags"):
            table.add_column(name, justify="right", no_wrap=True)
        for e, following in zip(lb.entries, [*lb.entries[1:], None], strict=True):
            # smoke tests (fewer items, capped tokens) sit below a rule, apart from full-test-set results
            apart = following is not None and bool(following.smoke) and not e.smoke
            table.add_row(_rank(e), e.label, fmt_stat(e.average), _ci(e.average), fmt_stat(e.normalised, std=False),
                          _pct_text(e.time_used), _money_text(e.cost_usd), str(len(e.flagged) or ""),
                          end_section=apart)
        return table
    columns = lb.benchmarks if by == "benchmark" else lb.models
    for name in columns:
        table.add_column(SHORT.get(name, name), justify="right", no_wrap=True)
    for e in lb.entries:
        stats = e.benchmarks if by == "benchmark" else e.models
        table.add_row(_rank(e), e.label, *(fmt_stat(stats[c], std=False) for c in columns))
    return table


def _run_view(lb: Leaderboard) -> RichTable:
    table = RichTable(title=f"Runs (score %, scorer: {lb.scorer}; time: share of the budget)", box=None, pad_edge=False,
                      collapse_padding=True)
    for name, low, high in (("run", 6, None), ("agent", None, 16), ("model", None, 12), ("bench", None, 10),
                            ("seed", 4, None), ("score", 6, None), ("time", 4, None), ("note", None, 24)):
        table.add_column(name, justify="right" if name in ("seed", "score", "time") else "left", no_wrap=True,
                         overflow="ellipsis", min_width=low, max_width=high)
    for r in lb.runs:
        score = units.percent(r.score, sign=False) + ("ᵇ" if r.source and r.source != "final" else "")
        table.add_row(short_id(r.id), r.agent, r.model, r.benchmark, str(r.seed), score, _pct_text(r.time_used),
                      r.flag or r.note or ("smoke: " + r.smoke if r.smoke else ""))
    return table


def _title(by: str) -> str:
    return {"agent": "Leaderboard (weighted average, %)", "benchmark": "Per benchmark, mean over models (%)",
            "model": "Per model, weighted average (%)"}[by]


def _caption(lb: Leaderboard, by: str) -> str:
    text = (f"scorer: {lb.scorer} (published rows: original); ± sample std over seeds; * over an incomplete "
            "table; — missing")
    if by == "agent":
        text += "; norm. = (score − base)/(instruct − base); time = share of the budget"
    return text + f"; models: {', '.join(lb.models) or MISSING}"


def _rank(e: Entry) -> str:
    return str(e.rank) if e.rank else ""


def _ci(stat: Stat) -> str:
    return f"{100 * stat.ci[0]:.1f}–{100 * stat.ci[1]:.1f}" if stat.ci else MISSING


def _pct_text(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.0f}%"


def _money_text(value: float | None) -> str:
    return units.money(value)
