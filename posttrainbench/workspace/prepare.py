"""Stage 1: lay out a run directory from a RunSpec: manifest, prompt, pristine evaluation files, staged data."""

import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

from posttrainbench import models
from posttrainbench.errors import PtbError
from posttrainbench.evaluation.data import stage_data
from posttrainbench.evaluation.runner import render_evaluate_py
from posttrainbench.specs import RunSpec, get_benchmark, get_model
from posttrainbench.workspace.hashing import hash_tree
from posttrainbench.workspace.layout import RunLayout
from posttrainbench.workspace.manifest import RunManifest, package_versions, write_manifest
from posttrainbench.workspace.prompt import render_prompt

TEMPLATES = Path(__file__).parents[1] / "evaluation" / "templates"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def make_run_dir(runs_dir: Path, run_id: str) -> RunLayout:
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        root = runs_dir / run_id
        root.mkdir()
        probe = root / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise PtbError(f"cannot create the run directory under {runs_dir}: {exc.strerror or exc}") from None
    return RunLayout(root)


def prepare(spec: RunSpec, *, runs_dir: Path, kind: str = "agent", run_id: str | None = None) -> RunManifest:
    model = get_model(spec.model)
    benchmark = get_benchmark(spec.benchmark)
    base_dir = models.fetch(model)
    layout = make_run_dir(runs_dir, run_id or new_run_id())

    data_dir = layout.root / "data"
    stage_data(benchmark, data_dir)
    hidden = spec.test_access == "hidden"
    agent_data = data_dir
    if hidden:
        # The sandbox sees only what the benchmark allows for training; the service reads data_dir.
        agent_data = layout.agent_data
        agent_data.mkdir()
        stage_data(benchmark, agent_data, names=benchmark.allowed_training_data)

    for folder in (layout.task, layout.home, layout.logs, layout.pristine):
        folder.mkdir(parents=True, exist_ok=True)
    (layout.pristine / "evaluate.py").write_text(render_evaluate_py(benchmark, model, hidden=hidden))
    shutil.copytree(TEMPLATES, layout.pristine / "templates")
    (layout.pristine / "task_context").mkdir()

    layout.prompt.write_text(render_prompt(model, benchmark, hours=spec.hours, gpus=spec.gpus, network=spec.network,
                                          test_access=spec.test_access))
    manifest = RunManifest(
        run_id=layout.root.name,
        kind=kind,
        spec=spec,
        model=model,
        benchmark=benchmark,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        base_model_dir=str(base_dir),
        hf_repo_dir=str(models.repo_dir(model)),
        data_dir=str(data_dir),
        agent_data_dir=str(agent_data),
        pristine_sha256=hash_tree(layout.pristine),
        versions=package_versions(),
    )
    write_manifest(layout.manifest, manifest)
    return manifest
