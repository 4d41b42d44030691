"""`ptb`: the command line."""

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from posttrainbench.errors import PtbError
from posttrainbench.untrusted import clean_text, escape_text

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="PostTrainBench: measure how well LLM agents post-train base LLMs.")
models_app = typer.Typer(no_args_is_help=True, help="Base models and the local model cache.")
app.add_typer(models_app, name="models")
agents_app = typer.Typer(no_args_is_help=True, help="The agent CLIs (Claude Code, Codex, Gemini CLI, OpenCode).")
app.add_typer(agents_app, name="agents")
grid_app = typer.Typer(no_args_is_help=True, help="Grids: agents × models × benchmarks × seeds.")
app.add_typer(grid_app, name="grid")
console = Console(stderr=True)
out = Console()


# Messages, errors and reasons may quote agent-made names and output: every one goes through escape_text (rich
# markup and terminal control), and the live echo of the agent's log through clean_text.


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {escape_text(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def log(message: str) -> None:
    console.print(f"[dim]ptb[/] {escape_text(message)}", highlight=False)


@app.command()
def run(
    agent: Annotated[str, typer.Option(help="reference, command, or SCAFFOLD:MODEL (e.g. claude:claude-opus-4-6)")],
    model: Annotated[str, typer.Option(help="base model id (see `ptb models list`)")],
    benchmark: Annotated[str, typer.Option(help="benchmark id")],
    hours: Annotated[float, typer.Option(help="the agent's wall-clock budget")] = 10.0,
    gpus: Annotated[int, typer.Option(help="GPUs given to the agent")] = 1,
    seed: int = 0,
    limit: Annotated[int | None, typer.Option(help="evaluate only the first N test items")] = None,
    command: Annotated[str | None, typer.Option(help="argv of a `command` agent (shell-quoted)")] = None,
    sandbox: Annotated[str, typer.Option(help="bwrap, or none (no isolation: debugging only)")] = "bwrap",
    network: Annotated[str, typer.Option(help="proxied (logged, deny list), open, or offline")] = "proxied",
    max_tokens: Annotated[int | None, typer.Option(help="cap generated tokens per item (CPU demos)")] = None,
    llm_max_usd: Annotated[float | None, typer.Option(help="stop the agent once its LLM calls cost this many "
                                                      "dollars (default 100; 0 = no limit)")] = None,
    llm_max_tokens: Annotated[int | None, typer.Option(help="stop the agent after this many LLM tokens, input + "
                                                       "output (default 150M; 0 = no limit)")] = None,
    memory_gb: Annotated[float | None, typer.Option(help="the agent sandbox's memory limit [default: 96]")] = None,
    pids: Annotated[int | None, typer.Option(help="its processes and threads limit [default: 8192]")] = None,
    cpus: Annotated[float | None, typer.Option(help="its CPU cores' worth of time [default: no cap]")] = None,
    disk_gb: Annotated[float | None, typer.Option(help="its disk quota [default: 300]")] = None,
    test_access: Annotated[str, typer.Option(help="hidden (test items stay outside the sandbox; evaluate.py asks "
                                             "the harness's evaluation service) or visible (the original's setup)")
                           ] = "hidden",
) -> None:
    """Run one agent on one base model and benchmark, then evaluate and store the score."""
    from posttrainbench.executors.pipeline import create_run
    from posttrainbench.specs import RunSpec, parse_agent

    asked = {"memory_gb": memory_gb, "pids": pids, "cpus": cpus, "disk_gb": disk_gb}
    spec = _spec(RunSpec, agent=parse_agent(agent, shlex.split(command) if command else None), model=model,
                 benchmark=benchmark, hours=hours, gpus=gpus, seed=seed, limit=limit, sandbox=sandbox,
                 network=network, max_tokens=max_tokens, llm=_llm_limits(llm_max_usd, llm_max_tokens),
                 sandbox_limits={k: v for k, v in asked.items() if v is not None}, test_access=test_access)
    if sandbox == "none":
        console.print("[bold yellow]warning:[/] --sandbox none runs the agent WITHOUT isolation")
    store = _store()
    manifest = create_run(spec, store)
    log(f"run {manifest.run_id} in {store.get(manifest.run_id).run_dir}")
    row = _execute(Path(store.get(manifest.run_id).run_dir), store)
    _print_runs([row])
    if row.score_source == "base":
        fail(f"run {row.id} scored as the base model: {row.error}")


def _llm_limits(max_usd: float | None, max_tokens: int | None) -> dict:
    """The run spec's `llm` field from the flags: unset keeps the default, 0 lifts the limit."""
    limits = {}
    for key, value in (("max_usd", max_usd), ("max_tokens", max_tokens)):
        if value is not None:
            limits[key] = value or None
    return limits


@app.command(name="eval")
def eval_(
    model_path: Annotated[Path, typer.Argument(help="folder with safetensors weights, config and tokenizer")],
    benchmark: Annotated[str, typer.Option(help="benchmark id")],
    base_model: Annotated[str, typer.Option(help="id of the base model it was trained from: picks the chat template")],
    limit: Annotated[int | None, typer.Option(help="first N items only")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="where metrics.json and the inspect log go")] = None,
    fewshot: Annotated[bool, typer.Option("--fewshot", help="prompt as a base model: plain text after solved "
                                          "examples (the few-shot baseline's mode)")] = False,
    shots: Annotated[int | None, typer.Option(help="with --fewshot: number of examples (default: all)")] = None,
) -> None:
    """Evaluate a model folder on a benchmark, exactly as the harness and the agent's evaluate.py do."""
    import os

    from posttrainbench.executors.evaluate import OFFLINE

    os.environ.update(OFFLINE)
    from posttrainbench.evaluation.runner import evaluate

    out_dir = out_dir or Path("ptb-eval") / benchmark
    metrics = evaluate(model_path, benchmark, base_model=base_model, out_dir=out_dir, limit=limit,
                       fewshot_mode=fewshot, shots=shots)
    out.print(f"{benchmark}: accuracy {metrics['accuracy']:.4f} ± {metrics.get('stderr') or 0:.4f} "
              f"({metrics.get('n_samples', '?')} items) → {out_dir / 'metrics.json'}")


@app.command()
def results(
    benchmark: Annotated[str | None, typer.Option(help="only this benchmark")] = None,
    status: Annotated[str | None, typer.Option(help="only runs with this status")] = None,
) -> None:
    """Table of stored runs."""
    store = _store()
    where = {k: v for k, v in {"benchmark": benchmark, "status": status}.items() if v}
    _print_runs(store.runs(**where))


@app.command()
def show(run_id: str) -> None:
    """Details of one run: stages, metrics, artifacts."""
    from rich.table import Table

    store = _store()
    row = store.get(run_id)
    out.print(f"[bold]{row.id}[/]  {row.agent} · {row.model} · {row.benchmark} · seed {row.seed} · {row.status}")
    out.print(f"run dir: {row.run_dir}")
    table = Table("stage", "status", "started", "ended", "error")
    for stage in store.stages(run_id):
        table.add_row(stage["stage"], stage["status"], stage["started_at"] or "", stage["ended_at"] or "",
                      escape_text(stage["error"] or ""))
    out.print(table)
    for label, metrics in store.metrics(run_id).items():
        out.print(f"{label}: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
    if row.score is not None:
        out.print(f"score: {row.score:.4f} ({row.score_source}){' — ' + escape_text(row.error) if row.error else ''}")
    _print_egress(Path(row.run_dir))
    _print_agent_evals(Path(row.run_dir), row.spec.get("test_access", "visible"))


def _print_agent_evals(run_dir: Path, test_access: str) -> None:
    """The evaluations the agent asked the service for (test access hidden): when, which checkpoint, the score."""
    from rich.table import Table

    from posttrainbench.evaluation.service import read_history
    from posttrainbench.workspace.layout import RunLayout

    if test_access != "hidden":
        out.print("test access: visible (the test data was mounted in the sandbox; evaluate.py ran there)")
        return
    history = read_history(RunLayout(run_dir))
    done = [r for r in history if r.get("status") == "ok"]
    out.print(f"test access: hidden; the agent asked for {len(history)} evaluation(s), {len(done)} completed")
    if not history:
        return
    from rich.text import Text

    table = Table("#", "requested", "checkpoint", "limit", "status", "accuracy", "items", "queued", "seconds")
    for record in history:
        metrics = record.get("metrics") or {}
        accuracy = metrics.get("accuracy")
        status = str(record.get("status"))
        if record.get("error"):
            status += f": {record['error']}"
        # What the agent named and what the service answered are shown as plain text, never as markup.
        cells = [record.get("n", "—"), record.get("requested_at") or "",
                 str(record.get("checkpoint_sha256") or "—")[:12],
                 (record.get("settings") or {}).get("limit"), status,
                 _pct(accuracy) if isinstance(accuracy, int | float) else "—", metrics.get("n_samples", "—"),
                 f"{record.get('queued_s') or 0:.0f} s", f"{record.get('seconds') or 0:.0f} s"]
        table.add_row(*(Text(str(cell)) for cell in cells))
    for column in table.columns:
        column.overflow = "fold"
    out.print(table)


def _print_egress(run_dir: Path) -> None:
    from posttrainbench.egress.summary import summarize_egress

    summary = summarize_egress(run_dir)
    if not summary:
        out.print("egress: no network log (offline run)")
        return
    out.print(f"egress: {summary['requests']} requests, {summary['denied_count']} denied, "
              f"{summary['bytes_in'] / 1e6:.1f} MB in")
    for host in summary["hosts"][:10]:
        out.print(f"  {escape_text(host['host'])}: {host['requests']} requests, {host['denied']} denied")
    for item in summary["denied"][:10]:
        request = f"{item['method']} {item['host']}{item['path'] or ''}: {item['reason']}"
        out.print(f"  [red]denied[/] {escape_text(request)}")
    for item in summary["downloads"][:10]:
        out.print("  downloaded " + escape_text(f"{item['repo'] or item['host']} {item['file'] or ''} "
                                                f"sha256={item['sha256']}"))


@app.command()
def demo(
    hours: Annotated[float, typer.Option(help="the reference agent's budget")] = 0.1,
    limit: Annotated[int, typer.Option(help="HumanEval items evaluated")] = 20,
    max_tokens: Annotated[int, typer.Option(help="generated tokens per item")] = 320,
    sandbox: Annotated[str, typer.Option(help="bwrap, or none")] = "bwrap",
) -> None:
    """Offline end to end on CPU: the reference agent post-trains SmolLM2-135M for HumanEval in a sandbox."""
    import os

    from posttrainbench.executors.evaluate import OFFLINE

    os.environ.update(OFFLINE)  # the demo never reaches the hub: fail fast instead of retrying
    from posttrainbench.executors.pipeline import create_run
    from posttrainbench.specs import AgentSpec, RunSpec

    spec = RunSpec(agent=AgentSpec(scaffold="reference"), model="smollm2-135m", benchmark="humaneval",
                   hours=hours, gpus=0, limit=limit, max_tokens=max_tokens, sandbox=sandbox,
                   network="offline")
    store = _store()
    log("prepare: model, data, workspace")
    manifest = create_run(spec, store)
    row = _execute(Path(store.get(manifest.run_id).run_dir), store)
    metrics = store.metrics(row.id)
    _print_runs([row])
    base = metrics.get("base", {}).get("accuracy")
    final = metrics.get("final", {}).get("accuracy")
    out.print(f"HumanEval pass@1 on {limit} items: base {_pct(base)} → trained {_pct(final)}")


@models_app.command("list")
def models_list() -> None:
    """The models in the catalog."""
    from rich.table import Table

    from posttrainbench import models
    from posttrainbench.specs import all_models

    table = Table("id", "hugging face id", "instruct twin (forbidden)", "source", "cached")
    for spec in all_models():
        table.add_row(spec.id, spec.hf_id, spec.instruct_twin or "—", spec.source.kind,
                      "yes" if models.local_path(spec) else "no")
    out.print(table)


@models_app.command("fetch")
def models_fetch(name: Annotated[str, typer.Argument(help="model id or Hugging Face id")]) -> None:
    """Download (pinned revision) or convert a model into the local cache."""
    from posttrainbench import models
    from posttrainbench.specs import get_model

    path = models.fetch(get_model(name))
    out.print(str(path))


@grid_app.command("run")
def grid_run(
    path: Annotated[Path, typer.Argument(help="grid YAML file")],
    executor: Annotated[str, typer.Option(help="local or slurm")] = "local",
    gpus: Annotated[str | None, typer.Option(help="GPU indices to use, e.g. 0,1,2,3 (default: all)")] = None,
    cpu_slots: Annotated[int, typer.Option(help="concurrent runs that need no GPU")] = 1,
) -> None:
    """Run every cell of a grid; running it again never duplicates a run."""
    from posttrainbench.executors.grid import run_grid

    rows = run_grid(path, executor=executor, gpus=_gpu_list(gpus), cpu_slots=cpu_slots, console=console)
    _print_cells(rows)


@grid_app.command("resume")
def grid_resume(
    name: Annotated[str, typer.Argument(help="grid name")],
    retry_failed: Annotated[bool, typer.Option(help="also retry cells that failed for good")] = False,
    gpus: Annotated[str | None, typer.Option(help="GPU indices to use")] = None,
    cpu_slots: int = 1,
) -> None:
    """Continue a grid after a crash: exactly the unfinished stages."""
    from posttrainbench.executors.grid import resume_grid

    rows = resume_grid(name, retry_failed=retry_failed, gpus=_gpu_list(gpus), cpu_slots=cpu_slots, console=console)
    _print_cells(rows)


@grid_app.command("status")
def grid_status_(name: Annotated[str | None, typer.Argument(help="grid name (default: list grids)")] = None) -> None:
    """Every cell of a grid, or the list of grids."""
    from posttrainbench.executors.grid import grid_status, list_grids

    if name is None:
        for info in list_grids():
            out.print(f"{info.name}  {info.executor}  {info.runs_dir}")
        return
    _print_cells(grid_status(name))


def _gpu_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"--gpus takes comma-separated GPU indices, not {text!r}")


def _print_cells(rows) -> None:
    from rich.table import Table

    table = Table("cell", "state", "attempts", "run", "stage", "score", "reason")
    for row in rows:
        score = _pct(row.score) + (" (base)" if row.score_source == "base" else "")
        table.add_row(row.key, row.state, str(row.attempts), row.run_id or "—", row.stage or "—", score,
                      escape_text(row.reason or ""))
    out.print(table)


@agents_app.command("install")
def agents_install(names: Annotated[list[str] | None, typer.Argument(help="claude, codex, gemini, opencode")] = None
                   ) -> None:
    """Install the agent CLIs from npm at their pinned versions."""
    from posttrainbench.agents.install import install_agents

    for name, installed in install_agents(names or None).items():
        out.print(f"{name} {installed}")


@app.command()
def scores(
    by: Annotated[str, typer.Option(help="agent, benchmark, model or run")] = "agent",
    published: Annotated[bool, typer.Option(help="first store the published base/instruct baselines")] = False,
) -> None:
    """Leaderboard numbers: weighted averages, gap-normalised scores, mean ± std over seeds, time and cost."""
    from posttrainbench.scoring import import_published_baselines, scores_table

    store = _store()
    if published:
        import_published_baselines(store)
    out.print(scores_table(store, by=by))


@app.command()
def judge(
    run_id: Annotated[str, typer.Argument(help="run id")],
    judges: Annotated[int, typer.Option(help="number of LLM judges (majority vote)")] = 3,
    agent: Annotated[str, typer.Option(help="the judge: SCAFFOLD:MODEL")] = "codex:gpt-5.1-codex",
    rerun: Annotated[bool, typer.Option(help="run the judges again instead of reusing their verdicts")] = False,
) -> None:
    """Integrity checks of a run plus an ensemble of LLM judges over its workspace, trajectory and evidence.
    The deterministic checks always run again: an integrity_error flag clears once they finish (--judges 0
    runs only them)."""
    from posttrainbench.integrity import check_run
    from posttrainbench.specs import parse_agent

    store = _store()
    row = store.get(run_id)
    report = check_run(Path(row.run_dir), judges=judges, judge_agent=parse_agent(agent), rerun=rerun, log=log)
    for name, check in report.checks.items():
        out.print(f"{name}: {check.status}{' — ' + escape_text(check.reason) if check.reason else ''}")
    out.print("[bold red]flagged[/]: " + escape_text("; ".join(report.reasons)) if report.flagged else "not flagged")
    if row.status == "done" and row.kind == "agent":
        from posttrainbench.executors.pipeline import rescore

        row = rescore(Path(row.run_dir), store)
        out.print(f"score: {_pct(row.score)} ({row.score_source})")


@app.command()
def baseline(
    kind: Annotated[str, typer.Argument(help="zeroshot (the base model), fewshot (the base model prompted with "
                                         "solved examples), instruct (its official twin) or reference")],
    model: Annotated[list[str] | None, typer.Option(help="base model id (repeat for several)")] = None,
    benchmark: Annotated[list[str] | None, typer.Option(help="benchmark id (repeat for several)")] = None,
    grid: Annotated[Path | None, typer.Option(help="take models, benchmarks, limit, hours and GPUs from this "
                                                   "grid file")] = None,
    limit: Annotated[int | None, typer.Option(help="first N items only")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="cap generated tokens per item")] = None,
    hours: Annotated[float, typer.Option(help="budget of the reference agent")] = 10.0,
    gpus: Annotated[int, typer.Option(help="GPUs of the reference agent")] = 1,
    shots: Annotated[int | None, typer.Option(help="fewshot: number of examples (default: all)")] = None,
    again: Annotated[bool, typer.Option("--again", help="measure cells already measured with these settings "
                                        "again")] = False,
) -> None:
    """Measure a baseline for every model × benchmark and store each like a run (the leaderboard's base,
    few-shot, instruct and reference rows). Cells measured before with the same settings are kept."""
    from posttrainbench.executors.baseline import measure_all

    models, benchmarks = list(model or []), list(benchmark or [])
    if grid is not None:
        from posttrainbench.specs.grid import load_grid

        spec = load_grid(grid)
        models, benchmarks = models or spec.models, benchmarks or spec.benchmarks
        limit, hours, gpus = limit if limit is not None else spec.limit, spec.hours, spec.gpus
    if not models or not benchmarks:
        raise PtbError("name the cells: --model and --benchmark (each may repeat), or --grid FILE")
    results = measure_all(_store(), kind, models, benchmarks, limit=limit, max_tokens=max_tokens, hours=hours,
                          gpus=gpus, shots=shots, again=again, log=log)
    rows = [result for _, _, result in results if not isinstance(result, str)]
    if rows:
        _print_runs(rows)
    failed = [(m, b, error) for m, b, error in results if isinstance(error, str)]
    if len(results) == 1 and failed:
        raise PtbError(failed[0][2])
    if failed:
        for m, b, error in failed:
            console.print(f"[red]failed[/] {m} × {b}: {escape_text(error)}", highlight=False, soft_wrap=True)
        raise PtbError(f"{len(failed)} of {len(results)} baseline cells failed")


@app.command()
def report(
    out_dir: Annotated[Path, typer.Option(help="folder for the static site")] = Path("ptb-report"),
    open_: Annotated[bool, typer.Option("--open", help="open it in a browser")] = False,
) -> None:
    """Build the static HTML leaderboard with charts, per-run pages and CSV/JSON exports."""
    import webbrowser

    from posttrainbench.report import build_report

    index = build_report(_store(), out_dir)
    out.print(str(index))
    if open_:
        webbrowser.open(index.resolve().as_uri())


def _execute(run_dir: Path, store):
    """Run the stages, echoing the agent's log lines as they arrive (long work shows progress)."""
    import threading
    import time

    from posttrainbench.executors.pipeline import execute
    from posttrainbench.workspace.layout import RunLayout

    done = threading.Event()

    def follow(path: Path) -> None:
        while not path.exists() and not done.is_set():
            time.sleep(0.5)
        if not path.exists():
            return
        with open(path, errors="replace") as fh:
            while True:
                line = fh.readline()
                if line:
                    console.print("  agent " + clean_text(line.rstrip()), style="dim", highlight=False,
                                  markup=False, soft_wrap=True)
                elif done.is_set():
                    return
                else:
                    time.sleep(0.5)

    thread = threading.Thread(target=follow, args=(RunLayout(run_dir).agent_log,), daemon=True)
    thread.start()
    try:
        return execute(run_dir, store, log=log)
    finally:
        done.set()
        thread.join(timeout=2)


def _spec(cls, **fields):
    from pydantic import ValidationError

    try:
        return cls(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


def _store():
    from posttrainbench import paths
    from posttrainbench.store import Store

    store = Store(paths.store_path())
    for run_id in store.reap_stale():
        console.print(f"[yellow]run {run_id} was interrupted: marked failed[/]")
    return store


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _print_runs(rows) -> None:
    from rich.table import Table

    table = Table("run", "agent", "model", "benchmark", "seed", "status", "score", "time used")
    for column in table.columns:
        column.overflow = "fold"
    for row in rows:
        used = f"{row.time_used_s / 60:.1f} min" if row.time_used_s is not None else "—"
        score = _pct(row.score) + (" (base)" if row.score_source == "base" else "")
        table.add_row(row.id, row.agent, row.model, row.benchmark, str(row.seed), row.status, score, used)
    out.print(table)


def main() -> None:
    try:
        app()
    except PtbError as exc:
        console.print(f"[bold red]error:[/] {escape_text(exc)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
