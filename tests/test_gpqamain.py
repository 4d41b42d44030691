"""GPQA tests read the questions from ../shared/data at run time only: no GPQA text may enter the repository."""

import csv
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.model import ModelOutput, ModelUsage

from posttrainbench.evaluation import gpqamain
from posttrainbench.evaluation.base import EvalContext
from posttrainbench.specs import get_benchmark, get_model


def context(shared_data, limit=None):
    spec = get_benchmark("gpqamain")
    files = {f.name: shared_data / f.mirror for f in spec.data}
    return EvalContext(
        benchmark=spec, base_model=get_model("smollm2-135m"), limit=limit, generation=spec.generation,
        data_file=files.__getitem__,
    )


@pytest.fixture(scope="module")
def csv_path(shared_data):
    return shared_data / get_benchmark("gpqamain").data[0].mirror


@pytest.fixture(scope="module")
def samples(csv_path):
    return gpqamain.load_samples(csv_path)


def reply(text):
    # With usage given, mockllm skips counting tokens with tiktoken (whose encoding is a download).
    output = ModelOutput.from_content("mockllm/model", text)
    output.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
    return output


def test_loader_reads_the_448_questions(samples):
    assert len(samples) == get_benchmark("gpqamain").count == 448
    assert len({s.id for s in samples}) == 448
    assert all(len(s.choices) == 4 for s in samples)


def test_target_letter_points_at_the_correct_answer(samples, csv_path):
    with csv_path.open(newline="", encoding="utf-8") as handle:
        correct = {row["Record ID"]: row["Correct Answer"] for row in csv.DictReader(handle)}
    for sample in samples:
        assert sample.choices[gpqamain.LETTERS.index(sample.target)] == correct[sample.id]


def test_correct_answers_are_spread_over_the_letters(samples):
    counts = Counter(s.target for s in samples)
    assert set(counts) == set("ABCD")
    assert all(80 <= n <= 145 for n in counts.values()), counts  # 112 each in expectation


def test_the_exam_is_pinned(samples):
    """Changing the shuffle changes the exam and breaks comparability with earlier scores: it must be deliberate."""
    letters = "".join(s.target for s in samples)
    assert letters.startswith("DCDCBADCACACDCBABCAC")
    assert hashlib.sha256(letters.encode()).hexdigest() == "092a957fdc63955ef6659ee8aa7ce3d43f99758ec325c50f658232e5a5c522cb"


def test_shuffle_differs_between_items(samples):
    orders = Counter(tuple(gpqamain.choice_order(s.id)) for s in samples)
    assert len(orders) >= 20  # of the 24 permutations


def test_shuffle_is_the_same_in_every_process(samples):
    ids = [s.id for s in samples[:30]]
    here = [gpqamain.choice_order(i) for i in ids]
    code = (
        "import json, sys; from posttrainbench.evaluation.gpqamain import choice_order; "
        "print(json.dumps([choice_order(i) for i in json.loads(sys.argv[1])]))"
    )
    # string seeds do not depend on hash randomization: a fresh interpreter with another hash seed agrees
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(ids)], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == here


def test_limit_and_reloading_keep_each_items_order(shared_data, samples):
    again = gpqamain.build_task(context(shared_data, limit=5)).dataset
    assert [(s.id, s.choices, s.target) for s in again] == [(s.id, s.choices, s.target) for s in samples[:5]]


# (completion, correct?) with {T} = the right letter and {W} = a wrong one; graded by inspect's choice() as the
# original did.
TRICKY = [
    ("Step by step...\nANSWER: {T}", True),
    ("ANSWER: {t}", True),
    ("**ANSWER: {T}**", True),
    ("ANSWER: ({T})", True),
    ("ANSWER: ${T}$", True),
    ("ANSWER: {T}.", True),
    ("<think>ANSWER: {W}</think>\nANSWER: {T}", True),
    ("ANSWER: {W}\nOn reflection:\nANSWER: {T}", True),
    ("ANSWER: {W}", False),
    ("ANSWER: {T}\nANSWER: {W}", False),
    ("The answer is {T}.", False),
    ("ANSWER: {T}, {W}", False),
    ("ANSWER: E", False),
    ("", False),
]


def test_tricky_outputs_through_the_task(shared_data, tmp_path):
    task = gpqamain.build_task(context(shared_data, limit=len(TRICKY)))
    rows = {s.input: (template, s.target) for s, (template, _) in zip(task.dataset, TRICKY)}
    expected = {s.id: ok for s, (_, ok) in zip(task.dataset, TRICKY)}

    def model(messages, tools, tool_choice, config):
        prompt = messages[-1].text
        template, target = next(row for question, row in rows.items() if question in prompt)
        assert "ANSWER: $LETTER" in prompt and "Think step by step" in prompt
        wrong = "ABCD"[("ABCD".index(target) + 1) % 4]
        return reply(template.format(T=target, t=target.lower(), W=wrong))

    [log] = inspect_eval(
        task, model="mockllm/model", model_args={"custom_outputs": model}, log_dir=str(tmp_path), display="none"
    )
    assert log.status == "success"
    got = {s.id: s.scores["choice"].value == "C" for s in log.samples}
    assert got == expected
    assert log.results.scores[0].metrics["accuracy"].value == pytest.approx(8 / len(TRICKY))


@pytest.mark.slow
def test_end_to_end_on_a_small_model(small_model, tmp_path):
    import torch
    from inspect_ai.log import read_eval_log

    from posttrainbench.evaluation.runner import evaluate

    torch.set_num_threads(1)
    metrics = evaluate(
        small_model, "gpqamain", base_model="smollm2-135m", out_dir=tmp_path, limit=2, backend="hf", device="cpu",
        max_tokens=32,
    )
    assert metrics["n_samples"] == 2 and metrics["accuracy"] in (0.0, 0.5, 1.0)
    [log_file] = (tmp_path / "logs").glob("*.json")
    log = read_eval_log(log_file)
    assert all(s.output.completion.strip() and "choice" in s.scores for s in log.samples)
