"""The original's published numbers (published.yaml) and their import into the store as baseline rows."""

from functools import cache
from pathlib import Path

import yaml

from posttrainbench.scoring.weights import BaselineTable
from posttrainbench.store import RunRow, Store

HERE = Path(__file__).parent
SOURCE = "aisa-group/PostTrainBench scripts/baselines.json and README"
# Baselines published per model, by their name in the store (RunRow.agent of kind 'baseline').
BASELINES = ("base-zeroshot", "instruct", "base-fewshot")


@cache
def _data() -> dict:
    return yaml.safe_load((HERE / "published.yaml").read_text())


def published_weights() -> dict[str, float]:
    """The seven benchmark weights of the published average (they sum to 1)."""
    return dict(_data()["weights"])


def published_averages() -> dict[str, float]:
    """The README's weighted averages of the baseline rows, as fractions: base-zeroshot, instruct."""
    return {k: v / 100 for k, v in _data()["averages"].items()}


def published_scores(baseline: str) -> dict[str, dict[str, float]]:
    """model id -> benchmark -> score (fraction) of one published baseline."""
    return {_model_id(m): dict(m[baseline]) for m in _data()["models"]}


def published_baselines() -> BaselineTable:
    """The zero-shot table the published weights were derived from: role ('base', 'instruct') -> model -> ..."""
    return {"base": published_scores("base-zeroshot"), "instruct": published_scores("instruct")}


def catalog_id(hf_id: str) -> str | None:
    """The catalog id of the model with this Hugging Face id, when the catalog has one."""
    from posttrainbench.specs import all_models

    return next((m.id for m in all_models() if m.hf_id == hf_id), None)


def _model_id(entry: dict) -> str:
    return catalog_id(entry["hf_id"]) or entry["id"]


def published_rows() -> list[RunRow]:
    """The published per-model baselines (zero-shot base, official instruct, few-shot base) as finished baseline
    rows with spec.source = 'published' and no run directory, built in memory: reading them writes nothing."""
    rows = []
    for entry in _data()["models"]:
        model = _model_id(entry)
        for name in BASELINES:
            evaluated = entry["instruct_hf_id"] if name == "instruct" else entry["hf_id"]
            for bench, value in entry[name].items():
                spec = {"source": "published", "hf_id": entry["hf_id"], "evaluated": evaluated, "citation": SOURCE}
                rows.append(RunRow(id=f"published-{name}-{model}-{bench}", kind="baseline", agent=name, model=model,
                                   benchmark=bench, seed=0, hours=0.0, run_dir="", spec=spec, status="done",
                                   created_at="", score=value, score_source="final"))
    return rows


def import_published_baselines(store: Store) -> list[str]:
    """Store the published baselines (published_rows) as runs, for a store that should keep them.
    Importing twice adds nothing. Returns the ids of the rows added."""
    existing = {r.id for r in store.runs(kind="baseline")}
    added = []
    for row in published_rows():
        if row.id in existing:
            continue
        store.add_run(row.id, kind=row.kind, agent=row.agent, model=row.model, benchmark=row.benchmark, seed=0,
                      hours=0.0, run_dir=Path(""), spec=row.spec)
        store.put_metrics(row.id, "final", {"accuracy": row.score})
        store.update(row.id, score=row.score, score_source="final")
        store.set_status(row.id, "done")
        added.append(row.id)
    return added
