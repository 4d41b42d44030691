"""Turns stored runs into the leaderboard: one entry per agent (or baseline), a cell per (model, benchmark)
holding one score per seed, and the averages, gap-normalised scores, spreads and intervals built on them.

Scores are fractions in [0, 1]. A missing cell stays missing (None), never zero; a statistic over a table
with missing cells is computed over what is there and marked incomplete.
"""

import statistics
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from posttrainbench.scoring.items import item_scores
from posttrainbench.scoring.published import catalog_id, published_weights
from posttrainbench.scoring.usage import run_usage
from posttrainbench.scoring.weights import covers, weighted_average, weights_from_baselines
from posttrainbench.store import RunRow, Store

BASELINE_LABELS = {
    "instruct": "Official instruct",
    "reference": "Reference agent",
    "base-fewshot": "Base few-shot",
    "base-zeroshot": "Base zero-shot",
}
REFERENCE_ROLES = {"base": "base-zeroshot", "instruct": "instruct"}
FALLBACK_SOURCE = "base-zeroshot baseline"


class Stat(BaseModel):
    value: float | None = None
    std: float | None = None  # sample standard deviation (n−1) over seeds
    ci: tuple[float, float] | None = None  # 95% bootstrap interval
    complete: bool = False


class RunScore(BaseModel):
    id: str
    entry: str
    kind: str
    agent: str
    model: str
    benchmark: str
    seed: int
    hours: float
    status: str
    score: float | None = None
    source: str | None = None  # 'final', 'base' (flagged, base model's evaluation) or FALLBACK_SOURCE
    flag: str | None = None
    counted: bool = False  # this run's score fills its cell for its seed
    note: str | None = None
    time_used_s: float | None = None
    time_used: float | None = None  # fraction of the budget
    working_time_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    items: int | None = None  # number of per-item scores found for the bootstrap
    run_dir: str | None = None  # None for published numbers


class Cell(BaseModel):
    model: str
    benchmark: str
    scores: dict[int, float] = {}  # seed -> score
    runs: dict[int, str] = {}  # seed -> run id
    mean: float | None = None
    std: float | None = None
    flagged: int = 0


class Entry(BaseModel):
    key: str
    slug: str
    kind: str
    agent: str
    label: str
    scaffold: str | None = None
    hours: float | None = None
    source: str = "measured"  # or 'published'
    rank: int | None = None
    cells: list[Cell] = []
    benchmarks: dict[str, Stat] = {}
    models: dict[str, Stat] = {}
    average: Stat = Stat()  # published weights
    average_own: Stat = Stat()  # weights from our own baselines
    normalised: Stat = Stat()  # mean of (s − base)/(instruct − base)
    seeds: list[int] = []
    missing: list[str] = []  # "model / benchmark"
    flagged: list[str] = []  # run ids whose flag replaced their score
    ci_method: str = ""
    runs: int = 0
    time_used: float | None = None
    time_used_min: float | None = None
    time_used_max: float | None = None
    working_time_s: float | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    cost_per_run: float | None = None
    usage_runs: int = 0  # runs with token or cost data

    def cell(self, model: str, benchmark: str) -> Cell | None:
        return next((c for c in self.cells if c.model == model and c.benchmark == benchmark), None)


class Leaderboard(BaseModel):
    generated_at: str
    store: str
    models: list[str]
    benchmarks: list[str]
    weights: dict[str, float]
    weights_own: dict[str, float]
    references: dict[str, dict[str, dict[str, float]]]  # role -> model -> benchmark -> score
    bootstrap: int
    entries: list[Entry]
    runs: list[RunScore]
    notes: list[str] = []

    def entry(self, key: str) -> Entry:
        for entry in self.entries:
            if entry.key == key:
                return entry
        raise KeyError(key)


def leaderboard(store: Store, *, models: Iterable[str] | None = None, benchmarks: Iterable[str] | None = None,
                hours: float | None = None, bootstrap: int = 1000, seed: int = 0) -> Leaderboard:
    """Aggregate every run in the store. `models`/`benchmarks` fix the grid (default: the models agents ran on,
    the seven published benchmarks plus any other one run); `hours` keeps agent runs of that budget only;
    `bootstrap` replicates for the intervals (0 = none)."""
    rows = [r for r in _runs_in_insertion_order(store)
            if not (hours is not None and r.kind == "agent" and r.hours != hours)]
    scored = [(r, _run_score(store, r)) for r in rows]
    notes: list[str] = []

    refs = _references(scored)
    for row, rs in scored:
        if rs.flag and rs.score is None and rs.status == "done":
            base = refs["base"].get(rs.model, {}).get(rs.benchmark)
            if base is None:
                rs.note = "flagged, and no base score to replace its score with"
            else:
                rs.score, rs.source = base, FALLBACK_SOURCE

    grid_models = list(models) if models else _default_models(rows)
    grid_benchmarks = list(benchmarks) if benchmarks else _default_benchmarks(rows)
    weights = published_weights()
    ref_table = {role: {m: v for m, v in table.items() if m in grid_models} for role, table in refs.items()}
    weights_own = weights_from_baselines(ref_table)
    if not weights_own:
        notes.append("no base-zeroshot and instruct baselines in the store: own weights and normalised scores "
                     "are unavailable (import_published_baselines or `ptb baseline` adds them)")

    rng = np.random.default_rng(seed)
    replicates: dict[str, np.ndarray] = {}
    entries = []
    for key, group in _group(scored).items():
        entry = _entry(key, group, grid_models, grid_benchmarks, weights, weights_own, ref_table)
        _usage(entry, [rs for _, rs in group if rs.counted])
        if bootstrap > 0:
            _bootstrap(entry, {rs.id: (row, rs) for row, rs in group}, grid_models, grid_benchmarks, weights,
                       weights_own, ref_table, bootstrap, rng, replicates)
        entries.append(entry)
    _rank(entries)
    return Leaderboard(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"), store=str(store.path),
        models=grid_models, benchmarks=grid_benchmarks, weights=weights, weights_own=weights_own,
        references=ref_table, bootstrap=bootstrap, entries=entries, runs=[rs for _, rs in scored], notes=notes,
    )


def _runs_in_insertion_order(store: Store) -> list[RunRow]:
    """Store.runs() sorts by a creation time with one-second resolution; the rowid tells which came last."""
    order = {r[0]: r[1] for r in store.db.execute("SELECT id, rowid FROM runs")}
    return sorted(store.runs(), key=lambda r: order[r.id])


def _published(row: RunRow) -> bool:
    return row.spec.get("source") == "published"


def _model_of(row: RunRow) -> str:
    # published rows imported before the catalog knew the model get its catalog id now
    if _published(row) and row.spec.get("hf_id"):
        return catalog_id(row.spec["hf_id"]) or row.model
    return row.model


def _agent_spec(row: RunRow) -> dict:
    agent = row.spec.get("agent")
    return agent if isinstance(agent, dict) else {}


def _key(row: RunRow) -> str:
    if row.kind == "baseline":
        return f"baseline:{row.agent}" + (":published" if _published(row) else "")
    effort = _agent_spec(row).get("effort")
    return f"agent:{row.agent}" + (f":{effort}" if effort else "") + f"@{row.hours:g}h"


def _run_score(store: Store, row: RunRow) -> RunScore:
    rs = RunScore(id=row.id, entry=_key(row), kind=row.kind, agent=row.agent, model=_model_of(row),
                  benchmark=row.benchmark, seed=row.seed, hours=row.hours, status=row.status, flag=row.flag,
                  time_used_s=row.time_used_s, run_dir=None if _published(row) else row.run_dir)
    if row.kind == "agent" and row.time_used_s is not None and row.hours > 0:
        rs.time_used = row.time_used_s / (row.hours * 3600)
    if rs.run_dir and Path(rs.run_dir).is_dir():
        usage = run_usage(Path(rs.run_dir))
        rs.working_time_s, rs.cost_usd = usage.working_time_s, usage.cost_usd
        rs.input_tokens, rs.output_tokens = usage.input_tokens, usage.output_tokens
    if row.status != "done":
        rs.note = f"{row.status}: {row.error}" if row.error else row.status
        return rs
    metrics = store.metrics(row.id)
    if row.flag:
        base = metrics.get("base", {}).get("accuracy")
        if base is None and row.score_source == "base":
            base = row.score
        if base is not None:
            rs.score, rs.source = base, "base"
        return rs
    if row.score is not None:
        rs.score, rs.source = row.score, row.score_source or "final"
    elif metrics.get("final", {}).get("accuracy") is not None:
        rs.score, rs.source = metrics["final"]["accuracy"], "final"
    else:
        rs.note = "finished without a score"
    return rs


def _pick(group: list[tuple[RunRow, RunScore]]) -> dict[tuple[str, str], dict[int, RunScore]]:
    """The newest usable run per (model, benchmark, seed); `group` lists runs oldest first."""
    cells: dict[tuple[str, str], dict[int, RunScore]] = {}
    for _, rs in group:
        if rs.score is not None:
            cells.setdefault((rs.model, rs.benchmark), {})[rs.seed] = rs
    return cells


def _references(scored: list[tuple[RunRow, RunScore]]) -> dict[str, dict[str, dict[str, float]]]:
    """Base and instruct score per (model, benchmark): our own baseline runs where present, else published."""
    refs: dict[str, dict[str, dict[str, float]]] = {"base": {}, "instruct": {}}
    for role, name in REFERENCE_ROLES.items():
        for published in (True, False):  # measured ones come second and overwrite
            group = [(r, s) for r, s in scored if r.kind == "baseline" and r.agent == name
                     and _published(r) == published]
            for (model, bench), by_seed in _pick(group).items():
                refs[role].setdefault(model, {})[bench] = statistics.fmean(s.score for s in by_seed.values())
    return refs


def _default_models(rows: list[RunRow]) -> list[str]:
    agent_models = {_model_of(r) for r in rows if r.kind == "agent"}
    return sorted(agent_models or {_model_of(r) for r in rows})


def _default_benchmarks(rows: list[RunRow]) -> list[str]:
    published = list(published_weights())
    considered = [r for r in rows if r.kind == "agent"] or rows
    return published + sorted({r.benchmark for r in considered} - set(published))


def _group(scored):
    groups: dict[str, list[tuple[RunRow, RunScore]]] = {}
    for row, rs in scored:
        groups.setdefault(rs.entry, []).append((row, rs))
    return groups


def _entry(key, group, models, benchmarks, weights, weights_own, refs) -> Entry:
    row = group[-1][0]
    agent_spec = _agent_spec(row)
    if row.kind == "baseline":
        label = BASELINE_LABELS.get(row.agent, row.agent) + (" (published)" if _published(row) else "")
        scaffold, hours = None, None
    else:
        label = agent_spec.get("model") or row.agent
        if agent_spec.get("effort"):
            label += f" ({agent_spec['effort']})"
        scaffold, hours = agent_spec.get("scaffold") or row.agent.partition(":")[0], row.hours
    entry = Entry(key=key, slug=_slug(key), kind=row.kind, agent=row.agent, label=label, scaffold=scaffold,
                  hours=hours, source="published" if _published(row) else "measured")

    picked = _pick(group)
    for rs in (rs for by_seed in picked.values() for rs in by_seed.values()):
        rs.counted = True
    for _, rs in group:
        if rs.score is not None and not rs.counted:
            newer = picked[(rs.model, rs.benchmark)][rs.seed]
            rs.note = f"superseded by the newer run {newer.id}"

    for (model, bench), by_seed in picked.items():
        scores = {s: rs.score for s, rs in sorted(by_seed.items())}
        entry.cells.append(Cell(
            model=model, benchmark=bench, scores=scores, runs={s: rs.id for s, rs in sorted(by_seed.items())},
            mean=statistics.fmean(scores.values()), std=_std(list(scores.values())),
            flagged=sum(1 for rs in by_seed.values() if rs.flag),
        ))
        entry.flagged += [rs.id for rs in by_seed.values() if rs.flag]
    entry.runs = sum(len(by_seed) for by_seed in picked.values())

    present = {(c.model, c.benchmark): c for c in entry.cells if c.model in models and c.benchmark in benchmarks}
    entry.missing = [f"{m} / {b}" for m in models for b in benchmarks if (m, b) not in present]
    entry.seeds = sorted({s for c in present.values() for s in c.scores})

    point = _summaries({k: c.mean for k, c in present.items()}, models, benchmarks, weights, weights_own, refs)
    full_seeds = [s for s in entry.seeds if all(s in c.scores for c in present.values())]
    per_seed = [_summaries({k: c.scores[s] for k, c in present.items()}, models, benchmarks, weights,
                           weights_own, refs) for s in full_seeds]
    complete = _completeness(set(present), models, benchmarks, weights, weights_own, refs)
    for name, value in point.items():
        spread = [p[name] for p in per_seed if p[name] is not None]
        stat = Stat(value=value, std=_std(spread) if len(spread) == len(per_seed) else None,
                    complete=complete[name])
        _assign(entry, name, stat)
    return entry


def _summaries(values: dict[tuple[str, str], object], models, benchmarks, weights, weights_own, refs) -> dict:
    """Every statistic of one table of cell values; values may be floats or arrays of bootstrap replicates."""
    out: dict[str, object] = {}
    per_bench = {}
    for bench in benchmarks:
        present = [values[(m, bench)] for m in models if (m, bench) in values]
        per_bench[bench] = sum(present) / len(present) if present else None
        out[f"benchmark:{bench}"] = per_bench[bench]
    for model in models:
        out[f"model:{model}"] = weighted_average({b: values.get((model, b)) for b in benchmarks}, weights)
    out["average"] = weighted_average(per_bench, weights)
    out["average_own"] = weighted_average(per_bench, weights_own)
    normalised = []
    for bench in benchmarks:
        parts = [(values[(m, bench)] - ref[0]) / ref[1] for m in models if (m, bench) in values
                 for ref in [_gap(refs, m, bench)] if ref is not None]
        if parts:
            normalised.append(sum(parts) / len(parts))
    out["normalised"] = sum(normalised) / len(normalised) if normalised else None
    return out


def _gap(refs, model, bench) -> tuple[float, float] | None:
    """(base, instruct − base) of a cell, or None when a baseline is missing or instruct does no better."""
    base = refs["base"].get(model, {}).get(bench)
    inst = refs["instruct"].get(model, {}).get(bench)
    if base is None or inst is None or inst - base <= 0:
        return None
    return base, inst - base


def _completeness(present: set, models, benchmarks, weights, weights_own, refs) -> dict[str, bool]:
    full = {b: all((m, b) in present for m in models) for b in benchmarks}
    out = {f"benchmark:{b}": ok for b, ok in full.items()}
    for model in models:
        out[f"model:{model}"] = covers({b: True for b in benchmarks if (model, b) in present}, weights)
    out["average"] = covers({b: True for b, ok in full.items() if ok}, weights)
    out["average_own"] = covers({b: True for b, ok in full.items() if ok}, weights_own)
    out["normalised"] = bool(models and benchmarks) and all(
        (m, b) in present and _gap(refs, m, b) is not None for m in models for b in benchmarks)
    return out


def _assign(entry: Entry, name: str, stat: Stat) -> None:
    kind, _, which = name.partition(":")
    if kind == "benchmark":
        entry.benchmarks[which] = stat
    elif kind == "model":
        entry.models[which] = stat
    else:
        setattr(entry, name, stat)


def _stat_of(entry: Entry, name: str) -> Stat:
    kind, _, which = name.partition(":")
    if kind == "benchmark":
        return entry.benchmarks[which]
    if kind == "model":
        return entry.models[which]
    return getattr(entry, name)


def _bootstrap(entry, runs, models, benchmarks, weights, weights_own, refs, n, rng, cache) -> None:
    """Hierarchical bootstrap: per cell, resample its seeds; per chosen run, resample its items."""
    present = [c for c in entry.cells if c.model in models and c.benchmark in benchmarks]
    with_items = total = 0
    reps = {}
    for cell in present:
        per_run = []
        for run_id in cell.runs.values():
            row, rs = runs[run_id]
            if run_id not in cache:
                cache[run_id] = _run_replicates(row, rs, n, rng)
            per_run.append(cache[run_id])
            total += 1
            with_items += rs.items is not None
        stacked = np.stack(per_run)
        pick = rng.integers(0, len(per_run), size=(n, len(per_run)))
        reps[(cell.model, cell.benchmark)] = stacked[pick, np.arange(n)[:, None]].mean(axis=1)
    multi_seed = any(len(c.runs) > 1 for c in present)
    entry.ci_method = _ci_method(with_items, total, multi_seed)
    if not reps:
        return
    for name, value in _summaries(reps, models, benchmarks, weights, weights_own, refs).items():
        if value is not None and np.ptp(value) > 0:
            lo, hi = np.percentile(value, [2.5, 97.5])
            _stat_of(entry, name).ci = (float(lo), float(hi))


def _run_replicates(row: RunRow, rs: RunScore, n: int, rng) -> np.ndarray:
    items = None
    if rs.run_dir and rs.source in ("final", "base"):
        items = item_scores(Path(rs.run_dir), rs.source)
    if items is None or len(items) == 0:
        return np.full(n, rs.score)
    rs.items = len(items)
    # shift by the run's own score so that a metric other than the item mean (a win rate, a clipped rubric
    # score) keeps its value while the items supply the spread
    idx = rng.integers(0, len(items), size=(n, len(items)))
    return rs.score + items[idx].mean(axis=1) - items.mean()


def _ci_method(with_items: int, total: int, multi_seed: bool) -> str:
    if total == 0:
        return "none: no runs"
    if with_items == 0:
        return "seeds only (no per-item scores found)" if multi_seed else "none: one seed and no per-item scores"
    part = "" if with_items == total else f" (per-item scores for {with_items} of {total} runs)"
    return ("items × seeds" if multi_seed else "items only (one seed per cell)") + part


def _usage(entry: Entry, counted: list[RunScore]) -> None:
    agent_runs = [rs for rs in counted if rs.kind == "agent"]
    fractions = [rs.time_used for rs in agent_runs if rs.time_used is not None]
    if fractions:
        entry.time_used = statistics.fmean(fractions)
        entry.time_used_min, entry.time_used_max = min(fractions), max(fractions)
    working = [rs.working_time_s for rs in agent_runs if rs.working_time_s is not None]
    entry.working_time_s = statistics.fmean(working) if working else None
    tokens = [(rs.input_tokens or 0) + (rs.output_tokens or 0) for rs in agent_runs
              if rs.input_tokens is not None or rs.output_tokens is not None]
    costs = [rs.cost_usd for rs in agent_runs if rs.cost_usd is not None]
    entry.tokens = sum(tokens) if tokens else None
    entry.cost_usd = sum(costs) if costs else None
    entry.cost_per_run = statistics.fmean(costs) if costs else None
    entry.usage_runs = sum(1 for rs in agent_runs if rs.cost_usd is not None or rs.input_tokens is not None)


def _rank(entries: list[Entry]) -> None:
    """Highest average first; only agents whose average covers the whole table get a rank."""
    entries.sort(key=lambda e: (e.average.value is None, -(e.average.value or 0.0), e.label))
    rank = 0
    for entry in entries:
        if entry.kind == "agent" and entry.average.value is not None and entry.average.complete:
            rank += 1
            entry.rank = rank


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) >= 2 else None


def _slug(key: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in key).strip("-").lower()
