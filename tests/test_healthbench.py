"""HealthBench Easy: data, selection, rubric arithmetic (negative criteria, clipping), grading via a fake grader."""

import re

import numpy as np
import pytest
from fake_openai import FakeOpenAI
from graded_support import canned_model, eval_context, run
from inspect_ai.scorer import SampleScore, Score

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import healthbench as hb

pytestmark = pytest.mark.usefixtures("shared_data")


def examples():
    return hb.load_examples(eval_context("healthbench", None).data_file("test"))


def test_data_has_245_conversations_with_rubrics():
    rows = examples()
    assert len(rows) == 245 == len({row["prompt_id"] for row in rows})
    assert sum(len(row["rubrics"]) for row in rows) == 1873
    assert all(row["prompt"][-1]["role"] == "user" for row in rows)
    # "Easy": at most two negative criteria per conversation
    assert max(sum(r["points"] < 0 for r in row["rubrics"]) for row in rows) <= 2


def test_selection_is_the_originals_seed_42_shuffle():
    assert [row["prompt_id"] for row in hb.select(examples(), 2)] == [
        "877efd3d-801c-47fe-b31b-0516fafccfcb",
        "c17ec1d2-78a8-4a0b-beb0-a448fd7c7aea",
    ]
    assert len(hb.select(examples(), None)) == 245


def test_sample_keeps_the_conversation_and_rubric():
    row = examples()[0]
    sample = hb.to_sample(row)
    assert [m.role for m in sample.input] == [turn["role"] for turn in row["prompt"]]
    assert sample.input[-1].text == row["prompt"][-1]["content"]
    assert [r["points"] for r in sample.metadata["rubrics"]] == [r["points"] for r in row["rubrics"]]


def test_grader_prompt_shows_conversation_answer_and_rubric_item():
    prompt = hb.grader_prompt([("user", "My head hurts {a lot}.")], "Drink water.", "Asks about duration", -5)
    assert "# Conversation\nuser: My head hurts {a lot}.\n\nassistant: Drink water.\n\n# Rubric item\n" in prompt
    assert "[-5] Asks about duration" in prompt


@pytest.mark.parametrize(
    "reply, parsed",
    [
        ('```json\n{"explanation": "mentions it", "criteria_met": true}\n```', (True, "mentions it")),
        ('{"criteria_met": false, "explanation": "no"}', (False, "no")),
        ('Sure. {"explanation": "x", "criteria_met": true} Hope that helps.', (True, "x")),
        ('{"explanation": "x", "criteria_met": "true"}', None),
        ('{"explanation": "x"}', None),
        ("criteria met: yes", None),
    ],
)
def test_parse_grading(reply, parsed):
    assert hb.parse_grading(reply) == parsed


def test_example_score_counts_met_negative_criteria_against_positive_points():
    points = [5, 3, -4, 2]
    assert hb.example_score(points, [True, True, False, True]) == 1.0
    assert hb.example_score(points, [True, False, False, False]) == 0.5
    assert hb.example_score(points, [True, False, True, None]) == pytest.approx(1 / 10)
    assert hb.example_score(points, [False, False, True, False]) == pytest.approx(-0.4)  # not clipped here
    assert hb.example_score([-3], [True]) == 0.0


def scores(*values):
    return [SampleScore(score=Score(value=v), sample_id=i) for i, v in enumerate(values)]


def test_accuracy_is_the_clipped_mean():
    assert hb.clipped_mean_score()(scores(1.0, 0.5)) == 0.75
    assert hb.clipped_mean_score()(scores(-0.5, 0.2)) == 0.0  # a negative example drags the mean, then it is clipped
    assert hb.clipped_mean_score()(scores(-0.2, 0.8)) == pytest.approx(0.3)


def test_stderr_is_the_originals_bootstrap():
    values = [0.1, 0.9, -0.3, 0.5, 0.7, 0.0, 1.0]
    rng = np.random.default_rng(42)  # the original: 1000 resamples of the clipped mean, np.std, seed 42
    means = [np.clip(np.mean(rng.choice(values, size=len(values), replace=True)), 0, 1) for _ in range(1000)]
    assert hb.clipped_mean_stderr()(scores(*values)) == pytest.approx(float(np.std(means)), abs=1e-12)
    assert hb.clipped_mean_stderr()(scores(0.4)) == 0.0


def test_breakdown_by_theme_and_pooled_axis():
    first = {
        "example_tags": ["theme:hedging", "physician_agreed_category:simple"],
        "rubrics": [
            {"points": 6, "tags": ["axis:accuracy"]},
            {"points": 4, "tags": ["axis:completeness"]},
            {"points": -5, "tags": ["axis:accuracy"]},
        ],
    }
    second = {
        "example_tags": ["theme:hedging"],
        "rubrics": [{"points": 2, "tags": ["axis:accuracy"]}, {"points": 8, "tags": ["level:cluster"]}],
    }
    graded = [
        (first, Score(value=0.1, metadata={"criteria_met": [True, False, True]})),
        (second, Score(value=1.0, metadata={"criteria_met": [True, True]})),
    ]
    assert hb.breakdown(graded) == {
        "by_theme": {"hedging": pytest.approx(0.55)},
        "by_axis": {"accuracy": pytest.approx((6 - 5 + 2) / 8), "completeness": 0.0, "unknown": 1.0},
    }


def rubric_points(request) -> int:
    return int(re.search(r"# Rubric item\n\[(-?\d+)\]", request.prompt).group(1))


def test_grading_against_the_fake_grader(tmp_path):
    """The grader says a criterion is met iff its points are odd; one reply is unreadable the first time."""
    garbled = []

    def script(request):
        if not garbled:
            garbled.append(request)
            return "I think so."
        met = rubric_points(request) % 2 != 0
        return f'```json\n{{"explanation": "scripted", "criteria_met": {str(met).lower()}}}\n```'

    with FakeOpenAI(script) as server:
        ctx = eval_context("healthbench", server.url, limit=2)
        log = run(hb.build_task(ctx), canned_model("<think>hmm</think>Please see a doctor."), tmp_path)
    assert log.status == "success", log.error

    chosen = hb.select(examples(), 2)
    expected = [
        hb.example_score([r["points"] for r in row["rubrics"]], [r["points"] % 2 != 0 for r in row["rubrics"]])
        for row in chosen
    ]
    assert log.results.scores[0].metrics["accuracy"].value == pytest.approx(np.clip(np.mean(expected), 0, 1))
    n_criteria = sum(len(row["rubrics"]) for row in chosen)
    posts = server.posts()
    assert len(posts) == n_criteria + 1  # the unreadable reply was asked again
    assert all("assistant: Please see a doctor." in p.prompt and "hmm" not in p.prompt for p in posts)
    for row in chosen:  # each criterion is graded on its own conversation
        about_row = [p for p in posts if row["prompt"][0]["content"] in p.prompt]
        assert len(about_row) >= len(row["rubrics"])
    summary = hb.summarize(log)
    assert summary["n_examples"] == 2
    assert summary["total_grader_calls"] == n_criteria
    assert summary["unparsed_gradings"] == 0
    assert summary["grader_calls"] == n_criteria + 1
    assert summary["grader_cost_usd"] == pytest.approx((n_criteria + 1) * (100 * 0.25 + 20 * 2.0) / 1e6)
    assert set(summary["by_theme"]) == {row["example_tags"][0].split(":")[1] for row in chosen}
    assert set(summary["by_axis"]) <= {"accuracy", "completeness", "context_awareness", "communication_quality",
                                       "instruction_following"}  # fmt: skip


def test_no_grader_is_an_error_before_generation():
    with pytest.raises(PtbError, match="no grader endpoint is configured"):
        hb.build_task(eval_context("healthbench", None))


@pytest.mark.slow
def test_end_to_end_on_a_small_model(small_model, tmp_path):
    import torch

    from posttrainbench.evaluation.base import GraderConfig
    from posttrainbench.evaluation.runner import evaluate

    def script(request):
        met = rubric_points(request) % 2 != 0
        return f'{{"explanation": "scripted", "criteria_met": {str(met).lower()}}}'

    torch.set_num_threads(1)
    with FakeOpenAI(script) as server:
        metrics = evaluate(
            small_model, "healthbench", base_model="smollm2-135m", out_dir=tmp_path, limit=2, backend="hf",
            device="cpu", max_tokens=24,
            grader=GraderConfig(model="gpt-5-mini", base_url=server.url, api_key="test-key"),
        )  # fmt: skip
    chosen = hb.select(examples(), 2)
    expected = [
        hb.example_score([r["points"] for r in row["rubrics"]], [r["points"] % 2 != 0 for r in row["rubrics"]])
        for row in chosen
    ]
    assert metrics["accuracy"] == pytest.approx(np.clip(np.mean(expected), 0, 1))
    assert metrics["n_samples"] == 2 == metrics["n_examples"]
    assert metrics["total_grader_calls"] == sum(len(row["rubrics"]) for row in chosen) == metrics["grader_calls"]
    assert set(metrics["by_theme"]) and set(metrics["by_axis"])
    assert all(p.body["model"] == "gpt-5-mini" for p in server.posts())
