"""Builds the static report site: index.html (leaderboard, charts, tables), one page per run, CSV/JSON exports."""

import csv
import json
import shutil
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from posttrainbench.errors import PtbError
from posttrainbench.report import artifacts
from posttrainbench.report.charts import colors, draw_all
from posttrainbench.scoring.leaderboard import leaderboard
from posttrainbench.scoring.schema import RunScore, Stat
from posttrainbench.scoring.tables import MISSING, Table, all_tables
from posttrainbench.store import Store
from posttrainbench.untrusted import clean_text

HERE = Path(__file__).parent
GENERATED = ("runs", "charts", "tables", "static")  # folders build_report owns inside out_dir
MARKER = ".ptb-report"  # marks a folder as a report, so a rebuild may replace the folders above
SHORT_NAMES = {"aime2025": "AIME 2025", "arenahardwriting": "Arena-Hard", "bfcl": "BFCL", "gpqamain": "GPQA",
               "gsm8k": "GSM8K", "healthbench": "HealthBench", "humaneval": "HumanEval"}


def build_report(store: Store, out_dir: Path, **options) -> Path:
    """Write the site into out_dir (new, empty, or an earlier report) and return the path of its index.html.
    Options go to leaderboard() (models, benchmarks, hours, bootstrap, seed)."""
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise PtbError(f"{out_dir} is not empty and holds no earlier report: choose a new or empty folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in GENERATED:
            shutil.rmtree(out_dir / name, ignore_errors=True)
        (out_dir / MARKER).write_text("written by posttrainbench; rebuilding replaces this folder's contents\n")
    except OSError as exc:
        raise PtbError(f"cannot write the report into {out_dir}: {exc}") from None
    lb = leaderboard(store, **options)
    charts = draw_all(lb, out_dir / "charts", SHORT_NAMES)
    tables = all_tables(lb)
    exports = {t.name: _export(t, out_dir / "tables") for t in tables}
    (out_dir / "tables" / "leaderboard-full.json").write_text(lb.model_dump_json(indent=1))
    shutil.copytree(HERE / "static", out_dir / "static")

    env = _env()
    pages = {r.id: f"runs/{_safe(r.id)}.html" for r in lb.runs}
    common = {"lb": lb, "short": SHORT_NAMES, "pages": pages, "palette": colors(lb),
              "labels": {e.key: e.label for e in lb.entries}}
    index = out_dir / "index.html"
    index.write_text(env.get_template("index.html.jinja").render(
        **common, root="", charts=charts, tables={t.name: t for t in tables}, exports=exports,
        flagged=[r for r in lb.runs if r.flag],
    ))
    (out_dir / "runs").mkdir()
    run_template = env.get_template("run.html.jinja")
    for run in lb.runs:
        (out_dir / pages[run.id]).write_text(run_template.render(**common, root="../", run=run,
                                                                 **_run_context(store, run)))
    return index


def _run_context(store: Store, run: RunScore) -> dict:
    run_dir = Path(run.run_dir) if run.run_dir else None
    present = run_dir is not None and run_dir.is_dir()
    row = store.get(run.id)
    return {
        "row": row,
        "stages": store.stages(run.id),
        "metrics": store.metrics(run.id),
        "present": present,
        "metrics_files": artifacts.metrics_files(run_dir) if present else {},
        "manifest": artifacts.manifest(run_dir) if present else None,
        "integrity": artifacts.integrity(run_dir) if present else None,
        "egress": artifacts.egress(run_dir) if present else None,
        "trajectory": artifacts.trajectory(run_dir) if present else None,
        "agent_log": artifacts.log_tail(run_dir / "logs" / "agent.log") if present else None,
        "agent_evals": artifacts.agent_evals(run_dir) if present else [],
    }


def _export(table: Table, folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{table.name}.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=table.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table.rows)
    (folder / f"{table.name}.json").write_text(json.dumps(
        {"title": table.title, "units": "scores in percent", "columns": table.columns, "rows": table.rows},
        indent=1))
    return {"csv": f"tables/{table.name}.csv", "json": f"tables/{table.name}.json"}


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["jinja", "html"]),
                      trim_blocks=True, lstrip_blocks=True, finalize=_shown)
    env.filters.update(pct=_pct, pm=_pm, ci=_ci, hours=_hours, money=_money, pretty=_pretty, count=_count)
    return env


def _shown(value):
    """Every value a page shows: pages quote agent-made text (its log, names, errors, requests), so control
    characters and bidi overrides go before the HTML escaping."""
    return clean_text(value, newlines=True) if isinstance(value, str) and not isinstance(value, Markup) else value


def _pct(value: float | None, digits: int = 1) -> str:
    return MISSING if value is None else f"{100 * value:.{digits}f}"


def _pm(stat: Stat) -> str:
    return "" if stat.std is None else f"± {100 * stat.std:.1f}"


def _ci(stat: Stat) -> str:
    return MISSING if not stat.ci else f"{100 * stat.ci[0]:.1f}–{100 * stat.ci[1]:.1f}"


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    minutes = round(seconds / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def _money(value: float | None) -> str:
    return MISSING if value is None else f"${value:,.2f}"


def _count(value: int | float | None) -> str:
    return MISSING if value is None else f"{value:,.0f}"


def _pretty(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)

