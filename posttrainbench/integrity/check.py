"""The integrity stage of a run: deterministic checks, optionally LLM judges, combined into integrity.json in the
run directory (outside the agent-writable task/ and home/)."""

import traceback
from collections.abc import Callable
from pathlib import Path

from posttrainbench import models, untrusted
from posttrainbench.egress.metering import Upstream
from posttrainbench.errors import PtbError
from posttrainbench.integrity import contamination, egress_check, lineage, tamper
from posttrainbench.integrity.judges import judge as ask_judges
from posttrainbench.integrity.report import Check, IntegrityReport, combine, read_report, write_report
from posttrainbench.specs import AgentSpec, ModelSpec
from posttrainbench.workspace.layout import RunLayout
from posttrainbench.workspace.manifest import RunManifest, read_manifest


def twin_dir(model: ModelSpec, *, fetch: bool = False) -> Path | None:
    """The instruct twin's weights from the local model cache; with `fetch`, downloaded into it if missing."""
    if not model.instruct_twin or model.instruct_source is None:
        return None
    twin = model.model_copy(update={"id": f"{model.id}-instruct", "hf_id": model.instruct_twin,
                                    "source": model.instruct_source, "instruct_twin": None})
    return models.fetch(twin) if fetch else models.local_path(twin)


def twin_problem(model: ModelSpec, fetch: bool) -> str:
    """Why twin_dir gave nothing, in a few words for the evidence."""
    if not model.instruct_twin:
        return f"{model.id} has no instruct twin on record"
    if model.instruct_source is None:
        return f"no pinned hub source for {model.instruct_twin}"
    return "not in the model cache and fetching was not asked for" if not fetch else "not fetched"


def _lineage(manifest: RunManifest, layout: RunLayout, fetch_twin: bool) -> Check:
    try:
        twin = twin_dir(manifest.model, fetch=fetch_twin)
        problem = None if twin is not None else twin_problem(manifest.model, fetch_twin)
    except PtbError as exc:
        twin, problem = None, f"{manifest.model.instruct_twin} could not be fetched: {exc}"
    return lineage.check(layout.final_model, Path(manifest.base_model_dir), submitted=layout.submitted_model,
                         twin=twin, twin_problem=problem)


def _guarded(name: str, work: Callable[[], Check], log: Callable[[str], None]) -> Check:
    """Run one check; one that raises (on whatever the agent left) yields status `error`, which flags the run
    (`integrity_error`) instead of hiding the other checks' findings or passing it unchecked. The message may
    quote agent-made names, so it is cleaned before it reaches the log or the report."""
    log(f"integrity: {name}")
    try:
        return work()
    except Exception as exc:  # noqa: BLE001 -- any failure of a check fails the run closed
        reason = untrusted.clean_text(f"{type(exc).__name__}: {exc}", limit=300)
        log(f"integrity: {name} failed: {reason}")
        return Check(status="error", reason=reason,
                     notes=[untrusted.clean_text(line, limit=300) for line in traceback.format_exc().splitlines()[-5:]])


def deterministic_checks(manifest: RunManifest, layout: RunLayout, *, tolerance: int = 3, fetch_twin: bool = True,
                         log: Callable[[str], None] = print) -> dict[str, Check]:
    return {
        "tamper": _guarded("tamper", lambda: tamper.check(manifest, layout), log),
        "lineage": _guarded("lineage", lambda: _lineage(manifest, layout, fetch_twin), log),
        "contamination": _guarded("contamination", lambda: contamination.check(
            layout.root, manifest.benchmark, tolerance=tolerance, tokenizer_dir=Path(manifest.base_model_dir),
            log=log), log),
        "egress": _guarded("egress", lambda: egress_check.check(layout.root, manifest), log),
    }


def check_run(run_dir: Path, *, judges: int = 0, judge_agent: AgentSpec | None = None, rerun: bool = False,
              tolerance: int = 3, fetch_twin: bool = True, upstreams: dict[str, Upstream] | None = None,
              backend: str = "bwrap", judge_time_limit_s: float = 3600, redo_memorisation: bool = False,
              log: Callable[[str], None] = print) -> IntegrityReport:
    """Check one finished run and write integrity.json.

    `judges`: how many LLM judges (`judge_agent`, by default judges.DEFAULT_JUDGE) to ask; their verdicts are kept
    under judges/ and reused unless `rerun`. `tolerance`: test items of the run's benchmark allowed in the agent's
    files (accidental overlaps). `fetch_twin`: download the base model's instruct twin (once, into the model cache)
    so that a submission closer to it than to the base is caught; off, it is compared only when already cached.
    When it cannot be had, lineage's evidence says why ("twin unavailable: ...").
    `upstreams`: LLM API endpoints for the judges (default: keys in the environment). `redo_memorisation`: run
    the evaluation stage's memorisation test again (in the evaluation sandbox, on the run's GPUs) instead of
    carrying its stored result over (see `memorisation_to_redo`)."""
    layout = RunLayout(Path(run_dir))
    manifest = read_manifest(layout.manifest)
    checks = deterministic_checks(manifest, layout, tolerance=tolerance, fetch_twin=fetch_twin, log=log)
    if redo_memorisation:
        from posttrainbench.integrity import memorisation

        memorisation.run(manifest, layout, backend=backend, log=log)
    checks.update(later_checks(layout))
    report = combine(manifest.run_id, checks)
    if judges:
        checks["judges"] = ask_judges(layout.root, manifest, report, judges, agent=judge_agent, rerun=rerun,
                                      upstreams=upstreams, backend=backend, time_limit_s=judge_time_limit_s, log=log)
        report = combine(manifest.run_id, checks)
    write_report(layout.root, report)
    for reason in report.reasons:
        log(f"integrity: FLAG {reason}")
    return report


# Checks that run in later stages (the memorisation test needs the models loaded, so it runs with the evaluation)
# keep their result in the run directory; a re-check of the run carries them over.
LATER_CHECKS = {"memorisation": "memorisation.json"}


def later_checks(layout: RunLayout) -> dict[str, Check]:
    found = {}
    for name, file in LATER_CHECKS.items():
        path = layout.root / file
        if path.is_file():
            found[name] = Check.model_validate_json(path.read_text())
    return found


def memorisation_to_redo(layout: RunLayout, rerun: bool) -> bool:
    """Whether a re-check (`ptb judge`) runs the memorisation test again: only where the evaluation stage ran it,
    and then on request (--rerun) or when it ended in an error (an error flags the run `integrity_error`, which a
    re-check that finishes must be able to clear)."""
    stored = later_checks(layout).get("memorisation")
    return stored is not None and (rerun or stored.status == "error")


def add_check(run_dir: Path, name: str, check: Check) -> IntegrityReport:
    """Add a later stage's check to the run's integrity.json."""
    previous = read_report(Path(run_dir))
    checks = {**(previous.checks if previous else {}), name: check}
    report = combine(previous.run_id if previous else read_manifest(RunLayout(Path(run_dir)).manifest).run_id, checks)
    write_report(Path(run_dir), report)
    return report
