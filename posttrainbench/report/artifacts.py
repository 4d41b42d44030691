"""Reads what other stages left in a run directory into plain data for the run page. Every reader returns
None when its artifact is absent, so the page can say 'not available'."""

import json
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from posttrainbench import untrusted
from posttrainbench.scoring.usage import TRAJECTORY
from posttrainbench.workspace.records import first_file, read_records
from posttrainbench.workspace.layout import RunLayout

MAX_TEXT = 4000  # characters of one trajectory field shown before it is cut
MAX_STEPS = 2000
LOG_TAIL_LINES = 200
LIST_LIMIT = 50

# Field names of the trajectory format (agents/trajectory.py) first, then common alternatives.
_TIME = ("t", "time", "ts", "timestamp")
_KIND = ("kind", "type", "role", "event")
_TEXT = ("text", "assistant", "content", "message", "thinking")
_TOOL_INPUT = ("input", "tool_input", "arguments", "args", "command")
_RESULT = ("output", "tool_result", "result")
_SHOWN = {*_TIME, *_KIND, *_TEXT, *_TOOL_INPUT, *_RESULT, "step", "tool", "tool_name", "tool_call", "tokens",
          "cost_usd", "cost", "is_error", "source"}


def read_json(path: Path):
    try:
        return untrusted.read_json(path.parent, path.name)
    except (OSError, untrusted.Refused):
        return None


def manifest(run_dir: Path) -> dict | None:
    data = read_json(RunLayout(run_dir).manifest)
    return data if isinstance(data, dict) else None


def integrity(run_dir: Path) -> dict | None:
    data = read_json(run_dir / "integrity.json")
    return data if isinstance(data, dict) else None


def metrics_files(run_dir: Path) -> dict[str, dict]:
    """label -> the metrics.json of each evaluation under results/."""
    out = {}
    results = run_dir / "results"
    for path in sorted(results.glob("*/metrics.json")) if results.is_dir() else []:
        data = read_json(path)
        if isinstance(data, dict):
            out[path.parent.name] = data
    return out


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str | None:
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(size - 256 * 1024, 0))
        text = fh.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def trajectory(run_dir: Path) -> dict | None:
    """Steps of trajectory.jsonl with the fields the viewer shows; unknown fields kept under `extra`."""
    path = first_file(run_dir, TRAJECTORY)
    if path is None:
        return None
    records = read_records(path)
    steps = [_step(i, rec) for i, rec in enumerate(records[:MAX_STEPS])]
    return {"steps": steps, "total": len(records), "shown": len(steps), "file": str(path.relative_to(run_dir))}


def _step(index: int, rec: dict) -> dict:
    tool_call = rec.get("tool_call") if isinstance(rec.get("tool_call"), dict) else {}
    tool = rec.get("tool") or rec.get("tool_name") or tool_call.get("name")
    tool_input = _first(tool_call, _TOOL_INPUT) if tool_call else _first(rec, _TOOL_INPUT)
    if isinstance(rec.get("tool"), dict):
        tool, tool_input = rec["tool"].get("name"), _first(rec["tool"], _TOOL_INPUT)
    if isinstance(tool_input, dict) and isinstance(tool_input.get("command") or tool_input.get("cmd"), str):
        tool_input = "$ " + (tool_input.get("command") or tool_input.get("cmd"))
    return {
        "step": rec.get("step", index),
        "time": _first(rec, _TIME),
        "kind": _first(rec, _KIND) or ("tool" if tool else "event"),
        "text": _cut(_first(rec, _TEXT)),
        "tool": tool,
        "tool_input": _cut(tool_input),
        "result": _cut(_first(rec, _RESULT)),
        "tokens": _tokens(rec.get("tokens")),
        "cost": rec.get("cost_usd", rec.get("cost")),
        "error": bool(rec.get("is_error")),
        "source": rec.get("source"),
        "extra": {k: v for k, v in rec.items() if k not in _SHOWN} or None,
    }


def _tokens(value) -> str | None:
    if isinstance(value, int | float):
        return f"{value:,.0f} tokens"
    if not isinstance(value, dict):
        return None
    parts = [f"{value[k]:,.0f} {k}" for k in ("input", "cached", "output") if isinstance(value.get(k), int | float)]
    return " · ".join(parts) or None


def _first(rec: dict, keys: tuple[str, ...]):
    return next((rec[k] for k in keys if rec.get(k) not in (None, "")), None)


def _cut(value) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, indent=1, ensure_ascii=False)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"… [{len(text) - MAX_TEXT} more characters]"


def egress(run_dir: Path) -> dict | None:
    """Summary of egress.jsonl: totals, requests per host, denied requests and hashed downloads."""
    path = first_file(run_dir, ("egress.jsonl", "logs/egress.jsonl"))
    if path is None:
        return None
    records = read_records(path)
    hosts: Counter = Counter()
    denied_hosts: Counter = Counter()
    volume: Counter = Counter()
    denied, downloads = [], []
    for rec in records:
        host = _host(rec)
        hosts[host] += 1
        size = rec.get("bytes")
        if isinstance(size, int | float):
            volume[host] += size
        if _denied(rec):
            denied_hosts[host] += 1
            denied.append(rec)
        if rec.get("sha256"):
            downloads.append(rec)
    return {
        "file": str(path.relative_to(run_dir)),
        "requests": len(records),
        "denied_count": len(denied),
        "bytes": sum(volume.values()),
        "hosts": [{"host": h, "requests": n, "denied": denied_hosts[h], "bytes": volume[h]}
                  for h, n in hosts.most_common()],
        "denied": [_request(r) for r in denied[:LIST_LIMIT]],
        "downloads": [_request(r) for r in downloads[:LIST_LIMIT]],
        "more_denied": max(len(denied) - LIST_LIMIT, 0),
        "more_downloads": max(len(downloads) - LIST_LIMIT, 0),
    }


def _host(rec: dict) -> str:
    if rec.get("host"):
        return str(rec["host"])
    if rec.get("dest"):
        return str(rec["dest"]).rsplit(":", 1)[0]
    if rec.get("url"):
        return urlsplit(str(rec["url"])).hostname or "?"
    return "?"


def _denied(rec: dict) -> bool:
    if isinstance(rec.get("allowed"), bool):
        return not rec["allowed"]
    if rec.get("action") in ("deny", "denied", "block", "blocked"):
        return True
    return rec.get("status") == 403


def _request(rec: dict) -> dict:
    return {
        "time": _first(rec, _TIME), "method": rec.get("method"), "host": _host(rec),
        "path": rec.get("path") or rec.get("url"), "status": rec.get("status"),
        "reason": rec.get("reason") or rec.get("rule"), "bytes": rec.get("bytes"), "sha256": rec.get("sha256"),
    }


def agent_evals(run_dir: Path) -> list[dict]:
    """The evaluations the agent asked the harness's service for (test access `hidden`), oldest first."""
    from posttrainbench.evaluation.service import read_history
    from posttrainbench.workspace.layout import RunLayout

    return read_history(RunLayout(run_dir))
