"""`ptb`: the command line."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from posttrainbench import units
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
    # messages may quote what an agent wrote (its crash line): never read them as markup
    from rich.text import Text

    console.print(Text.assemble(("ptb ", "dim"), clean_text(message)), highlight=False, soft_wrap=True)


@app.command()
def run(
    agent: Annotated[str, typer.Option(help="reference, command, or SCAFFOLD:MODEL (e.g. claude:claude-opus-4-6)")],
    model: Annotated[str, typer.Option(help="base model id (see `ptb models list`)")],
    benchmark: Annotated[str, typer.Option(help="benchmark id")],
    hours: Annotated[float, typer.Option(help="the agent's wall-clock budget")] = 10.0,
    gpus: Annotated[int, typer.Option(help="GPUs given to the agent")] = 1,
    seed: int = 0,
    limit: Annotated[int | None, typer.Option(help="evaluate only the first N test items")] = None,
    command: Annotated[str | None, typer.Option(help="a `command` agent's shell line, run by `bash -c` in the "
                                                "task dir (its environment: README, 'Command agents')")] = None,
    mount: Annotated[list[str] | None, typer.Option(help="SRC:DST[:ro]: a host path shown to a `command` agent "
                                                    "at DST (repeatable)")] = None,
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
    backend: Annotated[str, typer.Option(help="the harness's evaluations: auto, hf or vllm")] = "auto",
    max_connections: Annotated[int | None, typer.Option(help="the harness's evaluations: concurrent generations "
                                                        "(hf: the batch size) [default: every item]")] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option(help="the harness's evaluations, vllm: share of "
                                                                 "GPU memory to use")] = None,
) -> None:
    """Run one agent on one base model and benchmark, then evaluate and store the score."""
    from posttrainbench.executors.pipeline import create_run
    from posttrainbench.executors.preflight import check_machine
    from posttrainbench.specs import RunSpec, parse_agent

    asked = {"memory_gb": memory_gb, "pids": pids, "cpus": cpus, "disk_gb": disk_gb}
    spec = _spec(RunSpec, agent=parse_agent(agent, [command] if command else None, mount), model=model,
                 benchmark=benchmark, hours=hours, gpus=gpus, seed=seed, limit=limit, sandbox=sandbox,
                 network=network, max_tokens=max_tokens, llm=_llm_limits(llm_max_usd, llm_max_tokens),
                 sandbox_limits={k: v for k, v in asked.items() if v is not None}, test_access=test_access,
                 evaluation={k: v for k, v in {"backend": backend, "max_connections": max_connections,
                                               "gpu_memory_utilization": gpu_memory_utilization}.items()
                             if v is not None})
    if sandbox == "none":
        console.print("[bold yellow]warning:[/] --sandbox none runs the agent WITHOUT isolation")
    check_machine(spec)
    store = _store()
    manifest = create_run(spec, store)
    log(f"run {manifest.run_id} in {store.get(manifest.run_id).run_dir}")
    _finish(_execute_resumable(manifest.run_id, store))


@app.command()
def resume(run_id: Annotated[str, typer.Argument(help="run id (a unique prefix is enough)")]) -> None:
    """Continue a run that was interrupted (Ctrl-C, a crash): its finished stages are kept, the rest run again.
    An interrupted agent starts again with what is left of its budget; its earlier log stays in agent.log."""
    store = _store()
    row = store.get(_run_id(store, run_id))
    if row.status == "done":
        fail(f"run {row.id} is done; nothing to resume")
    if row.status == "running":
        fail(f"run {row.id} is running (harness on this or another host)")
    if row.kind != "agent":
        fail(f"run {row.id} is a {row.kind} run; measure it again with `ptb baseline`")
    grid = _grid_of(store, row.id)
    if grid:
        fail(f"run {row.id} is a cell of grid {grid}: continue it with `ptb grid resume {grid}`")
    log(f"resuming run {row.id} in {row.run_dir}")
    _finish(_execute_resumable(row.id, store))


def _execute_resumable(run_id: str, store):
    try:
        return _execute(Path(store.get(run_id).run_dir), store)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted:[/] run {run_id} stopped; its finished stages are kept. "
                      f"Continue it with `ptb resume {run_id}`", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None


def _finish(row) -> None:
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


def _grid_of(store, run_id: str) -> str | None:
    import sqlite3

    try:
        found = store.db.execute("SELECT grid FROM grid_cells WHERE run_id=?", (run_id,)).fetchone()
    except sqlite3.OperationalError:  # no grid was ever run with this store
        return None
    return found[0] if found else None


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
    max_tokens: Annotated[int | None, typer.Option(help="cap generated tokens per item")] = None,
    max_connections: Annotated[int | None, typer.Option(help="concurrent generations (hf: the batch size)")] = None,
    backend: Annotated[str, typer.Option(help="auto, hf or vllm")] = "auto",
    device: Annotated[str | None, typer.Option(help="cuda or cpu (default: cuda when available)")] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option(help="vllm: share of GPU memory to use")] = None,
) -> None:
    """Evaluate a model folder on a benchmark, exactly as the harness and the agent's evaluate.py do (same flags)."""
    import os

    from posttrainbench.executors.evaluate import OFFLINE

    os.environ.update(OFFLINE)
    from posttrainbench.evaluation.runner import evaluate

    out_dir = out_dir or Path("ptb-eval") / benchmark
    if backend not in ("auto", "hf", "vllm"):
        fail(f"--backend is auto, hf or vllm, not {backend!r}")
    metrics = evaluate(model_path, benchmark, base_model=base_model, out_dir=out_dir, limit=limit,
                       fewshot_mode=fewshot, shots=shots, max_tokens=max_tokens, max_connections=max_connections,
                       backend=backend, device=device, gpu_memory_utilization=gpu_memory_utilization,
                       metadata={"label": "eval"})
    out.print(f"{benchmark}: accuracy {units.percent(metrics['accuracy'])} ± {units.percent(metrics.get('stderr'))} "
              f"({units.count(metrics.get('n_samples'))} items) → {out_dir / 'metrics.json'}")


JSON_OPTION = Annotated[bool, typer.Option("--json", help="print JSON (raw values: fractions, seconds)")]
CSV_OPTION = Annotated[bool, typer.Option("--csv", help="print CSV (raw values: fractions, seconds)")]


def _format(json_: bool, csv_: bool) -> str:
    if json_ and csv_:
        fail("give --json or --csv, not both")
    return "json" if json_ else "csv" if csv_ else "table"


@app.command()
def results(
    benchmark: Annotated[str | None, typer.Option(help="only this benchmark")] = None,
    status: Annotated[str | None, typer.Option(help="only runs with this status")] = None,
    json_: JSON_OPTION = False,
    csv_: CSV_OPTION = False,
) -> None:
    """Table of stored runs."""
    from posttrainbench.cli.views import machine, run_record

    fmt = _format(json_, csv_)
    store = _store(reap=False)
    where = {k: v for k, v in {"benchmark": benchmark, "status": status}.items() if v}
    rows = store.runs(**where)
    if fmt != "table":
        out.print(machine([run_record(r) for r in rows], fmt), markup=False, highlight=False, soft_wrap=True,
                  end="")
        return
    _print_runs(rows)


@app.command()
def show(run_id: Annotated[str, typer.Argument(help="run id (a unique prefix is enough)")],
         json_: JSON_OPTION = False) -> None:
    """The story of one run on one screen: score, agent exit and failure, tokens and cost, integrity verdict,
    trajectory summary, stages and where its logs are."""
    import json

    from posttrainbench.cli.views import print_story, run_story

    store = _store(reap=False)
    row = store.get(_run_id(store, run_id))
    story = run_story(store, row)
    if json_:
        out.print(json.dumps(story, indent=1, default=str), markup=False, highlight=False, soft_wrap=True)
        return
    print_story(out, story)
    if row.run_dir and Path(row.run_dir).is_dir():
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
                 units.percent(accuracy) if isinstance(accuracy, int | float) else "—", metrics.get("n_samples", "—"),
                 f"{record.get('queued_s') or 0:.0f} s", f"{record.get('seconds') or 0:.0f} s"]
        table.add_row(*(Text(str(cell)) for cell in cells))
    for column in table.columns:
        column.overflow = "fold"
    out.print(table)


@app.command()
def trajectory(run_id: Annotated[str, typer.Argument(help="run id (a unique prefix is enough)")],
               json_: JSON_OPTION = False) -> None:
    """The agent's steps, for every scaffold: an LLM agent's turns and tool calls, what the reference or a command
    agent printed, and the LLM proxy's totals."""
    from rich.text import Text

    from posttrainbench.agents.trajectory import render
    from posttrainbench.workspace.records import read_records

    store = _store(reap=False)
    row = store.get(_run_id(store, run_id))
    if not row.run_dir:
        fail(f"run {row.id} has no run directory (a published number)")
    path = Path(row.run_dir) / "trajectory.jsonl"
    if not path.is_file():
        fail(f"run {row.id} has no trajectory yet ({path}): its agent stage has not finished")
    events = read_records(path)
    if json_:
        import json

        out.print(json.dumps(events, indent=1), markup=False, highlight=False, soft_wrap=True)
        return
    out.print(Text(render(events) if events else "(no steps recorded)\n"), end="", soft_wrap=True)


def _run_id(store, text: str) -> str:
    return store.resolve(text)


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
    # 256: the first 20 HumanEval items restated whole (docstring + canonical body, fenced) take at most 225 tokens
    # of this model's tokenizer; a batch runs until its longest answer stops, so every token cut is time saved
    max_tokens: Annotated[int, typer.Option(help="generated tokens per item")] = 256,
    sandbox: Annotated[str, typer.Option(help="bwrap, or none")] = "bwrap",
) -> None:
    """Offline end to end on CPU: the reference agent post-trains SmolLM2-135M for HumanEval in a sandbox."""
    import os

    from posttrainbench.executors.evaluate import OFFLINE

    os.environ.update(OFFLINE)  # the demo never reaches the hub: fail fast instead of retrying
    from posttrainbench.executors.pipeline import create_run
    from posttrainbench.executors.preflight import check_machine
    from posttrainbench.specs import AgentSpec, RunSpec

    spec = _spec(RunSpec, agent=AgentSpec(scaffold="reference"), model="smollm2-135m", benchmark="humaneval",
                 hours=hours, gpus=0, limit=limit, max_tokens=max_tokens, sandbox=sandbox, network="offline")
    check_machine(spec)
    store = _store()
    log("prepare: model, data, workspace")
    manifest = create_run(spec, store)
    row = _execute_resumable(manifest.run_id, store)
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
    gpus: Annotated[int | None, typer.Option(help="how many GPUs the grid may use: the first N (default: all)")] = None,
    gpu_ids: Annotated[str | None, typer.Option(help="which GPUs the grid may use, e.g. 0,1,2,3")] = None,
    cpu_slots: Annotated[int, typer.Option(help="concurrent runs that need no GPU")] = 1,
) -> None:
    """Run every cell of a grid; running it again never duplicates a run."""
    from posttrainbench.executors.grid import run_grid

    rows = run_grid(path, executor=executor, gpus=_gpu_list(gpus, gpu_ids), cpu_slots=cpu_slots, console=console)
    _print_cells(rows)


@grid_app.command("resume")
def grid_resume(
    name: Annotated[str, typer.Argument(help="grid name")],
    retry_failed: Annotated[bool, typer.Option(help="also retry cells that failed for good")] = False,
    gpus: Annotated[int | None, typer.Option(help="how many GPUs the grid may use: the first N (default: all)")] = None,
    gpu_ids: Annotated[str | None, typer.Option(help="which GPUs the grid may use, e.g. 0,1,2,3")] = None,
    cpu_slots: int = 1,
) -> None:
    """Continue a grid after a crash: exactly the unfinished stages."""
    from posttrainbench.executors.grid import resume_grid

    rows = resume_grid(name, retry_failed=retry_failed, gpus=_gpu_list(gpus, gpu_ids), cpu_slots=cpu_slots,
                       console=console)
    _print_cells(rows)


@grid_app.command("status")
def grid_status_(name: Annotated[str | None, typer.Argument(help="grid name (default: list grids)")] = None) -> None:
    """Every cell of a grid, or the list of grids."""
    from posttrainbench.executors.grid_status import grid_status, list_grids

    if name is None:
        for info in list_grids():
            out.print(f"{info.name}  {info.executor}  {info.runs_dir}")
        return
    _print_cells(grid_status(name))


def _gpu_list(count: int | None, ids: str | None) -> list[int] | None:
    """--gpus is a count everywhere (as in `ptb run`); --gpu-ids names the GPUs."""
    if count is not None and ids is not None:
        fail("give --gpus (a count) or --gpu-ids (indices), not both")
    if count is not None:
        from posttrainbench.executors.local import detect_gpus

        found = detect_gpus() if count > 0 else []
        if count < 0 or count > len(found):
            fail(f"--gpus {count}: this machine has {len(found)} GPU(s) the grid may use")
        return found[:count]
    if ids is None:
        return None
    try:
        return [int(x) for x in ids.split(",") if x.strip()]
    except ValueError:
        fail(f"--gpu-ids takes comma-separated GPU indices, not {ids!r}")


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


@app.command("original-scorer")
def original_scorer() -> None:
    """Install the original's scorers (inspect-ai 0.3.150, inspect-evals 0.3.103, all pinned) into their own
    environment under PTB_CACHE; evaluations then record accuracy_original beside accuracy."""
    from posttrainbench.evaluation import original

    out.print(str(original.install()))
    out.print(", ".join(f"{name} {version}" for name, version in original.versions().items()))


SCORER_HELP = ("ours (accuracy) or original (accuracy_original: the original's scorers, as the published rows "
               "were scored)")


@app.command()
def scores(
    by: Annotated[str, typer.Option(help="agent, benchmark, model or run")] = "agent",
    published: Annotated[bool, typer.Option(help="include the published base/instruct baselines (read only: "
                                            "nothing is stored)")] = False,
    grid: Annotated[str | None, typer.Option(help="only the agent runs of this grid's cells")] = None,
    json_: JSON_OPTION = False,
    csv_: CSV_OPTION = False,
    scorer: Annotated[str, typer.Option(help=SCORER_HELP)] = "ours",
) -> None:
    """Leaderboard numbers: weighted averages, gap-normalised scores, mean ± std over seeds, time and cost.
    Runs with --limit or --max-tokens are smoke tests: listed apart, never ranked."""
    from posttrainbench.scoring import scores_table

    fmt = _format(json_, csv_)
    if fmt == "table":
        out.print(scores_table(_store(reap=False), by=by, published=published, grid=grid, scorer=scorer))
        return
    from posttrainbench.cli.views import machine
    from posttrainbench.scoring import leaderboard
    from posttrainbench.scoring.tables import view_table

    table = view_table(leaderboard(_store(reap=False), published=published, grid=grid, scorer=scorer,
                                   bootstrap=0 if by == "run" else 1000), by)
    out.print(machine(table.rows, fmt), markup=False, highlight=False, soft_wrap=True, end="")


@app.command()
def judge(
    run_id: Annotated[str, typer.Argument(help="run id")],
    judges: Annotated[int, typer.Option(help="number of LLM judges (majority vote)")] = 3,
    agent: Annotated[str, typer.Option(help="the judge: SCAFFOLD:MODEL")] = "codex:gpt-5.1-codex",
    rerun: Annotated[bool, typer.Option(help="run the judges and the memorisation test again instead of reusing "
                                       "their results")] = False,
    timeout: Annotated[float, typer.Option(help="minutes each judge may take")] = 20.0,
) -> None:
    """Integrity checks of a run plus an ensemble of LLM judges over its workspace, trajectory and evidence.
    The deterministic checks always run again, and the memorisation test too when it had ended in an error: an
    integrity_error flag clears once they finish (--judges 0 runs only them)."""
    from posttrainbench.integrity import check_run
    from posttrainbench.integrity.check import memorisation_to_redo
    from posttrainbench.specs import parse_agent
    from posttrainbench.workspace.layout import RunLayout

    store = _store()
    row = store.get(_run_id(store, run_id))
    if timeout <= 0:
        fail("--timeout is a number of minutes above 0")
    redo = memorisation_to_redo(RunLayout(Path(row.run_dir)), rerun)
    report = check_run(Path(row.run_dir), judges=judges, judge_agent=parse_agent(agent), rerun=rerun, log=log,
                       judge_time_limit_s=timeout * 60, redo_memorisation=redo)
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
    published: Annotated[bool, typer.Option(help="include the published base/instruct baselines")] = False,
    grid: Annotated[str | None, typer.Option(help="only the agent runs of this grid's cells")] = None,
    scorer: Annotated[str, typer.Option(help=SCORER_HELP)] = "ours",
) -> None:
    """Build the static HTML leaderboard with charts, per-run pages and CSV/JSON exports."""
    import webbrowser

    from posttrainbench.report import build_report

    index = build_report(_store(reap=False), out_dir, published=published, grid=grid, scorer=scorer)
    out.print(str(index))
    if open_:
        webbrowser.open(index.resolve().as_uri())


def _execute(run_dir: Path, store):
    """Run the stages, echoing the agent's log lines as they arrive; every harness message first prints the agent
    output before it, so the story reads in order."""
    from posttrainbench.cli.follow import Follower
    from posttrainbench.executors.pipeline import execute
    from posttrainbench.workspace.layout import RunLayout

    def echo(line: str) -> None:
        console.print("  agent " + clean_text(line), style="dim", highlight=False, markup=False, soft_wrap=True)

    layout = RunLayout(run_dir)
    log(f"the agent's output, echoed below, is also in {layout.agent_log}")
    with Follower(layout.agent_log, echo) as follower:
        def ordered_log(message: str) -> None:
            follower.drain()
            log(message)

        return execute(run_dir, store, log=ordered_log)


def _spec(cls, **fields):
    from pydantic import ValidationError

    try:
        return cls(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


def _store(*, reap: bool = True):
    """The store. Commands that start or change runs first mark runs whose harness died as failed; read commands
    never write, and only say which runs that would be."""
    from posttrainbench import paths
    from posttrainbench.store import Store

    store = Store(paths.store_path())
    if reap:
        for run_id in store.reap_stale():
            console.print(f"[yellow]run {run_id} was interrupted: marked failed[/]")
    else:
        for run_id in store.stale():
            console.print(f"[yellow]run {run_id} was interrupted (its harness is gone): `ptb resume {run_id}`[/]")
    return store


def _pct(value: float | None) -> str:
    return units.percent(value)


def _print_runs(rows) -> None:
    from posttrainbench.cli.views import runs_table

    out.print(runs_table(rows))


def main() -> None:
    try:
        app()
    except PtbError as exc:
        console.print(f"[bold red]error:[/] {escape_text(exc)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
