"""One run, stage by stage: prepare → agent → collect → evaluate → score.

Every stage reads the manifest and writes its own file into the run directory; the store records each stage's
status, so a run can be resumed after any crash and a finished stage is never repeated."""

import json
import traceback
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from posttrainbench import paths
from posttrainbench.agents.launch import agent_failure, run_agent
from posttrainbench.errors import PtbError
from posttrainbench.executors import facts
from posttrainbench.executors.evaluate import evaluate_base, evaluate_model
from posttrainbench.integrity import check_run, memorisation, read_report
from posttrainbench.specs import RunSpec
from posttrainbench.store import RunRow, Store
from posttrainbench.workspace.collect import CollectResult, collect
from posttrainbench.workspace.layout import RunLayout
from posttrainbench.workspace.manifest import RunManifest, read_manifest
from posttrainbench.workspace.prepare import prepare


class Score(BaseModel):
    score: float | None
    source: str  # "final": the agent's model; "base": the base model's score stands in
    reason: str | None = None
    base: float | None = None
    final: float | None = None
    test_access: str | None = None  # hidden or visible: whether the test data was in the agent's sandbox


def create_run(spec: RunSpec, store: Store, *, runs_dir: Path | None = None, kind: str = "agent") -> RunManifest:
    runs_dir = runs_dir or paths.runs_dir()
    manifest = prepare(spec, runs_dir=runs_dir, kind=kind)
    store.add_run(
        manifest.run_id,
        kind=kind,
        agent=spec.agent.name,
        model=spec.model,
        benchmark=spec.benchmark,
        seed=spec.seed,
        hours=spec.hours,
        run_dir=runs_dir / manifest.run_id,
        spec=spec.model_dump(),
    )
    store.stage_start(manifest.run_id, "prepare")
    store.stage_end(manifest.run_id, "prepare")
    return manifest


def _stage(store: Store, run_id: str, name: str, work: Callable[[], None], log: Callable[[str], None]) -> None:
    if store.stage_done(run_id, name):
        log(f"{name}: already done")
        return
    log(f"{name}: started")
    store.stage_start(run_id, name)
    layout = RunLayout(Path(store.get(run_id).run_dir))
    facts.stage_facts(layout).unlink(missing_ok=True)
    try:
        work()
    except BaseException as exc:
        # What the failure classification goes by: measured here, not parsed later out of the message.
        facts.record(facts.stage_facts(layout), facts.measure(layout, name, exc))
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        store.stage_end(run_id, name, error=message)
        if not isinstance(exc, PtbError | KeyboardInterrupt):
            (layout.logs / f"{name}.traceback").write_text(traceback.format_exc())
        raise
    store.stage_end(run_id, name)
    log(f"{name}: done")


def execute(run_dir: Path, store: Store, *, backend: str | None = None, log: Callable[[str], None] = print) -> RunRow:
    layout = RunLayout(Path(run_dir))
    manifest = read_manifest(layout.manifest)
    run_id = manifest.run_id
    store.set_status(run_id, "running")
    try:
        _stage(store, run_id, "agent", lambda: _agent(manifest, layout, backend or manifest.spec.sandbox, log), log)
        _stage(store, run_id, "collect", lambda: _collect(manifest, layout), log)
        _stage(store, run_id, "integrity", lambda: _integrity(layout, log), log)
        _stage(store, run_id, "evaluate", lambda: _evaluate(manifest, layout, store, log, backend or manifest.spec.sandbox),
               log)
        _stage(store, run_id, "score", lambda: _score(manifest, layout, store), log)
    except BaseException as exc:
        store.set_status(run_id, "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    row = store.get(run_id)
    store.set_status(run_id, "done", row.error)
    return store.get(run_id)


def rescore(run_dir: Path, store: Store) -> RunRow:
    """Recompute a finished run's score, e.g. after `ptb judge` added verdicts to integrity.json."""
    layout = RunLayout(Path(run_dir))
    manifest = read_manifest(layout.manifest)
    _score(manifest, layout, store)
    return store.get(manifest.run_id)


def _agent(manifest: RunManifest, layout: RunLayout, backend: str, log: Callable[[str], None]) -> None:
    info = run_agent(manifest, layout, backend=backend)
    if info.limit is not None:
        log(f"agent: {info.detail}")  # the harness's own words: which limit, how far
    elif failure := agent_failure(layout):
        log(f"agent: {failure}")


def limit_hit(layout: RunLayout) -> str | None:
    """`limit: memory` (pids, disk) when the agent's sandbox ended at a resource limit: its own failure, scored as
    the base model."""
    if not layout.agent_exit.is_file():
        return None
    limit = json.loads(layout.agent_exit.read_text()).get("limit")
    return f"limit: {limit}" if limit in ("memory", "pids", "disk") else None


def _collect(manifest: RunManifest, layout: RunLayout) -> None:
    result = collect(layout.submitted_model, layout.final_model, Path(manifest.base_model_dir))
    (layout.root / "collect.json").write_text(result.model_dump_json(indent=2))


def _integrity(layout: RunLayout, log: Callable[[str], None]) -> None:
    report = check_run(layout.root, log=log)
    for reason in report.reasons:
        log(f"integrity: {reason}")


def _evaluate(manifest: RunManifest, layout: RunLayout, store: Store, log: Callable[[str], None],
              backend: str) -> None:
    base = evaluate_base(manifest, layout, log=log)
    store.put_metrics(manifest.run_id, "base", base)
    collected = CollectResult.model_validate_json((layout.root / "collect.json").read_text())
    if collected.status != "ok" or limit_hit(layout):
        return
    memorisation.run(manifest, layout, backend=backend, log=log)
    try:
        final = evaluate_model(manifest, layout.final_model, layout.results("final"), backend=backend, log=log,
                               state_file=layout.progress)
    except PtbError as exc:
        (layout.results("final")).mkdir(parents=True, exist_ok=True)
        (layout.results("final") / "error.txt").write_text(str(exc))
        facts.record(facts.evaluation_facts(layout), facts.measure(layout, "evaluate", exc))
        return
    store.put_metrics(manifest.run_id, "final", final)


def _score(manifest: RunManifest, layout: RunLayout, store: Store) -> None:
    metrics = store.metrics(manifest.run_id)
    base = metrics.get("base", {}).get("accuracy")
    final = metrics.get("final", {}).get("accuracy")
    collected = CollectResult.model_validate_json((layout.root / "collect.json").read_text())
    integrity = read_report(layout.root)
    flags = [name for name, raised in integrity.flags.items() if raised] if integrity else []
    if flags:
        score = Score(score=base, source="base", reason="flagged: " + "; ".join(integrity.reasons), base=base,
                      final=final)
    elif limit_hit(layout):
        score = Score(score=base, source="base", reason=limit_hit(layout), base=base)
    elif final is not None:
        score = Score(score=final, source="final", base=base, final=final)
    else:
        error_file = layout.results("final") / "error.txt"
        reason = collected.reason if collected.status != "ok" else error_file.read_text().strip()
        failure = agent_failure(layout)
        if collected.status != "ok" and failure:
            reason = f"{reason}; agent {failure}"
        score = Score(score=base, source="base", reason=reason, base=base)
    score.test_access = manifest.spec.test_access
    (layout.root / "score.json").write_text(score.model_dump_json(indent=2))
    time_used = json.loads(layout.agent_exit.read_text()).get("wall_seconds") if layout.agent_exit.exists() else None
    store.update(manifest.run_id, score=score.score, score_source=score.source, error=score.reason,
                 time_used_s=time_used, flag=", ".join(flags) or None)
