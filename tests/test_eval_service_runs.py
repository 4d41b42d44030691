"""Test access `hidden` with real agents in the real sandbox and real evaluations of SmolLM2-135M on the CPU."""

import json
import os
import time
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from test_pipeline import SAVE_SMOLLM

from posttrainbench.agents.launch import run_agent
from posttrainbench.evaluation.runner import evaluate
from posttrainbench.executors.pipeline import create_run
from posttrainbench.integrity import index_cache
from posttrainbench.integrity.contamination import available_benchmarks, default_index
from posttrainbench.specs import AgentSpec, RunSpec
from posttrainbench.store import Store
from posttrainbench.workspace.layout import RunLayout

pytestmark = [pytest.mark.slow, pytest.mark.bwrap]

# Walks everything the sandbox shows, scanning each readable file with the project's contamination index (handed
# in as the cached-index folder home/.scan/index, which is skipped). /proc is read for the environments of its processes only.
SCAN = r"""
import json, os, stat, sys
from pathlib import Path
from posttrainbench.integrity import files, index_cache
from posttrainbench.integrity.contamination import scan_file
index = index_cache.load(Path(sys.argv[1]))
skip = {os.path.dirname(sys.argv[1]), "/proc", "/sys", "/dev"}
found, scanned, size, stack = [], 0, 0, ["/"]
planted = "/tmp/planted.txt"  # a control: one item written where the agent may write, which must be found
open(planted, "w").write(" ".join(text for _, text in index.items[0].segments))
def scan(path, rel, nbytes):
    global scanned, size
    result = scan_file(index, Path(os.path.dirname(path)), files.Found(os.path.basename(path), nbytes, "workspace"))
    scanned, size = scanned + 1, size + result.size
    found.extend({"file": rel, "benchmark": m.benchmark, "item": m.item} for m in result.matches)
    found.extend({"file": rel, "benchmark": c["benchmark"], "item": "canary"} for c in result.canaries)
while stack:
    folder = stack.pop()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        continue
    for entry in entries:
        if entry.path in skip or entry.is_symlink():
            continue
        if entry.is_dir():
            stack.append(entry.path)
        elif entry.is_file() and os.access(entry.path, os.R_OK):
            try:
                scan(entry.path, entry.path, entry.stat().st_size)
            except (OSError, ValueError):
                pass
os.makedirs("/tmp/environ", exist_ok=True)
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:  # /proc files report no size: scan a copy
        copy = f"/tmp/environ/{pid}"
        open(copy, "wb").write(open(f"/proc/{pid}/environ", "rb").read())
        scan(copy, f"/proc/{pid}/environ", os.path.getsize(copy))
    except OSError:
        pass
json.dump({"found": found, "files": scanned, "bytes": size}, open("scan.json", "w"))
"""


# The agents end as soon as their script does: a long budget only keeps a loaded machine from cutting them short.
def _run(tmp_path: Path, script: str, *, benchmark: str = "humaneval", hours: float = 1.0, access: str = "hidden",
         before=None) -> tuple:
    store = Store(tmp_path / "store.sqlite")
    spec = RunSpec(agent=AgentSpec(scaffold="command", command=["bash", "-c", script]), model="smollm2-135m",
                   benchmark=benchmark, hours=hours, gpus=0, network="offline", test_access=access)
    manifest = create_run(spec, store, runs_dir=tmp_path / "runs")
    layout = RunLayout(tmp_path / "runs" / manifest.run_id)
    if before is not None:
        before(layout)
    exit_info = run_agent(manifest, layout)
    return manifest, layout, exit_info


def _hand_in_index(layout: RunLayout) -> None:
    folder = layout.home / ".scan"
    folder.mkdir()
    index_cache.save(default_index(), folder / "index")
    (folder / "scan.py").write_text(SCAN)


def test_a_hidden_sandbox_holds_no_test_item(tmp_path, small_model, shared_data, bwrap):
    usable, missing = available_benchmarks()
    assert not missing, f"the data mirror lacks {missing}"
    script = "env > env.txt; python $HOME/.scan/scan.py $HOME/.scan/index"
    _, layout, exit_info = _run(tmp_path, script, before=_hand_in_index)
    assert exit_info.status == "finished", layout.agent_log.read_text()[-3000:]
    result = json.loads((layout.task / "scan.json").read_text())
    assert result["files"] > 1000 and result["bytes"] > 10**7  # it did look everywhere
    planted = [f for f in result["found"] if f["file"] == "/tmp/planted.txt"]
    others = [f for f in result["found"] if f["file"] != "/tmp/planted.txt"]
    assert planted, "the scan must find the item it planted itself"
    assert not others, others[:10]


def test_the_original_setup_shows_the_test_set(tmp_path, small_model, shared_data, bwrap):
    """The control of the test above: with test access visible, the same search finds HumanEval in /ptb/data."""
    script = "python $HOME/.scan/scan.py $HOME/.scan/index"
    limited = SCAN.replace('stack = [], 0, 0, ["/"]', 'stack = [], 0, 0, ["/ptb/data"]')

    def hand_in(layout):
        _hand_in_index(layout)
        (layout.home / ".scan" / "scan.py").write_text(limited)

    _, layout, _ = _run(tmp_path, script, access="visible", before=hand_in)
    found = json.loads((layout.task / "scan.json").read_text())["found"]
    assert {f["benchmark"] for f in found if f["file"].startswith("/ptb/data/")} == {"humaneval"}


def test_agent_evaluation_matches_the_harness(tmp_path, small_model, bwrap):
    script = (SAVE_SMOLLM + " && python evaluate.py --limit 2 --max-tokens 16 --json-output-file agent_eval.json"
              " && ln -s final_model linked && python evaluate.py --model-path linked --limit 1; "
              "python evaluate.py --model-path /ptb/data --limit 1; true")
    manifest, layout, exit_info = _run(tmp_path, script, hours=0.3)  # a loaded 2-core machine takes minutes
    log = layout.agent_log.read_text()
    assert exit_info.status == "finished", log[-3000:]
    agent = json.loads((layout.task / "agent_eval.json").read_text())
    assert "humaneval accuracy: " in log and "(stderr " in log
    assert "is reached through a symbolic link" in log and "must be a folder inside" in log
    defaults = manifest.benchmark.agent_defaults
    harness = evaluate(layout.submitted_model, "humaneval", base_model="smollm2-135m", out_dir=tmp_path / "harness",
                       limit=2, max_tokens=16, max_connections=defaults.max_connections,
                       gpu_memory_utilization=defaults.gpu_memory_utilization)
    for key in ("accuracy", "stderr", "n_samples", "output_tokens", "input_tokens"):
        assert agent[key] == harness[key], key
    # Item by item the same verdicts, each explained by the test process: HumanEval's scorer really ran its
    # sandboxes inside the service's (a scorer that could not start them fails the evaluation, never scores 0).
    [service_log] = layout.service.glob("*/out/result/logs/*.json")
    [harness_log] = (tmp_path / "harness" / "logs").glob("*.json")
    service, harness_verdicts = _verdicts(service_log), _verdicts(harness_log)
    assert {k: v for k, (v, _) in service.items()} == {k: v for k, (v, _) in harness_verdicts.items()}
    assert len(service) == 2 and all(why for _, why in service.values())
    records = [json.loads(line) for line in layout.agent_evals.read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "refused", "refused"]
    assert records[0]["settings"] == {"limit": 2, "max_tokens": 16, "max_connections": defaults.max_connections,
                                      "gpu_memory_utilization": defaults.gpu_memory_utilization}
    assert records[0]["checkpoint_sha256"] == agent["checkpoint_sha256"]
    # What the agent got back is numbers: no inspect log, prompt, completion or test of the items.
    assert not list((layout.task / "eval_results").glob("*/logs"))
    assert all(isinstance(v, int | float | str | dict | None) for v in agent.values())
    assert "def " not in json.dumps(agent)


def _verdicts(inspect_log: Path) -> dict:
    """item -> (verdict, explanation) of HumanEval's scorer (a failed item's explanation is the test's error, which
    may differ between two runs: the candidate ending races the test's next call)."""
    samples = json.loads(inspect_log.read_text())["samples"]
    return {s["id"]: (s["scores"]["verify"]["value"], s["scores"]["verify"].get("explanation")) for s in samples}


def test_budget_end_cancels_a_running_evaluation(tmp_path, small_model, bwrap):
    # Long enough to save the model and start evaluating every item with many tokens (well under a minute, also
    # under load); far too short to finish.
    script = SAVE_SMOLLM + " && python evaluate.py --limit -1 --max-tokens 2000"
    budget_s = 180
    started = time.time()
    _, layout, exit_info = _run(tmp_path, script, hours=budget_s / 3600)
    assert exit_info.status == "timed_out"
    [record] = [json.loads(line) for line in layout.agent_evals.read_text().splitlines()]
    assert record["status"] == "error" and record["error"].startswith("cancelled")
    assert record["started_at"] is not None
    assert time.time() - started < budget_s + 300  # the budget, then the agent's grace and the cancellation
    assert not list(layout.service.glob("*/model"))  # the copy is gone


def test_graded_benchmark_uses_the_harness_grader_key(tmp_path, small_model, bwrap, monkeypatch):
    secret = "sk-harness-grader-" + os.urandom(8).hex()
    with FakeOpenAI(lambda request: "[[A>>B]]") as grader:
        monkeypatch.setenv("PTB_GRADER_BASE_URL", grader.url)
        monkeypatch.setenv("PTB_GRADER_API_KEY", secret)
        script = (SAVE_SMOLLM + " && env > env.txt && python evaluate.py --limit 1 --max-tokens 8 "
                  "--json-output-file graded.json; cat /proc/*/environ > environs.txt 2>/dev/null; true")
        _, layout, exit_info = _run(tmp_path, script, benchmark="arenahardwriting")
        posts = grader.posts()
    log = layout.agent_log.read_text()
    assert exit_info.status == "finished", log[-3000:]
    graded = json.loads((layout.task / "graded.json").read_text())
    assert graded["n_samples"] == 1 and graded["accuracy"] is not None
    sent = [{k.lower(): v for k, v in p.headers.items()}.get("authorization") for p in posts]
    assert sent and set(sent) == {f"Bearer {secret}"}  # the proxy added the harness's key outside
    for root in (layout.task, layout.home):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert secret.encode() not in path.read_bytes(), path
    assert secret not in log
    for path in layout.service.rglob("*"):  # nor in the evaluation's own sandbox
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
