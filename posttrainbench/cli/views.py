"""What the read commands print: tables that fit 80 columns, the one-screen story of a run, and the same data as
JSON or CSV for scripts. Strings an agent made (its crash line, its last words) are shown through `agent_text`."""

import csv
import io
import json
from pathlib import Path

from rich.table import Table
from rich.text import Text

from posttrainbench import units
from posttrainbench.store import RunRow, Store, short_id

FORMATS = ("table", "json", "csv")


def agent_text(text: str) -> Text:
    """The one place agent-made text reaches the terminal: never read as markup."""
    return Text(text)


def machine(rows: list[dict], fmt: str) -> str:
    """rows as JSON (a list) or CSV (columns of the first row)."""
    if fmt == "json":
        return json.dumps(rows, indent=1, default=str)
    buffer = io.StringIO()
    columns = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def _cell(value):
    return json.dumps(value) if isinstance(value, dict | list) else value


def run_record(row: RunRow) -> dict:
    """A stored run for scripts: raw values (score a fraction, times in seconds)."""
    return {"id": row.id, "kind": row.kind, "agent": row.agent, "model": row.model, "benchmark": row.benchmark,
            "seed": row.seed, "hours": row.hours, "status": row.status, "score": row.score,
            "score_source": row.score_source, "flag": row.flag, "time_used_s": row.time_used_s, "error": row.error,
            "limit": row.spec.get("limit"), "created_at": row.created_at, "run_dir": row.run_dir}


def runs_table(rows: list[RunRow]) -> Table:
    """run (short id), agent, model, benchmark, seed, status, score, time: 80 columns wide."""
    table = Table(box=None, pad_edge=False, collapse_padding=True, caption_justify="left",
                  caption="run: short id (a unique prefix of it or of the full id works); time: h:mm:ss, % of budget")
    # fixed columns keep their width; agent, model and benchmark give way (with an ellipsis) on a narrow screen
    for name, justify, width in (("run", "left", 6), ("agent", "left", None), ("model", "left", None),
                                 ("bench", "left", None), ("seed", "right", 4), ("status", "left", 7),
                                 ("score", "right", 6), ("time", "right", 11)):
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis", min_width=width)
    table.columns[1].max_width, table.columns[2].max_width, table.columns[3].max_width = 16, 12, 10
    for row in rows:
        score = units.percent(row.score) + ("ᵇ" if row.score_source == "base" else "")
        table.add_row(short_id(row.id), row.agent, row.model, row.benchmark, str(row.seed), row.status, score,
                      _time(row))
    if any(r.score_source == "base" for r in rows):
        table.caption += "; ᵇ scored as the base model"
    return table


def _time(row: RunRow) -> str:
    if row.time_used_s is None:
        return units.MISSING
    text = units.duration(row.time_used_s)
    if row.kind == "agent" and row.hours:
        text += f" {100 * row.time_used_s / (row.hours * 3600):.0f}%"
    return text


def run_story(store: Store, row: RunRow) -> dict:
    """Everything `ptb show` says about a run, as data."""
    from posttrainbench.agents.launch import agent_failure
    from posttrainbench.integrity import read_report
    from posttrainbench.scoring.usage import run_usage
    from posttrainbench.workspace.layout import RunLayout

    run_dir = Path(row.run_dir) if row.run_dir else None
    present = run_dir is not None and run_dir.is_dir()
    layout = RunLayout(run_dir) if present else None
    story: dict = {"run": run_record(row), "stages": store.stages(row.id), "metrics": store.metrics(row.id)}
    if layout is not None:
        exit_info = _json(layout.agent_exit)
        story["agent_exit"] = {k: exit_info.get(k) for k in ("status", "returncode", "detail", "wall_seconds",
                                                            "working_time_s", "stop_reason")} if exit_info else None
        story["agent_failure"] = agent_failure(layout)
        usage = run_usage(run_dir)
        story["usage"] = usage.model_dump(exclude={"source"})
        try:
            report = read_report(run_dir)
        except ValueError:
            report = None
        story["integrity"] = ({"flagged": report.flagged, "reasons": report.reasons,
                               "checks": {name: check.status for name, check in report.checks.items()}}
                              if report else None)
        story["trajectory"] = _trajectory_summary(run_dir / "trajectory.jsonl")
        story["paths"] = {name: str(path) for name, path in _paths(layout).items() if path.exists()}
    return story


def _paths(layout) -> dict[str, Path]:
    paths = {"run dir": layout.root, "agent log": layout.agent_log, "trajectory": layout.root / "trajectory.jsonl",
             "integrity": layout.root / "integrity.json"}
    for label in ("base", "final"):
        paths[f"{label} evaluation log"] = layout.results(label) / "evaluate.log"
        paths[f"{label} inspect logs"] = layout.results(label) / "logs"
    return paths


def _trajectory_summary(path: Path) -> dict | None:
    from posttrainbench.workspace.records import read_records

    if not path.is_file():
        return None
    events = read_records(path)
    kinds: dict[str, int] = {}
    for event in events:
        kind = str(event.get("kind"))
        kinds[kind] = kinds.get(kind, 0) + 1
    last = next((str(e["text"]) for e in reversed(events) if e.get("kind") in ("assistant", "output", "error")
                 and e.get("text")), None)
    return {"steps": len(events), "kinds": kinds, "last": last.splitlines()[-1][:200] if last else None}


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def print_story(out, story: dict) -> None:
    run = story["run"]
    out.print(f"[bold]{run['id']}[/]  {run['agent']} · {run['model']} · {run['benchmark']} · seed {run['seed']} · "
              f"{run['status']}", highlight=False)
    score = units.percent(run["score"])
    if run["score"] is not None:
        score += f" (from the {run['score_source']} model)"
    out.print(f"score      {score}", highlight=False)
    if run["error"]:
        out.print(Text("reason     ") + agent_text(run["error"]))
    metrics = story["metrics"]
    if metrics:
        out.print("metrics    " + "; ".join(
            f"{label}: " + ", ".join(f"{k} {units.metric(k, v)}" for k, v in sorted(values.items())
                                     if k in ("accuracy", "stderr", "n_samples"))
            for label, values in sorted(metrics.items())), highlight=False)
    exit_info = story.get("agent_exit")
    if exit_info:
        used = units.budget_share(exit_info.get("wall_seconds"), run["hours"])
        out.print(f"agent      {exit_info.get('status')} (exit {exit_info.get('returncode')}) after {used}; "
                  f"working {units.duration(exit_info.get('working_time_s'))}", highlight=False)
    if story.get("agent_failure"):
        out.print(Text("failure    ", style="red") + agent_text(story["agent_failure"]))
    usage = story.get("usage")
    if usage and (usage["input_tokens"] is not None or usage["cost_usd"] is not None):
        out.print(f"tokens     {units.count(usage['input_tokens'])} in, {units.count(usage['output_tokens'])} out; "
                  f"cost {units.money(usage['cost_usd'])}", highlight=False)
    integrity = story.get("integrity")
    if integrity:
        verdict = "[red]flagged[/]: " + "; ".join(integrity["reasons"]) if integrity["flagged"] else "not flagged"
        out.print(f"integrity  {verdict} ({', '.join(f'{k} {v}' for k, v in integrity['checks'].items())})",
                  highlight=False)
    trajectory = story.get("trajectory")
    if trajectory:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(trajectory["kinds"].items()))
        out.print(f"trajectory {trajectory['steps']} steps ({kinds}); `ptb trajectory {short_id(run['id'])}`",
                  highlight=False)
        if trajectory["last"]:
            out.print(Text("  last:    ", style="dim") + agent_text(trajectory["last"]))
    stages = story["stages"]
    if stages:
        out.print("stages     " + ", ".join(f"{s['stage']} {s['status']}" for s in stages), highlight=False)
    for name, path in (story.get("paths") or {}).items():
        out.print(f"  {name}: {path}", highlight=False, soft_wrap=True)
