"""Tokens, cost and working time of one agent run, from the artifacts the metering proxy and the trajectory
converter leave in its run directory. Absent artifacts give None, never zero."""

import json
from pathlib import Path

from pydantic import BaseModel

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

    @property
    def tokens(self) -> int | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)


def find(run_dir: Path, names: tuple[str, ...]) -> Path | None:
    return next((run_dir / n for n in names if (run_dir / n).is_file()), None)


def read_jsonl(path: Path) -> list[dict]:
    records = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def run_usage(run_dir: Path) -> Usage:
    """Sums the metering log's calls (input_tokens, output_tokens, cost_usd per line); without one, the
    trajectory's per-step tokens and cost. Working time is `working_time_s` of agent_exit.json or the manifest."""
    run_dir = Path(run_dir)
    usage = Usage()
    path = find(run_dir, METERING) or find(run_dir, TRAJECTORY)
    if path is not None:
        _sum_records(usage, read_jsonl(path))
        usage.source = str(path.relative_to(run_dir))
    for name in EXIT_FILES:
        value = _json_key(run_dir / name, "working_time_s")
        if isinstance(value, int | float):
            usage.working_time_s = float(value)
            break
    return usage


def _sum_records(usage: Usage, records: list[dict]) -> None:
    for rec in records:
        tokens = rec.get("tokens")
        tin = rec.get("input_tokens", tokens.get("input") if isinstance(tokens, dict) else None)
        tout = rec.get("output_tokens", tokens.get("output") if isinstance(tokens, dict) else None)
        cost = rec.get("cost_usd", rec.get("cost"))
        if isinstance(tin, int | float):
            usage.input_tokens = (usage.input_tokens or 0) + int(tin)
        if isinstance(tout, int | float):
            usage.output_tokens = (usage.output_tokens or 0) + int(tout)
        if isinstance(cost, int | float):
            usage.cost_usd = (usage.cost_usd or 0.0) + float(cost)


def _json_key(path: Path, key: str):
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data.get(key) if isinstance(data, dict) else None
