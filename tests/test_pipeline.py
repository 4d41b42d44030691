"""One run end to end through the CLI and the pipeline, with scripted `command` agents in the real sandbox."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from cli_support import ptb

from posttrainbench.executors.pipeline import create_run, execute
from posttrainbench.specs import AgentSpec, RunSpec
from posttrainbench.store import Store
from posttrainbench.workspace.layout import RunLayout

EVAL = {"benchmark": "humaneval", "limit": 1, "max_tokens": 16}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--agent", "reference", "--model", "llama-99b", "--benchmark", "gsm8k"], "unknown model 'llama-99b'"),
        (["run", "--agent", "reference", "--model", "smollm2-135m", "--benchmark", "mmlu"],
         "unknown benchmark 'mmlu'"),
        (["run", "--agent", "robot", "--model", "smollm2-135m", "--benchmark", "gsm8k"], "unknown agent 'robot'"),
        (["run", "--agent", "reference", "--model", "smollm2-135m", "--benchmark", "gsm8k", "--hours", "0"],
         "budget must be more than 0 hours"),
        (["run", "--agent", "reference", "--model", "smollm2-135m", "--benchmark", "gsm8k", "--test-access", "peek"],
         "test_access: Input should be 'hidden' or 'visible'"),
        (["eval", "/nonexistent/model", "--benchmark", "gsm8k", "--base-model", "smollm2-135m"], "/nonexistent/model"),
        (["show", "no-such-run"], "no run 'no-such-run'"),
    ],
)
def test_bad_input_is_one_clear_line(args, expected):
    result = ptb(*args)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_unwritable_runs_dir(tmp_path, small_model):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = ptb("run", "--agent", "reference", "--model", "smollm2-135m", "--benchmark", "humaneval", "--gpus", "0",
                 env={"PTB_RUNS": str(blocker / "runs")})
    assert result.returncode == 1
    assert "cannot create the run directory" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_pickled_final_model(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "pytorch_model.bin").write_bytes(b"\x80\x04")
    (model / "config.json").write_text("{}")
    result = ptb("eval", str(model), "--benchmark", "humaneval", "--base-model", "smollm2-135m")
    assert result.returncode == 1 and "pickled" in result.stderr.lower(), result.stderr


# An agent that submits the (cached) SmolLM2 weights as its final_model.
SAVE_SMOLLM = (
    "python -c \"from transformers import AutoModelForCausalLM as M, AutoTokenizer as T; "
    "n='HuggingFaceTB/SmolLM2-135M-Instruct'; M.from_pretrained(n).save_pretrained('final_model'); "
    "T.from_pretrained(n).save_pretrained('final_model')\""
)


def _run(tmp_path, script: str, hours: float = 0.02, test_access: str = "hidden",
         log=lambda _: None) -> tuple[Store, RunLayout, object]:
    store = Store(tmp_path / "store.sqlite")
    spec = RunSpec(agent=AgentSpec(scaffold="command", command=["bash", "-c", script]), model="smollm2-135m",
                   hours=hours, gpus=0, network="offline", test_access=test_access, **EVAL)
    manifest = create_run(spec, store, runs_dir=tmp_path / "runs")
    layout = RunLayout(tmp_path / "runs" / manifest.run_id)
    return store, layout, execute(layout.root, store, log=log)


@pytest.mark.slow
@pytest.mark.bwrap
def test_agent_without_model_scores_as_base_and_cannot_touch_evaluation_files(tmp_path, small_model, bwrap):
    script = (
        "echo tampered > evaluate.py; echo tampered > templates/qwen3.jinja; "
        "touch $HF_HOME/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/planted; "
        "rm -rf $HF_HOME/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots; echo tried"
    )
    store, layout, row = _run(tmp_path, script)
    assert row.status == "done" and row.score_source == "base"
    # Refused writes to the evaluation files are tampering, a flag of their own (the run also left no model).
    assert row.flag == "tamper" and "write to a protected path refused" in row.error
    assert row.score == store.metrics(row.id)["base"]["accuracy"]
    log = layout.agent_log.read_text()
    assert "Read-only file system" in log and "tried" in log
    assert "tampered" not in (layout.pristine / "evaluate.py").read_text()
    assert not (small_model.parents[1] / "planted").exists() and small_model.is_dir()
    assert [s["status"] for s in store.stages(row.id)] == ["done"] * 6
    score = json.loads((layout.root / "score.json").read_text())
    assert score["source"] == "base" and score["final"] is None


@pytest.mark.slow
@pytest.mark.bwrap
def test_agent_model_is_vetted_and_scored(tmp_path, small_model, bwrap):
    script = (
        SAVE_SMOLLM + " && "
        "echo '{\"max_new_tokens\": 1}' > final_model/generation_config.json && "
        "echo 'import os' > final_model/modeling_x.py"
    )
    said = []
    store, layout, row = _run(tmp_path, script, hours=0.05, log=said.append)
    assert row.status == "done" and row.score_source == "final", row.error
    # its progress came out of the sandbox, line by line, with the log's path first
    assert f"evaluating the agent's model on humaneval in a sandbox; its log: {layout.results('final')}" \
        f"/evaluate.log" in said, said
    assert any(m.startswith("evaluating the agent's model: 1/1 items, ") for m in said), said
    assert not layout.progress.exists()
    metrics = store.metrics(row.id)
    assert set(metrics) == {"base", "final"} and metrics["final"]["n_samples"] == 1
    collected = sorted(p.name for p in layout.final_model.iterdir())
    assert "generation_config.json" not in collected and "modeling_x.py" not in collected
    assert json.loads(layout.agent_exit.read_text())["status"] == "finished"
    # The agent's model was evaluated in a sandbox (evaluate_model), HumanEval's scorer nested inside it.
    inside = layout.results("final") / "out" / "result" / "metrics.json"
    assert json.loads(inside.read_text())["accuracy"] == metrics["final"]["accuracy"]
    assert os.geteuid() != 0 or inside.stat().st_uid != 0  # written by the sandbox's uid, not the harness's
    # The memorisation test ran in the evaluation sandbox too and joined integrity.json.
    checks = json.loads((layout.root / "integrity.json").read_text())["checks"]
    assert checks["memorisation"]["status"] == "pass" and checks["memorisation"]["numbers"]["items"] > 0


@pytest.mark.slow
@pytest.mark.bwrap
def test_agent_over_budget_is_killed_and_scored_as_base(tmp_path, small_model, bwrap):
    store, layout, row = _run(tmp_path, "setsid sleep 1000 & sleep 1000", hours=3 / 3600)
    exit_info = json.loads(layout.agent_exit.read_text())
    assert exit_info["status"] == "timed_out"
    assert row.score_source == "base"
    leftovers = subprocess.run(["pgrep", "-f", "sleep 1000"], capture_output=True, text=True).stdout.split()
    assert not leftovers


def test_instruct_twin_spec():
    from posttrainbench.executors.baseline import instruct_twin

    twin = instruct_twin("qwen3-1.7b-base")
    assert (twin.hf_id, twin.source.revision) == ("Qwen/Qwen3-1.7B", "70d244cc86ccca08cf5af4e1e306ecf908b1ad5e")
    assert twin.chat_template == "qwen3.jinja"


@pytest.mark.slow
def test_zeroshot_baseline_is_stored_like_a_run(tmp_path, small_model):
    from posttrainbench.executors.baseline import run_baseline

    store = Store(tmp_path / "store.sqlite")
    row = run_baseline(store, "zeroshot", "smollm2-135m", "humaneval", limit=1, max_tokens=16, log=lambda _: None)
    assert (row.kind, row.agent, row.status, row.score_source) == ("baseline", "base-zeroshot", "done", "final")
    assert store.metrics(row.id)["final"]["n_samples"] == 1
    assert (Path(row.run_dir) / "results" / "final" / "metrics.json").is_file()


@pytest.mark.slow
@pytest.mark.bwrap
def test_agent_that_trains_on_the_test_set_is_flagged_and_scored_as_base(tmp_path, small_model, bwrap):
    script = (
        "mkdir -p data final_model && gunzip -c $PTB_DATA_DIR/humaneval/HumanEval.jsonl.gz > data/train.jsonl && "
        + SAVE_SMOLLM
    )
    store, layout, row = _run(tmp_path, script, hours=0.05, test_access="visible")  # the original's exposure
    assert row.flag == "contamination" and row.score_source == "base"
    assert row.error.startswith("flagged: contamination")
    assert row.score == store.metrics(row.id)["base"]["accuracy"]
    report = json.loads((layout.root / "integrity.json").read_text())
    assert report["flags"]["contamination"] and report["checks"]["contamination"]["evidence"]


def test_a_runs_evaluation_settings_reach_both_evaluations(tmp_path, small_model, monkeypatch):
    """`evaluation` in a run's spec (run flags, grid YAML) is what the base and the final evaluation are run with,
    and a base score measured with other settings is not taken from the cache."""
    from posttrainbench import paths
    from posttrainbench.evaluation import sandboxed
    from posttrainbench.executors import evaluate
    from posttrainbench.specs.run import EvalSettings

    spec = RunSpec(agent=AgentSpec(scaffold="command", command=["true"]), model="smollm2-135m", benchmark="gsm8k",
                   gpus=0, sandbox="none", network="offline", limit=1,
                   evaluation={"backend": "hf", "max_connections": 3})
    store = Store(paths.store_path())
    manifest = create_run(spec, store)
    seen = {}

    def base_evaluation(model_path, benchmark, *, out_dir, settings, **_):
        seen["base"] = settings
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text('{"accuracy": 0.5}')
        return {"accuracy": 0.5}

    class FinalEvaluation:
        def __init__(self, manifest, **_):
            pass

        def evaluate(self, model_dir, work_dir, settings, **_):
            seen["final"] = settings
            return {"accuracy": 0.5}

    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "cache")  # base scores cached in this test alone
    monkeypatch.setattr(evaluate, "run_evaluation", base_evaluation)
    monkeypatch.setattr(sandboxed, "SandboxedEvaluation", FinalEvaluation)
    layout = RunLayout(Path(store.get(manifest.run_id).run_dir))
    evaluate.evaluate_base(manifest, layout, log=lambda _: None)
    evaluate.evaluate_model(manifest, tmp_path, tmp_path / "final", log=lambda _: None)
    assert seen["base"] == {"backend": "hf", "max_connections": 3}
    assert {k: seen["final"].get(k) for k in ("backend", "max_connections")} == {"backend": "hf", "max_connections": 3}
    plain = manifest.model_copy(update={"spec": spec.model_copy(update={"evaluation": EvalSettings()})})
    assert evaluate._base_key(manifest) != evaluate._base_key(plain)
