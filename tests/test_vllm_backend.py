"""The vLLM backend against a stand-in `vllm` executable (tests/fake_vllm.py): one server per evaluation, every item
in flight, our flags and sampling on the wire, and the failure paths (start-up error, out of memory, a server that
dies mid-way or never answers) ending in a clear error or a retry with fewer tokens, never a hang."""

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from posttrainbench.errors import PtbError
from posttrainbench.evaluation.runner import evaluate, resolve_backend
from posttrainbench.evaluation.vllm_server import ServerStartError, VllmServer, generation_deadline_s, server_args

FAKE = Path(__file__).parent / "fake_vllm.py"


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    """Points PTB_VLLM at the stand-in; returns a function that sets its mode and the state file it writes."""
    exe = tmp_path / "bin" / "vllm"
    exe.parent.mkdir()
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} \"$@\"\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    state = tmp_path / "fake-vllm" / "state"
    state.parent.mkdir()
    monkeypatch.setenv("PTB_VLLM", str(exe))
    monkeypatch.setenv("FAKE_VLLM_STATE", str(state))

    def mode(name: str) -> Path:
        monkeypatch.setenv("FAKE_VLLM_MODE", name)
        return state

    return mode


def _lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _evaluate(model: Path, out: Path, **kw) -> dict:
    return evaluate(model, "gsm8k", base_model="smollm2-135m", out_dir=out, limit=3, backend="vllm", device="cpu",
                    **kw)


def test_one_server_all_items_in_flight_pinned_sampling(small_model, tmp_path, fake_vllm):
    state = fake_vllm("ok")
    metrics = _evaluate(small_model, tmp_path / "out")

    assert metrics["backend"] == "vllm" and metrics["n_samples"] == 3
    assert metrics["generation"]["max_connections"] == 3  # every item in flight
    [attempt] = metrics["attempts"]
    assert attempt["status"] == "success" and attempt["server_start_s"] >= 0
    [argv] = _lines(state.with_suffix(".calls"))  # one `vllm serve` for the evaluation
    assert argv[0] == "serve"
    flags = " ".join(argv)
    assert "--generation-config vllm" in flags and "--enable-prefix-caching" in flags and "--seed 0" in flags
    assert "--host 127.0.0.1" in flags and "--api-key" not in flags  # the key travels in the environment
    template = Path(argv[argv.index("--chat-template") + 1])
    assert "--gpu-memory-utilization" not in flags  # a CPU run
    requests = _lines(state.with_suffix(".requests"))
    assert len(requests) == 3
    for body in requests:
        assert body["temperature"] == 0.6 and body["top_p"] == 0.95 and body["top_k"] == 20
        assert body["max_tokens"] == 4000 and "seed" not in body  # on CPU only the server's (see runner)
        assert body["chat_template_kwargs"] == {"enable_thinking": True} and body["stop_token_ids"]
    assert not template.exists()  # the model view was removed after the evaluation
    assert (tmp_path / "out" / "logs" / "vllm-serve.log").read_text().startswith("$ ")


def test_a_vllm_evaluation_never_asks_the_hub(small_model, tmp_path, fake_vllm, hub_listener):
    """The same lookup as the transformers path's stall (test_hf_batching.py), on the vLLM path: no connection to
    the hub from the harness's process or the server it starts."""
    fake_vllm("ok")
    assert _evaluate(small_model, tmp_path / "out")["n_samples"] == 3
    assert hub_listener == []


def test_requests_are_built_while_the_server_loads(small_model, tmp_path, fake_vllm):
    """inspect's per-sample work up to the request (seconds for a thousand items) overlaps `vllm serve`'s start-up:
    every sample began and made its model call before the server answered, and each request waited in
    server_gate's HTTP client instead of failing."""
    from inspect_ai.log import read_eval_log

    state = fake_vllm("slow:4")
    metrics = _evaluate(small_model, tmp_path / "out")
    answered = float(state.with_suffix(".ready").read_text())
    [attempt] = metrics["attempts"]
    assert attempt["server_start_s"] >= 4 and 0 < attempt["serving_s"] < metrics["eval_seconds"] + 1
    [path] = (tmp_path / "out" / "logs").glob("*.json")
    samples = read_eval_log(str(path)).samples
    assert len(samples) == 3 and all(s.scores for s in samples)
    assert max(s.events[0].timestamp.timestamp() for s in samples) < answered
    model_calls = [e for s in samples for e in s.events if e.event == "model"]
    assert len(model_calls) == 3 and max(e.timestamp.timestamp() for e in model_calls) < answered
    assert len(_lines(state.with_suffix(".requests"))) == 3


def test_start_failure_is_one_clear_error(small_model, tmp_path, fake_vllm):
    state = fake_vllm("exit")
    with pytest.raises(PtbError, match="cannot serve .*exited with code 1 during start-up: ValueError: the model's"):
        _evaluate(small_model, tmp_path / "out")
    assert len(_lines(state.with_suffix(".calls"))) == 1  # fewer tokens cannot help: no retries
    [attempt] = json.loads((tmp_path / "out" / "attempts.json").read_text())
    assert attempt["status"] == "error" and "ValueError" in attempt["error"]


def test_out_of_memory_at_start_walks_the_retry_ladder(small_model, tmp_path, fake_vllm):
    state = fake_vllm("oom")
    with pytest.raises(PtbError, match="failed 3 times .*CUDA out of memory"):
        _evaluate(small_model, tmp_path / "out")
    attempts = json.loads((tmp_path / "out" / "attempts.json").read_text())
    assert [a["max_tokens"] for a in attempts] == [4000, 3000, 2000]  # gsm8k's pinned ladder
    assert len(_lines(state.with_suffix(".calls"))) == 3


def test_server_dying_midway_is_restarted_with_fewer_tokens(small_model, tmp_path, fake_vllm):
    state = fake_vllm("die-once:2")
    metrics = _evaluate(small_model, tmp_path / "out", max_connections=1)
    first, second = metrics["attempts"]
    assert first["status"] == "error" and "vllm serve died (exit code 1): RuntimeError: Engine core" in first["error"]
    assert second["status"] == "success" and second["max_tokens"] == 3000 and "server_start_s" in second
    assert len(_lines(state.with_suffix(".calls"))) == 2
    assert metrics["n_samples"] == 3


def test_server_dying_every_time_ends_in_an_error(small_model, tmp_path, fake_vllm):
    fake_vllm("die:1")
    with pytest.raises(PtbError, match="failed 3 times .*vllm serve died"):
        _evaluate(small_model, tmp_path / "out")


def test_start_up_that_never_answers_times_out(tmp_path, fake_vllm):
    fake_vllm("hang")
    server = VllmServer(tmp_path, [], log_path=tmp_path / "serve.log", device="cpu", startup_timeout_s=3)
    starting = server.start(deadline_s=60)
    assert starting.ready.wait(600)
    assert isinstance(starting.error, ServerStartError)
    assert "did not answer within 3 s" in str(starting.error) and starting.answered_at is None
    assert not server.alive()


def test_watchdog_stops_a_generation_phase_past_its_deadline(tmp_path, fake_vllm):
    fake_vllm("ok")
    server = VllmServer(tmp_path, [], log_path=tmp_path / "serve.log", device="cpu")
    starting = server.start(deadline_s=0.5)  # the watchdog is armed once the server answers
    try:
        assert starting.ready.wait(600) and starting.error is None
        stopped = threading.Event()
        for _ in range(600):
            if not server.alive():
                stopped.set()
                break
            stopped.wait(0.1)
        assert stopped.is_set()
        assert "ran past its deadline" in server.failure()
    finally:
        server.close()


def test_server_does_not_outlive_the_evaluating_process(tmp_path, fake_vllm):
    fake_vllm("ok")
    pid_file = tmp_path / "server.pid"
    script = (
        "import os, sys; from pathlib import Path\n"
        "from posttrainbench.evaluation.vllm_server import VllmServer\n"
        f"s = VllmServer(Path({str(tmp_path)!r}), [], log_path=Path({str(tmp_path / 'serve.log')!r}), device='cpu')\n"
        f"assert s.start(600).ready.wait(600); Path({str(pid_file)!r}).write_text(str(s._proc.pid)); os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=600)
    pid = int(pid_file.read_text())
    for _ in range(600):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        pytest.fail("vllm serve outlived the process that started it")


def test_deadline_scales_with_the_workload():
    small = generation_deadline_s(10, 512, 2, "cuda")
    assert generation_deadline_s(1319, 4000, 1000, "cuda") > small
    assert generation_deadline_s(10, 512, 2, "cpu") > small
    assert generation_deadline_s(30, 16000, 6, "cuda") < 8 * 3600  # the original's fixed limit


def test_server_flags_per_device(tmp_path):
    template = tmp_path / "t.jinja"
    gpu = server_args(chat_template=template, seed=0, device="cuda", gpu_memory_utilization=0.3,
                      extra={"enable_auto_tool_choice": True, "tool_call_parser": "hermes"})
    assert gpu[gpu.index("--gpu-memory-utilization") + 1] == "0.3" and "--dtype" not in gpu
    assert "--enable-auto-tool-choice" in gpu and gpu[gpu.index("--tool-call-parser") + 1] == "hermes"
    cpu = server_args(chat_template=template, seed=0, device="cpu", gpu_memory_utilization=0.3, extra={})
    # on CPU the memory share would mean host RAM: a fixed KV cache instead, float32 and no compilation
    assert "--gpu-memory-utilization" not in cpu and "--kv-cache-memory-bytes" in cpu
    assert cpu[cpu.index("--dtype") + 1] == "float32" and "--enforce-eager" in cpu


def test_missing_vllm_executable_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PTB_VLLM", "/nonexistent/vllm")
    with pytest.raises(PtbError, match="PTB_VLLM=/nonexistent/vllm is not an executable"):
        resolve_backend("vllm", "cpu")


def test_the_reason_taken_from_the_server_log_is_cleaned(tmp_path):
    """The server's log can echo the agent's model files (a loader printing its config): the line a start error
    quotes carries no escape sequences, controls or bidi overrides, and is capped."""
    log = tmp_path / "serve.log"
    log.write_text("INFO loading\nValueError: unknown architecture \x1b[2J\x1b]0;owned\x07\u202eevil\x08" + "y" * 500)
    reason = VllmServer(tmp_path, [], log_path=log, device="cpu").log_reason()
    assert reason.startswith("ValueError: unknown architecture ") and "evil" in reason
    assert not any(c in reason for c in "\x1b\x07\x08\u202e") and len(reason) <= 300
