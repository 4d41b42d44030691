"""The integrity stage of a run: deterministic checks, optionally LLM judges, combined into integrity.json in the
run directory (outside the agent-writable task/ and home/)."""

import traceback
from collections.abc import Callable
from pathlib import Path

from posttrainbench.egress.metering import Upstream
from posttrainbench.integrity import contamination, egress_check, files, lineage, tamper
from posttrainbench.integrity.judges import judge as ask_judges
from posttrainbench.integrity.report import Check, IntegrityReport, combine, write_report
from posttrainbench.models.cache import local_path
from posttrainbench.specs import AgentSpec, ModelSpec
from posttrainbench.workspace.layout import RunLayout
from posttrainbench.workspace.manifest import RunManifest, read_manifest


def twin_dir(model: ModelSpec) -> Path | None:
    """The instruct twin's weights, if they are in the local model cache (never downloaded for this)."""
    if not model.instruct_twin or model.instruct_source is None:
        return None
    twin = model.model_copy(update={"id": f"{model.id}-instruct", "hf_id": model.instruct_twin,
                                    "source": model.instruct_source, "instruct_twin": None})
    return local_path(twin)


def downloads_kept(run_dir: Path) -> list[files.Found]:
    """Files the egress proxy kept of the agent's downloads, when its log names them."""
    path = egress_check.first_existing(run_dir, egress_check.EGRESS_LOGS)
    found = []
    for record in egress_check.read_jsonl(path) if path else []:
        stored = record.get("stored")
        if isinstance(stored, str) and (run_dir / stored).is_file():
            found.append(files.Found(run_dir / stored, stored, "cache"))
    return found


def _guarded(name: str, work: Callable[[], Check], log: Callable[[str], None]) -> Check:
    log(f"integrity: {name}")
    try:
        return work()
    except Exception as exc:  # noqa: BLE001 -- a broken check must not hide the others' findings
        log(f"integrity: {name} failed: {exc}")
        return Check(status="error", reason=f"{type(exc).__name__}: {exc}"[:300],
                     notes=traceback.format_exc().splitlines()[-5:])


def deterministic_checks(manifest: RunManifest, layout: RunLayout, *, tolerance: int = 3,
                         log: Callable[[str], None] = print) -> dict[str, Check]:
    base = Path(manifest.base_model_dir)
    return {
        "tamper": _guarded("tamper", lambda: tamper.check(manifest, layout), log),
        "lineage": _guarded("lineage", lambda: lineage.check(layout.final_model, base, submitted=layout.submitted_model,
                                                             twin=twin_dir(manifest.model)), log),
        "contamination": _guarded("contamination", lambda: contamination.check(
            layout.root, manifest.benchmark, tolerance=tolerance, extra=downloads_kept(layout.root), log=log), log),
        "egress": _guarded("egress", lambda: egress_check.check(layout.root, manifest), log),
    }


def check_run(run_dir: Path, *, judges: int = 0, judge_agent: AgentSpec | None = None, rerun: bool = False,
              tolerance: int = 3, upstreams: dict[str, Upstream] | None = None, backend: str = "bwrap",
              judge_time_limit_s: float = 3600, log: Callable[[str], None] = print) -> IntegrityReport:
    """Check one finished run and write integrity.json.

    `judges`: how many LLM judges (`judge_agent`, by default judges.DEFAULT_JUDGE) to ask; their verdicts are kept
    under judges/ and reused unless `rerun`. `tolerance`: test items of the run's benchmark allowed in the agent's
    files (accidental overlaps). `upstreams`: LLM API endpoints for the judges (default: keys in the environment)."""
    layout = RunLayout(Path(run_dir))
    manifest = read_manifest(layout.manifest)
    checks = deterministic_checks(manifest, layout, tolerance=tolerance, log=log)
    report = combine(manifest.run_id, checks)
    if judges:
        checks["judges"] = ask_judges(layout.root, manifest, report, judges, agent=judge_agent, rerun=rerun,
                                      upstreams=upstreams, backend=backend, time_limit_s=judge_time_limit_s, log=log)
        report = combine(manifest.run_id, checks)
    write_report(layout.root, report)
    for reason in report.reasons:
        log(f"integrity: FLAG {reason}")
    return report

