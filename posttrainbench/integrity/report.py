"""integrity.json: what each check found, the flags it raised and the evidence for them.

A flag is a confirmed violation: the harness replaces the run's score with the base model's. Deterministic checks
raise flags on their own; LLM judges raise one only by majority. A check that could not finish (status `error`)
raises `integrity_error`: the run fails closed, scored as the base model with the error shown, until a reviewer
runs the checks again (`ptb judge RUN --rerun`) and they finish."""

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

FLAGS = ("contamination", "disallowed_model", "tamper", "api_misuse", "integrity_error")
ERROR_FLAG = "integrity_error"
REPORT = "integrity.json"

Status = Literal["pass", "flag", "skipped", "error"]


class Check(BaseModel):
    status: Status
    reason: str  # one line
    flags: list[str] = []
    evidence: list[dict[str, Any]] = []
    numbers: dict[str, Any] = {}
    notes: list[str] = []  # worth a reviewer's look, not a violation by itself


class IntegrityReport(BaseModel):
    schema_version: int = 1
    run_id: str
    checked_at: str
    flags: dict[str, bool]
    flagged: bool
    reasons: list[str]  # one line per raised flag: "tamper: ..."
    checks: dict[str, Check]


def combine(run_id: str, checks: dict[str, Check]) -> IntegrityReport:
    flags = dict.fromkeys(FLAGS, False)
    reasons = []
    for name, check in checks.items():
        raised = [*check.flags, *([ERROR_FLAG] if check.status == "error" and ERROR_FLAG not in check.flags else [])]
        for flag in raised:
            flags[flag] = True
            reasons.append(f"{flag}: {check.reason}" + ("" if name == flag else f" ({name})"))
    return IntegrityReport(
        run_id=run_id,
        checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
        flags=flags,
        flagged=any(flags.values()),
        reasons=reasons,
        checks=checks,
    )


def write_report(run_dir: Path, report: IntegrityReport) -> Path:
    path = Path(run_dir) / REPORT
    tmp = path.with_suffix(".tmp")
    tmp.write_text(report.model_dump_json(indent=2))
    os.replace(tmp, path)
    return path


def read_report(run_dir: Path) -> IntegrityReport | None:
    path = Path(run_dir) / REPORT
    return IntegrityReport.model_validate_json(path.read_text()) if path.is_file() else None
