"""Aggregation: published weights and averages, seeds, flags, missing cells, intervals, usage, tables."""

import json
import re
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from posttrainbench.agents.trajectory import working_seconds
from posttrainbench.errors import PtbError
from posttrainbench.scoring import (
    all_tables,
    import_published_baselines,
    leaderboard,
    published_averages,
    published_baselines,
    published_weights,
    scores_table,
    weighted_average,
    weights_from_baselines,
)
from posttrainbench.scoring.leaderboard import FALLBACK_SOURCE
from posttrainbench.store import Store

BENCHMARKS = list(published_weights())
README_NAMES = {"Qwen3-1.7B": "Qwen/Qwen3-1.7B-Base", "Qwen3-4B": "Qwen/Qwen3-4B-Base",
                "SmolLM3-3B": "HuggingFaceTB/SmolLM3-3B-Base", "Gemma-3-4B": "google/gemma-3-4b-pt"}


def _mean_table(table: dict[str, dict[str, float]]) -> dict[str, float]:
    return {b: statistics.fmean(scores[b] for scores in table.values()) for b in BENCHMARKS}


def test_published_baselines_reproduce_the_published_weights_and_averages():
    weights = weights_from_baselines(published_baselines())
    published = published_weights()
    assert set(weights) == set(published)
    for bench, value in published.items():
        assert round(weights[bench], 4) == round(value, 4), bench
        assert weights[bench] == pytest.approx(value, abs=1e-12), bench
    assert sum(weights.values()) == pytest.approx(1.0)

    tables = published_baselines()
    base = weighted_average(_mean_table(tables["base"]), published)
    instruct = weighted_average(_mean_table(tables["instruct"]), published)
    assert round(100 * base, 1) == 7.5 == 100 * published_averages()["base-zeroshot"]
    assert round(100 * instruct, 1) == 51.1 == 100 * published_averages()["instruct"]


def test_published_numbers_agree_with_the_shared_readme(shared_data):
    """published.yaml holds full-precision numbers; the README prints them rounded to one decimal."""
    text = (shared_data / "README.md").read_text()
    from posttrainbench.scoring.published import _data

    by_hf = {m["hf_id"]: m for m in _data()["models"]}
    checked = 0
    for name, hf_id in README_NAMES.items():
        line = re.search(rf"^\s*{re.escape(name)} (.*)$", text, re.M).group(1)
        pairs = re.findall(r"(\d+(?:\.\d+)?)→(\d+(?:\.\d+)?)", line)
        assert len(pairs) == len(BENCHMARKS)
        for bench, (base, inst) in zip(BENCHMARKS, pairs, strict=True):
            assert round(100 * by_hf[hf_id]["base-zeroshot"][bench], 1) == float(base), (name, bench)
            assert round(100 * by_hf[hf_id]["instruct"][bench], 1) == float(inst), (name, bench)
            checked += 1
    assert checked == 28
    weights_line = re.search(r"aime2025 (\.\d+), arenahardwriting (\.\d+), bfcl (\.\d+), gpqamain (\.\d+), "
                             r"gsm8k (\.\d+), healthbench (\.\d+), humaneval (\.\d+)", text)
    for bench, value in zip(BENCHMARKS, weights_line.groups(), strict=True):
        assert round(published_weights()[bench], 4) == float(value)


def test_imported_published_baselines_give_the_published_rows(tmp_path):
    store = Store(tmp_path / "ptb.sqlite")
    added = import_published_baselines(store)
    assert len(added) == 4 * 7 * 2 + 4 * 6  # zero-shot base and instruct; few-shot has no BFCL
    assert import_published_baselines(store) == []

    lb = leaderboard(store)
    assert len(lb.models) == 4 and lb.benchmarks == BENCHMARKS
    instruct = lb.entry("baseline:instruct:published")
    base = lb.entry("baseline:base-zeroshot:published")
    assert round(100 * instruct.average.value, 1) == 51.1 and instruct.average.complete
    assert round(100 * base.average.value, 1) == 7.5 and base.average.complete
    assert instruct.normalised.value == pytest.approx(1.0) and base.normalised.value == pytest.approx(0.0)
    for bench, value in published_weights().items():
        assert lb.weights_own[bench] == pytest.approx(value, abs=1e-12)
    assert instruct.rank is None and base.rank is None  # baselines are not ranked

    fewshot = lb.entry("baseline:base-fewshot:published")
    assert fewshot.benchmarks["bfcl"].value is None
    assert not fewshot.average.complete and fewshot.average.value is not None
    assert sorted(fewshot.missing) == sorted(f"{m} / bfcl" for m in lb.models)


# A one-model store with hand-computable numbers. Baselines: base 0.10, instruct 0.60 on every benchmark.
BASE, INSTRUCT = 0.10, 0.60


def _add(store, root, run_id, *, agent="claude:opus", kind="agent", bench="gsm8k", seed=0, score=None,
         base=None, flag=None, status="done", time_used_s=None, usage=None):
    run_dir = root / run_id
    (run_dir / "logs").mkdir(parents=True)
    spec = {"agent": {"scaffold": agent.partition(":")[0], "model": agent.partition(":")[2] or None}}
    store.add_run(run_id, kind=kind, agent=agent, model="m1", benchmark=bench, seed=seed, hours=10.0,
                  run_dir=run_dir, spec=spec)
    store.set_status(run_id, "running")
    if score is not None:
        store.put_metrics(run_id, "final", {"accuracy": score})
    if base is not None:
        store.put_metrics(run_id, "base", {"accuracy": base})
    fields = {"time_used_s": time_used_s, "flag": flag}
    if score is not None and not flag:
        fields.update(score=score, score_source="final")
    if flag and base is not None:
        fields.update(score=base, score_source="base")
    store.update(run_id, **fields)
    if usage:
        (run_dir / "logs" / "metering.jsonl").write_text("\n".join(json.dumps(u) for u in usage) + "\n")
        # what the agent stage records: wall time less the time blocked on provider retries
        start = datetime(2026, 1, 1, tzinfo=UTC)
        working = working_seconds(start.isoformat(), (start + timedelta(seconds=time_used_s)).isoformat(), usage)
        (run_dir / "logs" / "agent_exit.json").write_text(json.dumps({"working_time_s": working}))
    if status == "failed":  # the agent ran and crashed: a result, unlike a run that never started
        (run_dir / "logs" / "agent_exit.json").write_text(json.dumps({"exit_code": 1}))
    store.set_status(run_id, status, "agent crashed" if status == "failed" else None)
    return run_dir


@pytest.fixture
def synthetic(tmp_path):
    store = Store(tmp_path / "ptb.sqlite")
    root = tmp_path / "runs"
    for bench in BENCHMARKS:
        _add(store, root, f"base-{bench}", agent="base-zeroshot", kind="baseline", bench=bench, score=BASE)
        _add(store, root, f"inst-{bench}", agent="instruct", kind="baseline", bench=bench, score=INSTRUCT)
    # agent A: every cell, three seeds scoring 0.30, 0.31, 0.32
    for bench in BENCHMARKS:
        for seed in range(3):
            score = 0.30 + 0.01 * seed
            flagged = bench in ("gsm8k", "aime2025") and seed == 2
            _add(store, root, f"a-{bench}-{seed}", bench=bench, seed=seed, score=0.9 if flagged else score,
                 base=0.05 if bench == "gsm8k" and flagged else None,
                 flag="contamination: test items in train.jsonl" if flagged else None,
                 time_used_s=3600 * (5 + seed),
                 usage=[{"t": "2026-01-01T00:00:00Z", "input_tokens": 1000, "output_tokens": 100, "cost_usd": 0.5,
                         "retry_s": 600.0},
                        {"t": "2026-01-01T00:05:00Z", "input_tokens": 500, "output_tokens": 50, "cost_usd": 0.25,
                         "retry_s": 600.0}])
    # agent B: no humaneval score (one failed run, no other), one finished run without a score
    for bench in BENCHMARKS:
        if bench == "humaneval":
            _add(store, root, "b-humaneval-0", agent="codex:gpt", bench=bench, status="failed")
        elif bench == "bfcl":
            _add(store, root, "b-bfcl-0", agent="codex:gpt", bench=bench)
        else:
            _add(store, root, f"b-{bench}-0", agent="codex:gpt", bench=bench, score=0.2)
    return store


def test_seeds_and_flags(synthetic):
    lb = leaderboard(synthetic, bootstrap=200)
    assert lb.models == ["m1"] and lb.benchmarks == BENCHMARKS
    a = lb.entry("agent:claude:opus@10h")
    runs = {r.id: r for r in lb.runs}

    # the flagged run with a base evaluation gets that score; the one without gets the zero-shot baseline
    assert runs["a-gsm8k-2"].score == 0.05 and runs["a-gsm8k-2"].source == "base"
    assert runs["a-aime2025-2"].score == BASE and runs["a-aime2025-2"].source == FALLBACK_SOURCE
    assert sorted(a.flagged) == ["a-aime2025-2", "a-gsm8k-2"]

    expected_cells = {b: statistics.fmean([0.30, 0.31, 0.32]) for b in BENCHMARKS}
    expected_cells["gsm8k"] = statistics.fmean([0.30, 0.31, 0.05])
    expected_cells["aime2025"] = statistics.fmean([0.30, 0.31, BASE])
    for bench, value in expected_cells.items():
        assert a.benchmarks[bench].value == pytest.approx(value)
    weights = published_weights()
    assert a.average.value == pytest.approx(sum(weights[b] * v for b, v in expected_cells.items()))
    assert a.average.complete and a.rank == 1

    per_seed = [sum(weights[b] * (0.30 + 0.01 * s) for b in BENCHMARKS) for s in range(3)]
    per_seed[2] += weights["gsm8k"] * (0.05 - 0.32) + weights["aime2025"] * (BASE - 0.32)
    assert a.average.std == pytest.approx(statistics.stdev(per_seed))
    assert a.benchmarks["humaneval"].std == pytest.approx(0.01)

    # own weights from the store's baselines: equal gaps give equal weights
    assert all(w == pytest.approx(1 / 7) for w in lb.weights_own.values())
    assert a.average_own.value == pytest.approx(statistics.fmean(expected_cells.values()))
    gap = INSTRUCT - BASE
    assert a.normalised.value == pytest.approx(statistics.fmean((v - BASE) / gap for v in expected_cells.values()))

    lo, hi = a.average.ci
    assert lo < a.average.value < hi
    assert a.ci_method.startswith("seeds only")


def test_missing_cells_stay_missing(synthetic):
    lb = leaderboard(synthetic, bootstrap=0)
    b = lb.entry("agent:codex:gpt@10h")
    runs = {r.id: r for r in lb.runs}
    assert runs["b-humaneval-0"].score is None and "failed" in runs["b-humaneval-0"].note
    assert runs["b-bfcl-0"].score is None and runs["b-bfcl-0"].note == "finished without a score"
    assert b.benchmarks["humaneval"].value is None and b.benchmarks["bfcl"].value is None
    assert sorted(b.missing) == ["m1 / bfcl", "m1 / humaneval"]
    assert not b.average.complete and b.rank is None
    weights = published_weights()
    present = [k for k in BENCHMARKS if k not in ("humaneval", "bfcl")]
    assert b.average.value == pytest.approx(0.2 * sum(weights[k] for k in present) / sum(weights[k] for k in present))
    assert b.average.std is None and b.average.ci is None  # one seed, no items
    assert b.models["m1"].value == pytest.approx(0.2) and not b.models["m1"].complete

    rows = {r["key"]: r for r in next(t for t in all_tables(lb) if t.name == "leaderboard").rows}
    assert rows["agent:codex:gpt@10h"]["humaneval"] is None  # not 0
    assert rows["agent:codex:gpt@10h"]["average_complete"] is False


def test_usage_and_time(synthetic):
    lb = leaderboard(synthetic, bootstrap=0)
    a = lb.entry("agent:claude:opus@10h")
    assert a.runs == 21
    assert a.tokens == 21 * 1650 and a.cost_usd == pytest.approx(21 * 0.75)
    assert a.cost_per_run == pytest.approx(0.75) and a.usage_runs == 21
    assert a.time_used == pytest.approx(0.6) and a.time_used_min == pytest.approx(0.5)
    assert a.time_used_max == pytest.approx(0.7)
    # two overlapping 10-minute retry waits (00:00-00:10, 00:05-00:15) block the agent for 15 minutes
    assert a.working_time_s == pytest.approx(3600 * 6 - 900)
    b = lb.entry("agent:codex:gpt@10h")
    assert b.cost_usd is None and b.tokens is None and b.time_used is None


def test_scores_table_views(synthetic):
    console = Console(record=True, width=250)
    console.print(scores_table(synthetic, "agent", bootstrap=0))
    text = console.export_text()
    assert "opus" in text and "gpt" in text and "—" in text and "Base zero-shot" in text
    for view in ("benchmark", "model", "run"):
        console.print(scores_table(synthetic, view, bootstrap=0))
    assert "b-humaneval-0" in console.export_text()
    with pytest.raises(PtbError, match="unknown view"):
        scores_table(synthetic, "nonsense")


def test_hours_filter_keeps_other_budgets_apart(synthetic, tmp_path):
    run_dir = tmp_path / "short"
    synthetic.add_run("short-1", kind="agent", agent="claude:opus", model="m1", benchmark="gsm8k", seed=0,
                      hours=1.0, run_dir=run_dir, spec={})
    synthetic.update("short-1", score=0.5, score_source="final")
    synthetic.set_status("short-1", "done")
    keys = {e.key for e in leaderboard(synthetic, bootstrap=0).entries}
    assert {"agent:claude:opus@10h", "agent:claude:opus@1h"} <= keys
    keys = {e.key for e in leaderboard(synthetic, bootstrap=0, hours=1.0).entries}
    assert "agent:claude:opus@10h" not in keys and "agent:claude:opus@1h" in keys


@pytest.fixture(scope="module")
def inspect_log(tmp_path_factory) -> Path:
    """A real inspect log of 30 items (10 correct), from a solver that answers without a model."""
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ModelOutput
    from inspect_ai.scorer import match
    from inspect_ai.solver import solver

    @solver
    def canned():
        async def solve(state, generate):
            answer = "42" if int(state.sample_id) % 3 == 0 else "7"
            state.output = ModelOutput.from_content(model="mockllm/model", content=answer)
            return state

        return solve

    log_dir = tmp_path_factory.mktemp("inspect")
    samples = [Sample(id=i, input=f"question {i}", target="42") for i in range(30)]
    [log] = inspect_eval(Task(dataset=samples, solver=canned(), scorer=match()), model="mockllm/model",
                         log_dir=str(log_dir), log_format="json", display="none")
    assert log.status == "success"
    return Path(log.location)


def test_bootstrap_over_items(tmp_path, inspect_log):
    from posttrainbench.scoring.items import item_scores

    store = Store(tmp_path / "ptb.sqlite")
    run_dir = _add(store, tmp_path / "runs", "only", bench="aime2025", score=1 / 3)
    logs = run_dir / "results" / "final" / "logs"
    logs.mkdir(parents=True)
    (logs / inspect_log.name).write_bytes(inspect_log.read_bytes())
    items = item_scores(run_dir, "final")
    assert len(items) == 30 and items.sum() == 10

    lb = leaderboard(store, bootstrap=500)
    entry = lb.entry("agent:claude:opus@10h")
    assert entry.ci_method == "items only (one seed per cell)"
    assert next(r for r in lb.runs if r.id == "only").items == 30
    lo, hi = entry.benchmarks["aime2025"].ci
    # binomial standard error of 10/30 is 0.086: a 95% interval spans roughly ±0.17
    assert 0.08 < lo < 1 / 3 < hi < 0.6
    assert hi - lo > 0.2
    assert entry.benchmarks["gsm8k"].value is None


def test_original_scorer_uses_accuracy_original_and_says_so(tmp_path):
    store = Store(tmp_path / "ptb.sqlite")
    root = tmp_path / "runs"
    _add(store, root, "r-ours", bench="gsm8k", score=0.9)
    store.put_metrics("r-ours", "final", {"accuracy": 0.9, "accuracy_original": 0.6})
    _add(store, root, "r-old", bench="aime2025", score=0.4)  # evaluated before accuracy_original existed
    ours = {r.id: r for r in leaderboard(store, bootstrap=0).runs}
    assert (ours["r-ours"].score, ours["r-ours"].scorer) == (0.9, "ours")
    lb = leaderboard(store, bootstrap=0, scorer="original")
    runs = {r.id: r for r in lb.runs}
    assert (runs["r-ours"].score, runs["r-ours"].scorer, runs["r-ours"].source) == (0.6, "original", "final")
    assert runs["r-old"].score is None and "accuracy_original" in runs["r-old"].note
    assert lb.scorer == "original" and "original's scorers" in lb.notes[0]
    console = Console(record=True, width=250)
    console.print(scores_table(store, by="agent", bootstrap=0, scorer="original"))
    console.print(scores_table(store, by="run", bootstrap=0, scorer="original"))
    text = console.export_text()
    assert "scorer: original" in text and "60.0" in text
    with pytest.raises(PtbError, match="unknown scorer"):
        leaderboard(store, scorer="theirs")

    # the intervals resample the original's per-item verdicts
    final = root / "r-ours" / "results" / "final"
    final.mkdir(parents=True)
    verdicts = [1.0] * 6 + [0.0] * 4
    (final / "items.jsonl").write_text("".join(
        json.dumps({"id": i, "accuracy": 1.0, "accuracy_original": v}) + "\n" for i, v in enumerate(verdicts)))
    run = next(r for r in leaderboard(store, bootstrap=200, scorer="original").runs if r.id == "r-ours")
    assert run.items == 10
def _agent_run(store, root, run_id, *, score, seed=0, bench="gsm8k", **spec):
    run_dir = root / run_id
    (run_dir / "logs").mkdir(parents=True)
    agent = spec.pop("agent", {"scaffold": "claude", "model": "opus"})
    name = "command" if agent["scaffold"] == "command" else f"{agent['scaffold']}:{agent['model']}"
    store.add_run(run_id, kind="agent", agent=name, model="m1", benchmark=bench, seed=seed, hours=10.0,
                  run_dir=run_dir, spec={"agent": agent, **spec})
    store.set_status(run_id, "running")
    if score is not None:
        store.update(run_id, score=score, score_source="final")
        store.set_status(run_id, "done")


def test_repeated_seed_is_one_more_sample_not_a_replacement(tmp_path):
    store = Store(tmp_path / "ptb.sqlite")
    _agent_run(store, tmp_path, "first", score=0.2)
    _agent_run(store, tmp_path, "again", score=0.4)
    lb = leaderboard(store, bootstrap=0, benchmarks=["gsm8k"])
    [entry] = lb.entries
    [cell] = entry.cells
    assert cell.runs == {0: ["first", "again"]} and cell.mean == pytest.approx(0.3) and entry.runs == 2
    assert all(r.counted and "repeat" in r.note for r in lb.runs)


def test_entry_is_the_full_agent_definition(tmp_path):
    store = Store(tmp_path / "ptb.sqlite")
    command = {"scaffold": "command", "command": ["python", "a.py"]}
    _agent_run(store, tmp_path, "cmd-a", score=0.5, agent=command)
    _agent_run(store, tmp_path, "cmd-b", score=0.1, agent={**command, "command": ["true"]})
    _agent_run(store, tmp_path, "opus-open", score=0.3, network="open")
    _agent_run(store, tmp_path, "opus-hidden", score=0.3, test_access="hidden")
    _agent_run(store, tmp_path, "opus", score=0.3, network="proxied")
    _agent_run(store, tmp_path, "opus-smoke", score=0.9, limit=2)
    lb = leaderboard(store, bootstrap=0, benchmarks=["gsm8k"])
    by_run = {r.id: r.entry for r in lb.runs}
    assert len(set(by_run.values())) == 6  # no two of these runs share an entry
    assert by_run["opus"] == "agent:claude:opus@10h"  # defaults add nothing to the key
    assert by_run["opus-open"].endswith("+net=open") and by_run["opus-hidden"].endswith("+tests=hidden")
    smoke = lb.entry(by_run["opus-smoke"])
    assert smoke.smoke == "2 items" and smoke.rank is None and "smoke" in smoke.label
    assert lb.entries[-1] is smoke  # shown after every full-test-set entry
    full = lb.entry("agent:claude:opus@10h")
    assert full.benchmarks["gsm8k"].value == pytest.approx(0.3) and not full.smoke


def test_grid_labels_and_grid_selection(tmp_path):
    from posttrainbench.executors.cells import Cells
    from posttrainbench.specs.grid import expand, load_grid

    path = tmp_path / "g.yaml"
    path.write_text("agents:\n  - {scaffold: claude, model: opus, label: mine}\n  - {scaffold: codex, model: gpt}\n"
                    "models: [smollm2-135m]\nbenchmarks: [gsm8k]\n")
    grid = load_grid(path)
    cells = expand(grid)
    store = Store(tmp_path / "ptb.sqlite")
    Cells(store).register(grid, cells, runs_dir=tmp_path, source=path)
    for cell, run_id in zip(cells, ("in-grid-a", "in-grid-b"), strict=True):
        agent = cell.spec.agent.model_dump()
        _agent_run(store, tmp_path, run_id, score=0.4, agent=agent)
        Cells(store).update(grid.name, cell.key, run_id=run_id)
    _agent_run(store, tmp_path, "outside", score=0.1)

    lb = leaderboard(store, bootstrap=0)
    by_run = {r.id: r.entry for r in lb.runs}
    assert by_run["in-grid-a"] == "agent:claude:opus@10h+label=mine" != by_run["outside"]
    assert lb.entry(by_run["in-grid-a"]).label == "mine"
    selected = leaderboard(store, bootstrap=0, grid="g")
    assert {r.id for r in selected.runs} == {"in-grid-a", "in-grid-b"}
    assert selected.models == ["smollm2-135m"] and selected.benchmarks == ["gsm8k"]
    with pytest.raises(PtbError, match="no grid 'nope'"):
        leaderboard(store, grid="nope")


def test_published_baselines_are_read_without_writing(tmp_path):
    store = Store(tmp_path / "ptb.sqlite")
    lb = leaderboard(store, published=True, bootstrap=0)
    assert round(100 * lb.entry("baseline:instruct:published").average.value, 1) == 51.1
    assert store.runs() == []


def test_runs_that_never_started_are_not_results(tmp_path):
    store = Store(tmp_path / "ptb.sqlite")
    _agent_run(store, tmp_path, "no-gpu", score=None)
    store.set_status("no-gpu", "failed", "no GPU")
    _agent_run(store, tmp_path, "crashed", score=None)
    (tmp_path / "crashed" / "logs" / "agent_exit.json").write_text("{}")
    store.set_status("crashed", "failed", "agent crashed")
    assert {r.id for r in leaderboard(store, bootstrap=0).runs} == {"crashed"}
