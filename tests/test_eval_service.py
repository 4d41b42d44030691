"""The evaluation service of test access `hidden`: a hostile client, the queue, cancellation, the client side.

The fast tests drive the real service (socket, vetting, copy, log) with a scripted evaluator; the slow ones run real
agents in the real sandbox and real evaluations of SmolLM2 on the CPU (tests/test_eval_service_runs.py)."""

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import service_client
from posttrainbench.evaluation.protocol import MAX_LINE, Reply
from posttrainbench.evaluation.service import EvalService
from posttrainbench.integrity.tamper import RUNNER_METRICS_KEYS
from posttrainbench.specs import RunSpec, parse_agent
from posttrainbench.workspace.layout import RunLayout
from posttrainbench.workspace.prepare import prepare

WAIT = 120  # generous: events, not sleeps, decide; this only bounds a hung test


class ScriptedEvaluator:
    """Records each job; blocks until released (or cancelled) when `hold` is set."""

    def __init__(self, hold: bool = False, metrics: dict | None = None):
        self.hold = hold
        self.metrics = metrics or {"accuracy": 0.5, "stderr": 0.1, "n_samples": 2, "input_tokens": 10,
                                   "output_tokens": 20, "eval_seconds": 1.0}
        self.jobs = []
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self.saw_cancel = threading.Event()

    def __call__(self, job, cancelled):
        self.jobs.append(job)
        assert job.model_dir.is_dir() and (job.model_dir / "model.safetensors").is_file()
        self.started.release()
        while self.hold and not self.release.is_set():
            if cancelled():
                self.saw_cancel.set()
                raise PtbError("stopped")
            time.sleep(0.05)
        return self.metrics


@pytest.fixture
def run_layout(tmp_path, small_model) -> tuple:
    spec = RunSpec(agent=parse_agent("command", ["true"]), model="smollm2-135m", benchmark="gsm8k", hours=1,
                   gpus=0, network="offline")
    manifest = prepare(spec, runs_dir=tmp_path / "runs")
    return manifest, RunLayout(tmp_path / "runs" / manifest.run_id)


def checkpoint(folder: Path, *, pickled: bool = False) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    if pickled:
        torch.save({"w": torch.zeros(2)}, folder / "pytorch_model.bin")
    else:
        save_file({"w": torch.zeros(2)}, folder / "model.safetensors")
    return folder


def exchange(path: Path, payload: bytes, timeout: float = WAIT) -> list[dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(payload)
        reader = conn.makefile("rb")
        return [json.loads(line) for line in iter(lambda: reader.readline(MAX_LINE), b"")]


def ask(service: EvalService, **request) -> list[dict]:
    return exchange(service.socket_path, json.dumps(request).encode() + b"\n")


def history(layout: RunLayout) -> list[dict]:
    return [json.loads(line) for line in layout.agent_evals.read_text().splitlines()]


def test_hidden_run_gets_the_client_and_no_test_data(run_layout):
    manifest, layout = run_layout
    assert manifest.spec.test_access == "hidden"
    assert (layout.root / "data" / "gsm8k" / "test.jsonl").is_file()  # for the service
    staged = sorted(str(p.relative_to(layout.agent_data)) for p in layout.agent_data.rglob("*") if p.is_file())
    assert staged == ["gsm8k/train.jsonl"]  # what the benchmark allows for training, nothing else
    evaluate_py = (layout.pristine / "evaluate.py").read_text()
    assert "service_client" in evaluate_py and "/ptb/data" not in evaluate_py
    assert "test set of GSM8K (Grade School Math 8K) is not on this machine" in layout.prompt.read_text()


def test_hostile_requests_get_one_line_errors_and_the_service_goes_on(run_layout, tmp_path):
    manifest, layout = run_layout
    checkpoint(layout.task / "good")
    checkpoint(layout.task / "pickled", pickled=True)
    checkpoint(tmp_path / "outside")
    (layout.task / "link").symlink_to(tmp_path / "outside")
    (layout.task / "via").mkdir()
    (layout.task / "via" / "deeper").symlink_to(layout.task / "good")
    linked = checkpoint(layout.task / "inner_link")
    (linked / "tokenizer.json").symlink_to("/etc/passwd")
    evaluator = ScriptedEvaluator()
    with EvalService(manifest, layout, deadline=time.time() + 3600, evaluator=evaluator) as service:
        cases = {
            b"not json\n": "invalid request",
            b"[1, 2]\n": "invalid request",
            b'{"model_path": "good", "items": true}\n': "items: Extra inputs are not permitted",
            b'{"model_path": "good", "limit": "all"}\n': "limit",
            b'{"model_path": "good", "limit": 0}\n': "limit",
            b'{"model_path": ""}\n': "model_path",
            b"x" * (MAX_LINE + 10): f"longer than {MAX_LINE} bytes",
            b'{"model_path": "../../../etc"}\n': "must be a folder inside /home/agent/task or /home/agent",
            b'{"model_path": "/ptb/data"}\n': "must be a folder inside",
            b'{"model_path": "/home/agent/task/../../../run/ptb"}\n': "must be a folder inside",
            b'{"model_path": "missing"}\n': "does not exist",
            b'{"model_path": "evaluate.py"}\n': "is not a model folder",
            b'{"model_path": "link"}\n': "symbolic link",
            b'{"model_path": "via/deeper"}\n': "symbolic link",
            b'{"model_path": "inner_link"}\n': "contains a symbolic link",
            b'{"model_path": "pickled"}\n': "no .safetensors weights (found pickled weights pytorch_model.bin",
            b'{"model_path": "good\\u0000x"}\n': "NUL",
        }
        (layout.task / "evaluate.py").touch()
        for payload, expected in cases.items():
            [line] = exchange(service.socket_path, payload)
            reply = Reply.model_validate(line)
            assert reply.status == "error" and expected in reply.error and "\n" not in reply.error, (payload, reply)
        # A client that connects and says nothing, or goes away, harms no one.
        socket.socket(socket.AF_UNIX).connect(str(service.socket_path))
        lines = ask(service, model_path="/home/agent/task/good", limit=3)
    assert evaluator.jobs and lines[0] == {"status": "queued", "ahead": 0}
    reply = Reply.model_validate(lines[-1])
    assert reply.status == "ok" and reply.metrics["accuracy"] == 0.5
    assert reply.settings == {"limit": 3, "max_tokens": 4000, "max_connections": 2, "gpu_memory_utilization": 0.3}
    records = history(layout)
    # every refusal is logged, the silent client's too (once it went away)
    assert sorted(r["status"] for r in records) == ["ok"] + ["refused"] * (len(cases) + 1)
    [ok] = [r for r in records if r["status"] == "ok"]
    assert ok["checkpoint_sha256"] == reply.checkpoint_sha256 and ok["metrics"]["n_samples"] == 2
    assert not (evaluator.jobs[0].model_dir).exists()  # the copy of the weights is gone, the record stays


def test_oversized_checkpoint_is_refused(run_layout):
    manifest, layout = run_layout
    big = checkpoint(layout.task / "big")
    with EvalService(manifest, layout, deadline=time.time() + 3600, evaluator=ScriptedEvaluator()) as service:
        with open(big / "model-2.safetensors", "wb") as fh:
            fh.truncate(service.max_bytes + 1)  # sparse: no disk used
        [line] = ask(service, model_path="big")
    assert "more than the" in line["error"] and "GB allowed" in line["error"]


def test_reply_holds_metrics_only(run_layout):
    manifest, layout = run_layout
    checkpoint(layout.task / "final_model")
    leaky = {"accuracy": 1.0, "stderr": 0.0, "n_samples": 1, "samples": [{"input": "a test item"}],
             "by_theme": {"x": 1}, "model_path": "/ptb/model"}
    with EvalService(manifest, layout, deadline=time.time() + 3600, evaluator=ScriptedEvaluator(metrics=leaky)) as s:
        lines = ask(s)
    assert set(lines[-1]["metrics"]) == {"accuracy", "stderr", "n_samples", "input_tokens", "output_tokens",
                                         "eval_seconds"}
    assert "a test item" not in json.dumps(lines) and "a test item" not in layout.agent_evals.read_text()


def test_one_evaluation_at_a_time_in_order(run_layout):
    manifest, layout = run_layout
    checkpoint(layout.task / "final_model")
    evaluator = ScriptedEvaluator(hold=True)
    results = {}
    with EvalService(manifest, layout, deadline=time.time() + 3600, evaluator=evaluator) as service:
        first = threading.Thread(target=lambda: results.setdefault("first", ask(service, limit=1)))
        first.start()
        assert evaluator.started.acquire(timeout=WAIT)
        second = threading.Thread(target=lambda: results.setdefault("second", ask(service, limit=2)))
        second.start()
        deadline = time.time() + WAIT
        while len(list(layout.service.glob("*/model"))) < 2:
            assert time.time() < deadline
            time.sleep(0.05)
        assert len(evaluator.jobs) == 1  # the second waits while the first runs
        evaluator.release.set()
        first.join(WAIT)
        second.join(WAIT)
    assert results["second"][0] == {"status": "queued", "ahead": 1}
    assert [Reply.model_validate(r[-1]).status for r in (results["first"], results["second"])] == ["ok", "ok"]
    records = history(layout)
    assert [r["settings"]["limit"] for r in records] == [1, 2]
    assert records[1]["started_at"] >= records[0]["ended_at"]
    assert Reply.model_validate(results["second"][-1]).queued_s > 0


def test_closing_cancels_the_running_and_the_waiting(run_layout):
    manifest, layout = run_layout
    checkpoint(layout.task / "final_model")
    evaluator = ScriptedEvaluator(hold=True)
    results = {}
    service = EvalService(manifest, layout, deadline=time.time() + 3600, evaluator=evaluator).__enter__()
    first = threading.Thread(target=lambda: results.setdefault("first", ask(service)))
    first.start()
    assert evaluator.started.acquire(timeout=WAIT)
    second = threading.Thread(target=lambda: results.setdefault("second", ask(service)))
    second.start()
    deadline = time.time() + WAIT
    while len(list(layout.service.glob("*/model"))) < 2:  # the second request's copy is made: it is queued
        assert time.time() < deadline
        time.sleep(0.05)
    service.close()  # the agent's budget is over
    first.join(WAIT)
    second.join(WAIT)
    assert evaluator.saw_cancel.is_set() and len(evaluator.jobs) == 1
    for name in ("first", "second"):
        reply = Reply.model_validate(results[name][-1])
        assert reply.status == "error" and reply.error.startswith("cancelled: the agent's time is up")
    assert [r["status"] for r in history(layout)] == ["error", "error"]
    assert not service.socket_path.exists()


def test_past_the_deadline_nothing_is_evaluated(run_layout):
    manifest, layout = run_layout
    checkpoint(layout.task / "final_model")
    evaluator = ScriptedEvaluator()
    with EvalService(manifest, layout, deadline=time.time() - 1, evaluator=evaluator) as service:
        [line] = ask(service)
    assert "budget ended" in line["error"] and not evaluator.jobs


def test_client_prints_the_runner_summary_and_writes_metrics(run_layout, tmp_path, capsys, monkeypatch):
    manifest, layout = run_layout
    checkpoint(layout.task / "final_model")
    monkeypatch.chdir(tmp_path)
    defaults = manifest.benchmark.agent_defaults.model_dump()
    with EvalService(manifest, layout, deadline=time.time() + 3600, evaluator=ScriptedEvaluator()) as service:
        code = service_client.main(["--limit", "5", "--json-output-file", "m.json", "--out-dir", "out"],
                                   benchmark="gsm8k", base_model="smollm2-135m", socket_path=str(service.socket_path),
                                   defaults=defaults)
        bad = service_client.main(["--max-connections", "0"], benchmark="gsm8k", base_model="smollm2-135m",
                                  socket_path=str(service.socket_path), defaults=defaults)
    captured = capsys.readouterr()
    assert code == 0 and bad == 2
    assert "gsm8k accuracy: 0.5000 (stderr 0.1000, n=2) — details in out/metrics.json" in captured.out
    assert "error: --max-connections:" in captured.err
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["accuracy"] == 0.5 and RUNNER_METRICS_KEYS <= written.keys() and written["limit"] == 5
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == written
    down = service_client.main([], benchmark="gsm8k", base_model="smollm2-135m",
                               socket_path=str(tmp_path / "none.sock"), defaults=defaults)
    assert down == 2 and "cannot reach the evaluation service" in capsys.readouterr().err


def test_socket_is_reachable_by_another_uid(run_layout):
    manifest, layout = run_layout
    with EvalService(manifest, layout, deadline=time.time() + 3600, evaluator=ScriptedEvaluator()) as service:
        assert os.stat(service.socket_path).st_mode & 0o777 == 0o666


def test_show_and_report_give_the_evaluation_history(tmp_path, small_model):
    from cli_support import ptb

    from posttrainbench import paths
    from posttrainbench.executors.pipeline import create_run
    from posttrainbench.report import build_report
    from posttrainbench.store import Store

    store = Store(paths.store_path())
    spec = RunSpec(agent=parse_agent("command", ["true"]), model="smollm2-135m", benchmark="gsm8k", hours=1,
                   gpus=0, network="offline")
    manifest = create_run(spec, store)
    layout = RunLayout(Path(store.get(manifest.run_id).run_dir))
    checkpoint(layout.task / "final_model")
    with EvalService(manifest, layout, deadline=time.time() + 3600, evaluator=ScriptedEvaluator()) as service:
        ask(service, limit=7)
        ask(service, model_path="[bold red]<script>boom")
    store.update(manifest.run_id, score=0.25, score_source="final")
    store.set_status(manifest.run_id, "done")

    shown = ptb("show", manifest.run_id, env={"COLUMNS": "300"})
    assert shown.returncode == 0, shown.stderr
    assert "test access: hidden; the agent asked for 2 evaluation(s), 1 completed" in shown.stdout
    assert "50.0%" in shown.stdout and "[bold red]<script>boom" in shown.stdout  # plain text, not markup

    site = build_report(store, tmp_path / "site", bootstrap=0)
    page = (site.parent / "runs" / f"{manifest.run_id}.html").read_text()
    assert "The agent&#39;s evaluations" in page or "The agent's evaluations" in page
    assert "2 request(s) to the evaluation service, 1 completed" in page
    assert "&lt;script&gt;boom" in page and "<script>boom" not in page
    assert "Test access</dt><dd>hidden" in page


def test_a_manifest_from_before_the_option_reads_as_visible(run_layout):
    from posttrainbench.workspace.manifest import read_manifest

    _, layout = run_layout
    data = json.loads(layout.manifest.read_text())
    assert data["spec"]["test_access"] == "hidden"
    del data["spec"]["test_access"], data["agent_data_dir"]
    layout.manifest.write_text(json.dumps(data))
    assert read_manifest(layout.manifest).spec.test_access == "visible"


def test_the_queue_is_short(run_layout):
    from posttrainbench.evaluation.service import MAX_WAITING

    manifest, layout = run_layout
    checkpoint(layout.task / "final_model")
    evaluator = ScriptedEvaluator(hold=True)
    with EvalService(manifest, layout, deadline=time.time() + 3600, evaluator=evaluator) as service:
        clients = [threading.Thread(target=ask, args=(service,)) for _ in range(MAX_WAITING + 1)]
        clients[0].start()
        assert evaluator.started.acquire(timeout=WAIT)
        for client in clients[1:]:
            client.start()
        deadline = time.time() + WAIT
        while len(list(layout.service.glob("*/model"))) < MAX_WAITING + 1:
            assert time.time() < deadline
            time.sleep(0.05)
        [line] = ask(service)
        assert f"{MAX_WAITING} evaluations of this run are waiting already" in line["error"]
        evaluator.release.set()
        for client in clients:
            client.join(WAIT)
    statuses = [r["status"] for r in history(layout)]
    assert statuses.count("ok") == MAX_WAITING + 1 and statuses.count("refused") == 1


def test_operator_vllm_settings_reach_the_harness_evaluations_only(monkeypatch):
    """VLLM_* settings of the harness's environment (e.g. turning off a sampler whose kernels are not installed)
    reach the evaluation sandboxes, never the agent's; credentials never do."""
    from posttrainbench.agents.launch import _passthrough_env, evaluation_env

    for name, value in {"VLLM_USE_FLASHINFER_SAMPLER": "0", "VLLM_API_KEY": "k", "VLLM_HF_TOKEN": "t",
                        "NCCL_NVLS_ENABLE": "0", "OPENAI_API_KEY": "sk"}.items():
        monkeypatch.setenv(name, value)
    env = evaluation_env()
    assert env["VLLM_USE_FLASHINFER_SAMPLER"] == "0" and env["NCCL_NVLS_ENABLE"] == "0"
    assert not {"VLLM_API_KEY", "VLLM_HF_TOKEN", "OPENAI_API_KEY"} & env.keys()
    assert not any(name.startswith("VLLM_") for name in _passthrough_env())
