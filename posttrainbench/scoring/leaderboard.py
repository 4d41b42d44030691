"""Turns stored runs into the leaderboard: one entry per agent (or baseline), a cell per (model, benchmark)
holding one score per seed, and the averages, gap-normalised scores, spreads and intervals built on them.

Scores are fractions in [0, 1]. A missing cell stays missing (None), never zero; a statistic over a table
with missing cells is computed over what is there and marked incomplete.
"""

import json
import statistics
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from posttrainbench.scoring.bootstrap import intervals
from posttrainbench.scoring.grid import Grid
from posttrainbench.scoring.identity import (
    Identity,
    command_hash,
    grid_labels,
    grid_runs,
    identity,
    started,
    test_access,
)
from posttrainbench.scoring.published import catalog_id, published_rows, published_weights
from posttrainbench.scoring.schema import Cell, Entry, Leaderboard, RunScore, Stat
from posttrainbench.scoring.usage import run_usage
from posttrainbench.scoring.weights import weights_from_baselines
from posttrainbench.errors import PtbError
from posttrainbench.store import RunRow, Store

BASELINE_LABELS = {
    "instruct": "Official instruct",
    "reference": "Reference agent",
    "base-fewshot": "Base few-shot",
    "base-zeroshot": "Base zero-shot",
}
REFERENCE_ROLES = {"base": "base-zeroshot", "instruct": "instruct"}
FALLBACK_SOURCE = "base-zeroshot baseline"
SCORERS = ("ours", "original")


def leaderboard(store: Store, *, models: Iterable[str] | None = None, benchmarks: Iterable[str] | None = None,
                hours: float | None = None, grid: str | None = None, published: bool = False,
                bootstrap: int = 1000, seed: int = 0, scorer: str = "ours") -> Leaderboard:
    """Aggregate every run in the store; nothing is written. `models`/`benchmarks` fix the grid (default: the
    models agents ran on, the seven published benchmarks plus any other one run); `hours` keeps agent runs of that
    budget only; `grid` keeps the agent runs of that grid's cells (and takes its models and benchmarks);
    `published` adds the published baselines; `bootstrap` replicates for the intervals (0 = none); `scorer` picks
    our runs' `accuracy` ("ours") or `accuracy_original` ("original"). Published numbers are the original's
    scorer's either way."""
    if scorer not in SCORERS:
        raise PtbError(f"unknown scorer '{scorer}'; valid: {', '.join(SCORERS)}")
    rows = [r for r in _runs_in_insertion_order(store)
            if not (hours is not None and r.kind == "agent" and r.hours != hours) and started(r)]
    if published:
        stored = {r.id for r in rows}
        rows = [r for r in published_rows() if r.id not in stored] + rows
    if grid is not None:
        cells = grid_runs(store, grid)
        rows = [r for r in rows if r.kind != "agent" or r.id in cells]
        spec = json.loads(store.db.execute("SELECT grid FROM grids WHERE name=?", (grid,)).fetchone()[0])
        models, benchmarks = models or spec["models"], benchmarks or spec["benchmarks"]
    labels = grid_labels(store)
    scored = [(r, _run_score(store, r, labels.get(r.id), scorer)) for r in rows]
    notes: list[str] = [_scorer_note(scorer, rows)]

    all_refs = _references(scored)
    for _, rs in scored:
        if rs.flag and rs.score is None and rs.status == "done":
            base = all_refs["base"].get(rs.model, {}).get(rs.benchmark)
            if base is None:
                rs.note = "flagged, and no base score to replace its score with"
            else:
                rs.score, rs.source = base, FALLBACK_SOURCE

    grid_models = list(models) if models else _default_models(rows)
    refs = {role: {m: v for m, v in table.items() if m in grid_models} for role, table in all_refs.items()}
    grid = Grid(models=grid_models, benchmarks=list(benchmarks) if benchmarks else _default_benchmarks(rows),
                weights=published_weights(), weights_own=weights_from_baselines(refs), refs=refs)
    if not grid.weights_own:
        notes.append("no zero-shot base and instruct baselines in the store: own weights and normalised scores "
                     "are unavailable (measure them with `ptb baseline`, or import the published ones)")

    rng = np.random.default_rng(seed)
    replicates: dict[str, np.ndarray] = {}
    entries = []
    for key, group in _group(scored).items():
        entry = _entry(key, group, grid)
        _usage(entry, [rs for _, rs in group if rs.counted])
        if bootstrap > 0:
            cells = [c for c in entry.cells if c.model in grid.models and c.benchmark in grid.benchmarks]
            found, entry.ci_method = intervals(cells, {rs.id: rs for _, rs in group}, grid, bootstrap, rng,
                                               replicates)
            for name, ci in found.items():
                _stat_of(entry, name).ci = ci
        entries.append(entry)
    _rank(entries)
    return Leaderboard(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"), store=str(store.path),
        models=grid.models, benchmarks=grid.benchmarks, weights=grid.weights, weights_own=grid.weights_own,
        references=refs, bootstrap=bootstrap, entries=entries, runs=[rs for _, rs in scored], notes=notes,
        scorer=scorer,
    )


def _scorer_note(scorer: str, rows: list[RunRow]) -> str:
    measured = ("our scorers (`accuracy`)" if scorer == "ours"
                else "the original's scorers (`accuracy_original`, inspect_evals 0.3.103 on inspect-ai 0.3.150)")
    note = f"Measured runs are scored by {measured}."
    if any(_published(r) for r in rows):
        note += " Published rows were scored by the original's scorers" + (
            "; compare them with `--scorer original`." if scorer == "ours" else ".")
    return note


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


def _key(row: RunRow, label: str | None) -> Identity:
    if row.kind == "baseline":
        return identity(row, f"baseline:{row.agent}" + (":published" if _published(row) else ""), None)
    effort = _agent_spec(row).get("effort")
    return identity(row, f"agent:{row.agent}" + (f":{effort}" if effort else "") + f"@{row.hours:g}h", label)


def _run_score(store: Store, row: RunRow, label: str | None = None, scorer: str = "ours") -> RunScore:
    ident = _key(row, label)
    rs = RunScore(id=row.id, entry=ident.key, kind=row.kind, agent=row.agent, model=_model_of(row),
                  benchmark=row.benchmark, seed=row.seed, hours=row.hours, status=row.status, flag=row.flag,
                  time_used_s=row.time_used_s, run_dir=None if _published(row) else row.run_dir,
                  smoke=ident.smoke, label=ident.label, scorer="original" if _published(row) else scorer)
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
    if rs.scorer == "original" and not _published(row):
        return _original_score(rs, row, metrics)
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


def _original_score(rs: RunScore, row: RunRow, metrics: dict[str, dict[str, float]]) -> RunScore:
    """A measured run under the original's scorer: `accuracy_original` of the evaluation its score came from."""
    source = "base" if row.flag else (row.score_source if row.score_source in ("base", "final") else "final")
    value = metrics.get(source, {}).get("accuracy_original")
    if value is None:
        rs.note = "no accuracy_original (a graded benchmark, or evaluated without the original-scorer environment)"
    else:
        rs.score, rs.source = value, source
    return rs


def _pick(group: list[tuple[RunRow, RunScore]]) -> dict[tuple[str, str], dict[int, list[RunScore]]]:
    """Every usable run per (model, benchmark, seed), oldest first: a repeated seed is one more sample, never a
    replacement of the earlier run."""
    cells: dict[tuple[str, str], dict[int, list[RunScore]]] = {}
    for _, rs in group:
        if rs.score is not None:
            cells.setdefault((rs.model, rs.benchmark), {}).setdefault(rs.seed, []).append(rs)
    return cells


def _seed_score(runs: list[RunScore]) -> float:
    return statistics.fmean(rs.score for rs in runs)


def _references(scored: list[tuple[RunRow, RunScore]]) -> dict[str, dict[str, dict[str, float]]]:
    """Base and instruct score per (model, benchmark): our own baseline runs where present, else published."""
    refs: dict[str, dict[str, dict[str, float]]] = {"base": {}, "instruct": {}}
    for role, name in REFERENCE_ROLES.items():
        for published in (True, False):  # measured ones come second and overwrite
            group = [(r, s) for r, s in scored if r.kind == "baseline" and r.agent == name
                     and _published(r) == published and not s.smoke]
            for (model, bench), by_seed in _pick(group).items():
                refs[role].setdefault(model, {})[bench] = statistics.fmean(_seed_score(r) for r in by_seed.values())
    return refs


def _default_models(rows: list[RunRow]) -> list[str]:
    agent_models = {_model_of(r) for r in rows if r.kind == "agent"}
    return sorted(agent_models or {_model_of(r) for r in rows})


def _default_benchmarks(rows: list[RunRow]) -> list[str]:
    published = list(published_weights())
    considered = [r for r in rows if r.kind == "agent"] or rows
    return published + sorted({r.benchmark for r in considered} - set(published))


def _group(scored: list[tuple[RunRow, RunScore]]) -> dict[str, list[tuple[RunRow, RunScore]]]:
    groups: dict[str, list[tuple[RunRow, RunScore]]] = {}
    for row, rs in scored:
        groups.setdefault(rs.entry, []).append((row, rs))
    return groups


def _entry(key: str, group: list[tuple[RunRow, RunScore]], grid: Grid) -> Entry:
    row, last = group[-1]
    agent_spec = _agent_spec(row)
    if row.kind == "baseline":
        label = BASELINE_LABELS.get(row.agent, row.agent) + (" (published)" if _published(row) else "")
        scaffold, hours = None, None
    else:
        label = last.label or agent_spec.get("model") or row.agent
        if agent_spec.get("effort") and not last.label:
            label += f" ({agent_spec['effort']})"
        if agent_spec.get("command"):
            label += f" [{command_hash(agent_spec['command'])}]"
        scaffold, hours = agent_spec.get("scaffold") or row.agent.partition(":")[0], row.hours
    if last.smoke:
        label += f" (smoke: {last.smoke})"
    entry = Entry(key=key, slug=_slug(key), kind=row.kind, agent=row.agent, label=label, scaffold=scaffold,
                  hours=hours, source="published" if _published(row) else "measured", smoke=last.smoke,
                  network=row.spec.get("network") if row.kind == "agent" else None,
                  test_access=test_access(row.spec) if row.kind == "agent" else None)

    picked = _pick(group)
    for by_seed in picked.values():
        for repeats in by_seed.values():
            for index, rs in enumerate(repeats):
                rs.counted = True
                if len(repeats) > 1:
                    rs.note = f"seed {rs.seed} run {len(repeats)} times: repeat {index + 1}, averaged"

    for (model, bench), by_seed in picked.items():
        scores = {s: _seed_score(runs) for s, runs in sorted(by_seed.items())}
        samples = [rs.score for s in sorted(by_seed) for rs in by_seed[s]]
        entry.cells.append(Cell(
            model=model, benchmark=bench, scores=scores,
            runs={s: [rs.id for rs in runs] for s, runs in sorted(by_seed.items())},
            mean=statistics.fmean(samples), std=_std(samples),
            flagged=sum(1 for runs in by_seed.values() for rs in runs if rs.flag),
        ))
        entry.flagged += [rs.id for runs in by_seed.values() for rs in runs if rs.flag]
    entry.runs = sum(len(runs) for by_seed in picked.values() for runs in by_seed.values())

    present = {(c.model, c.benchmark): c for c in entry.cells
               if c.model in grid.models and c.benchmark in grid.benchmarks}
    entry.missing = [f"{m} / {b}" for m in grid.models for b in grid.benchmarks if (m, b) not in present]
    entry.seeds = sorted({s for c in present.values() for s in c.scores})

    point = grid.summaries({k: c.mean for k, c in present.items()})
    # the spread over seeds uses the seeds that fill every present cell
    full_seeds = [s for s in entry.seeds if all(s in c.scores for c in present.values())]
    per_seed = [grid.summaries({k: c.scores[s] for k, c in present.items()}) for s in full_seeds]
    complete = grid.completeness(set(present))
    for name, value in point.items():
        spread = [p[name] for p in per_seed if p[name] is not None]
        std = _std(spread) if len(spread) == len(per_seed) else None
        _assign(entry, name, Stat(value=value, std=std, complete=complete[name]))
    return entry


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
    """Highest average first, smoke tests after full runs; only full-test-set agents whose average covers the
    whole table get a rank."""
    entries.sort(key=lambda e: (e.smoke is not None, e.average.value is None, -(e.average.value or 0.0), e.label))
    rank = 0
    for entry in entries:
        if (entry.kind == "agent" and not entry.smoke and entry.average.value is not None
                and entry.average.complete):
            rank += 1
            entry.rank = rank


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) >= 2 else None


def _slug(key: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in key).strip("-").lower()
