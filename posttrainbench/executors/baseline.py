"""Measured baselines, stored like runs (kind 'baseline'): the base model zero-shot and few-shot, the official
instruct twin, and the reference agent. Each row's agent name matches the published baselines' so the leaderboard
puts measured and published numbers side by side (measured ones win)."""

import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from posttrainbench import models, paths
from posttrainbench.errors import PtbError
from posttrainbench.executors.evaluate import run_evaluation
from posttrainbench.executors.pipeline import create_run, execute
from posttrainbench.specs import AgentSpec, RunSpec, get_benchmark, get_model
from posttrainbench.store import RunRow, Store

KINDS = ("zeroshot", "fewshot", "instruct", "reference")
AGENT_NAMES = {"zeroshot": "base-zeroshot", "fewshot": "base-fewshot", "instruct": "instruct",
               "reference": "reference"}


def instruct_twin(model_id: str):
    """The instruct twin as a model spec of its own, fetched at its pinned revision."""
    base = get_model(model_id)
    if not base.instruct_twin or base.instruct_source is None:
        raise PtbError(f"model {base.id} has no instruct twin in the catalog")
    return base.model_copy(update={"id": f"{base.id}-instruct", "hf_id": base.instruct_twin,
                                   "source": base.instruct_source, "instruct_twin": None,
                                   "instruct_source": None})


def run_baseline(store: Store, kind: str, model_id: str, benchmark: str, *, limit: int | None = None,
                 max_tokens: int | None = None, hours: float = 10.0, gpus: int = 1, shots: int | None = None,
                 log: Callable[[str], None] = print) -> RunRow:
    check_request(kind, [benchmark], shots)
    base = get_model(model_id)
    if kind == "reference":
        spec = RunSpec(agent=AgentSpec(scaffold="reference"), model=base.id, benchmark=benchmark, hours=hours,
                       gpus=gpus, limit=limit, max_tokens=max_tokens)
        manifest = create_run(spec, store, kind="baseline")
        return execute(paths.runs_dir() / manifest.run_id, store, log=log)

    evaluated = instruct_twin(base.id) if kind == "instruct" else base
    model_dir = models.fetch(evaluated)
    run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    run_dir = paths.runs_dir() / run_id
    spec = {"source": "measured", "evaluated": evaluated.hf_id,
            **settings(kind, limit=limit, max_tokens=max_tokens, hours=hours, gpus=gpus, shots=shots)}
    store.add_run(run_id, kind="baseline", agent=AGENT_NAMES[kind], model=base.id, benchmark=benchmark, seed=0,
                  hours=0.0, run_dir=run_dir, spec=spec)
    store.set_status(run_id, "running")
    store.stage_start(run_id, "evaluate")
    try:
        metrics = run_evaluation(model_dir, benchmark, base_model=base.id, out_dir=run_dir / "results" / "final",
                                 limit=limit, max_tokens=max_tokens, fewshot_mode=kind == "fewshot", shots=shots,
                                 label=evaluated.hf_id,
                                 metadata={"label": "baseline", "baseline": kind, "run_id": run_id}, log=log)
    except BaseException as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        store.stage_end(run_id, "evaluate", error=message)
        store.set_status(run_id, "failed", message)
        raise
    store.stage_end(run_id, "evaluate")
    store.put_metrics(run_id, "final", metrics)
    store.update(run_id, score=metrics["accuracy"], score_source="final")
    store.set_status(run_id, "done")
    return store.get(run_id)


def check_request(kind: str, benchmarks: list[str], shots: int | None) -> None:
    if kind not in KINDS:
        raise PtbError(f"unknown baseline '{kind}'; valid: {', '.join(KINDS)}")
    if shots is not None and kind != "fewshot":
        raise PtbError("--shots applies to the fewshot baseline only")
    for benchmark in benchmarks:
        get_benchmark(benchmark)
        if kind == "fewshot":
            from posttrainbench.evaluation.fewshot import check_shots

            check_shots(benchmark, shots)


def settings(kind: str, *, limit: int | None, max_tokens: int | None, hours: float, gpus: int,
             shots: int | None) -> dict:
    """What makes two measurements of one baseline comparable: equal settings, equal numbers."""
    if kind == "reference":
        return {"limit": limit, "max_tokens": max_tokens, "hours": hours, "gpus": gpus}
    return {"limit": limit, "max_tokens": max_tokens} | ({"shots": shots} if kind == "fewshot" else {})


def measured(store: Store, kind: str, model: str, benchmark: str, wanted: dict) -> RunRow | None:
    """The latest finished measurement of this baseline with these settings, if any."""
    for row in reversed(store.runs(kind="baseline", agent=AGENT_NAMES[kind], model=model, benchmark=benchmark)):
        if row.status == "done" and row.spec.get("source", "measured") == "measured" and all(
            row.spec.get(key) == value for key, value in wanted.items()
        ):
            return row
    return None


def measure_all(store: Store, kind: str, model_ids: list[str], benchmarks: list[str], *, limit: int | None = None,
                max_tokens: int | None = None, hours: float = 10.0, gpus: int = 1, shots: int | None = None,
                again: bool = False, log: Callable[[str], None] = print) -> list[tuple[str, str, RunRow | str]]:
    """Measure one baseline for every model × benchmark, one after the other.

    A cell already measured with the same settings is kept (unless `again`), so an interrupted sweep resumes where
    it stopped. A failed cell does not stop the others; the result lists a row or an error per cell."""
    models = [get_model(m).id for m in model_ids]
    benches = [get_benchmark(b).id for b in benchmarks]
    check_request(kind, benches, shots)  # bad input fails before the first cell, not once per cell
    graded = [b for b in benches if get_benchmark(b).grader]
    if graded:
        from posttrainbench.evaluation.grader import grader_from_env

        try:
            grader_from_env()
        except PtbError as exc:
            raise PtbError(f"{', '.join(graded)}: {exc}") from None
    wanted = settings(kind, limit=limit, max_tokens=max_tokens, hours=hours, gpus=gpus, shots=shots)
    cells = [(m, b) for m in models for b in benches]
    results: list[tuple[str, str, RunRow | str]] = []
    for number, (model, benchmark) in enumerate(cells, start=1):
        where = f"[{number}/{len(cells)}] {kind} {model} × {benchmark}"
        done = None if again else measured(store, kind, model, benchmark, wanted)
        if done is not None:
            log(f"{where}: already measured ({done.id})")
            results.append((model, benchmark, done))
            continue
        log(f"{where}: measuring")
        try:
            row = run_baseline(store, kind, model, benchmark, limit=limit, max_tokens=max_tokens, hours=hours,
                               gpus=gpus, shots=shots, log=log)
        except PtbError as exc:
            log(f"{where}: failed: {exc}")
            results.append((model, benchmark, str(exc)))
            continue
        results.append((model, benchmark, row))
    return results
