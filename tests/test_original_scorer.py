"""accuracy_original: the original's scorers through the pinned environment, the style corpus, metrics fields,
and the sandbox canary."""

import json
import os
from types import SimpleNamespace

import pytest
from inspect_ai.log import EvalSample
from inspect_ai.model import ModelOutput
from inspect_ai.scorer import Score

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import humaneval, original
from posttrainbench.evaluation.original import corpus

# The original's verdict per style, as inspect_evals 0.3.103 on inspect-ai 0.3.150 gives it (1 = correct). The
# flaws the issue measured are here on purpose: `70^\circ`, \boxed for GSM8K, a rambling GSM8K continuation,
# lowercase/bold/repeated GPQA answers, ```py fences, a fenced body, and sys.exit(0) passing HumanEval.
ORIGINAL = {
    "aime2025": {"prompted": 1, "prompted_wrong": 0, "boxed_only": 1, "answer_boxed": 1, "degrees": 0,
                 "zero_padded": 1, "empty": 0},
    "gsm8k": {"prompted": 1, "prompted_wrong": 0, "thousands": 1, "dollars": 1, "boxed": 0, "ramble_after": 0,
              "empty": 0},
    "gpqamain": {"prompted": 1, "prompted_wrong": 0, "lowercase": 0, "bold_letter": 0, "two_answer_lines": 0,
                 "period": 1, "empty": 0},
    "humaneval": {"fenced_function": 1, "fenced_body": 0, "unfenced_body": 1, "py_fence": 0, "wrong": 0,
                  "exit_zero": 1, "empty": 0},
    "bfcl": {"hermes": 1, "hermes_wrong_argument": 0, "hermes_unclosed": 1, "backend_parsed": 1, "two_calls": 0,
             "python_call": 0, "empty": 0},
}
# Outputs in exactly the prompted format: ours and the original agree.
PROMPTED = {"aime2025": "prompted", "gsm8k": "prompted", "gpqamain": "prompted", "humaneval": "fenced_function",
            "bfcl": "hermes"}


@pytest.fixture(scope="module")
def original_env():
    """The pinned environment, located (or in CI created) the way scripts/install-test-deps.sh makes it."""
    if not original.is_installed():
        if not os.environ.get("CI"):
            pytest.skip("original-scorer environment missing: run `ptb original-scorer`")
        original.install()
    return original.python_path()


@pytest.mark.parametrize("bench", list(ORIGINAL))
def test_original_verdicts_per_style(bench, original_env, shared_data, bwrap):
    cases = list(corpus.cases(bench, limit=2, styles=list(ORIGINAL[bench])))
    verdicts = original.score([case.record() for case in cases])
    assert [v.id for v in verdicts] == [case.record()["id"] for case in cases]
    for case, verdict in zip(cases, verdicts, strict=True):
        assert verdict.correct == bool(ORIGINAL[bench][case.style]), (case.style, case.sample.id)
        if case.style == PROMPTED[bench]:
            assert corpus.our_verdict(case) == verdict.correct


def test_versions_are_the_pinned_ones(original_env):
    assert original.versions() == {"inspect_ai": "0.3.150", "inspect_evals": "0.3.103"}
    pins = original.REQUIREMENTS.read_text().splitlines()
    assert all("==" in line for line in pins if line.strip())


def _log(*samples):
    return SimpleNamespace(samples=list(samples))


def _sample(item, completion, target, value):
    return EvalSample(id=item, epoch=1, input="", target=target,
                      output=ModelOutput.from_content("m", completion), scores={"s": Score(value=value)})


def test_metrics_fields_and_items(original_env, tmp_path):
    log = _log(_sample(1, "ANSWER: 18", "18", "C"), _sample(2, "so \\boxed{7}", "7", "C"))
    fields = original.summarize("gsm8k", log, tmp_path)
    assert fields["accuracy_original"] == 0.5
    assert fields["scorer_versions"]["original"] == {"inspect_ai": "0.3.150", "inspect_evals": "0.3.103"}
    assert fields["scorer_versions"]["ours"]["inspect_ai"]
    items = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert items == [{"id": 1, "accuracy": 1.0, "accuracy_original": 1.0},
                     {"id": 2, "accuracy": 1.0, "accuracy_original": 0.0}]


def test_metrics_without_environment_say_why(monkeypatch, tmp_path):
    monkeypatch.setattr(original, "is_installed", lambda: False)
    fields = original.summarize("gsm8k", _log(_sample(1, "ANSWER: 18", "18", "C")), tmp_path)
    assert fields["accuracy_original"] is None
    assert "not installed" in fields["accuracy_original_note"]
    assert json.loads((tmp_path / "items.jsonl").read_text())["accuracy_original"] is None


def test_unexpected_exec_request_is_refused():
    from posttrainbench.evaluation.original.sandboxed import run_program

    with pytest.raises(PtbError, match="unexpected command"):
        run_program(["sh", "-c", "true"], 5)


def test_canary_fails_loudly_when_the_sandbox_hides_the_interpreter(bwrap, monkeypatch):
    # Without the interpreter's own mounts, the sandbox cannot run it: the canary must say so, not score 0.
    monkeypatch.setattr(humaneval, "_canary_passed", humaneval.threading.Event())
    monkeypatch.setattr(humaneval, "python_mounts", lambda: [])
    with pytest.raises(PtbError, match="cannot run"):
        humaneval.canary()
    with pytest.raises(PtbError, match="cannot run"):
        humaneval.verify()


def test_canary_passes_with_a_visible_interpreter(monkeypatch):
    monkeypatch.setattr(humaneval, "_canary_passed", humaneval.threading.Event())
    humaneval.canary()
    assert humaneval._canary_passed.is_set()


def test_a_failing_original_scorer_leaves_accuracy_original_null(original_env, monkeypatch, tmp_path):
    def broken(records):
        raise PtbError("the HumanEval sandbox cannot run python")

    monkeypatch.setattr(original, "score", broken)
    fields = original.summarize("humaneval", _log(_sample("HumanEval/0", "", "", "I")), tmp_path)
    assert fields["accuracy_original"] is None and "cannot run" in fields["accuracy_original_note"]


def test_graded_benchmarks_take_the_shared_verdicts_aggregated_the_original_way(tmp_path):
    fields = original.summarize("healthbench", _log(), tmp_path, accuracy=0.42)
    assert fields["accuracy_original"] == 0.42 and "aggregation" in fields["accuracy_original_note"]


def test_cli_installs_and_names_the_versions(original_env):
    from typer.testing import CliRunner

    from posttrainbench.cli.main import app

    result = CliRunner().invoke(app, ["original-scorer"])
    assert result.exit_code == 0 and "inspect_evals 0.3.103" in result.output
