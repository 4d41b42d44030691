"""Tokens, cost and working time of one agent run, from the metering proxy's log (one JSON line per LLM call:
t, input_tokens, output_tokens, cost_usd, retry_s, ...) or, without it, the proxy's totals at the end of
trajectory.jsonl. Absent artifacts give None, never zero."""

import json
from pathlib import Path

from pydantic import BaseModel

from posttrainbench.workspace.records import first_file, read_records

# Where the artifacts may lie, relative to the run directory, in order of preference.
METERING = ("logs/metering.jsonl", "metering.jsonl")
TRAJECTORY = ("trajectory.jsonl", "logs/trajectory.jsonl")
EXIT_FILES = ("logs/agent_exit.json", "manifest.json")


class Usage(BaseModel):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    working_time_s: float | None = None
    source: str | None = None  # the file the tokens and cost came from


def run_usage(run_dir: Path) -> Usage:
    """Tokens and cost from the metering log (or the trajectory's proxy totals); working time as the agent stage
    recorded it in agent_exit.json (wall time less the time blocked on provider retries)."""
    run_dir = Path(run_dir)
    usage = Usage()
    metering = first_file(run_dir, METERING)
    if metering is not None:
        _add(usage, read_records(metering))
        usage.source = str(metering.relative_to(run_dir))
    elif (trajectory := first_file(run_dir, TRAJECTORY)) is not None:
        totals = [e for e in read_records(trajectory) if e.get("kind") == "result" and e.get("source") == "proxy"]
        if totals:
            tokens = totals[-1].get("tokens") or {}
            _add(usage, [{"input_tokens": tokens.get("input"), "output_tokens": tokens.get("output"),
                          "cost_usd": totals[-1].get("cost_usd")}])
            usage.source = str(trajectory.relative_to(run_dir))
    usage.working_time_s = _recorded_working_time(run_dir)
    return usage


def _add(usage: Usage, records: list[dict]) -> None:
    for rec in records:
        tin, tout, cost = rec.get("input_tokens"), rec.get("output_tokens"), rec.get("cost_usd")
        if isinstance(tin, int | float):
            usage.input_tokens = (usage.input_tokens or 0) + int(tin)
        if isinstance(tout, int | float):
            usage.output_tokens = (usage.output_tokens or 0) + int(tout)
        if isinstance(cost, int | float):
            usage.cost_usd = (usage.cost_usd or 0.0) + float(cost)


def _recorded_working_time(run_dir: Path) -> float | None:
    for name in EXIT_FILES:
        try:
            data = json.loads((run_dir / name).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        value = data.get("working_time_s") if isinstance(data, dict) else None
        if isinstance(value, int | float):
            return float(value)
    return None
