"""Arena-Hard writing: data, the seed-42 selection, verdict arithmetic, answer clean-up, judging via a fake grader."""

import json
import random
import re
import time

import pytest
from fake_openai import Fault, FakeOpenAI
from graded_support import canned_model, eval_context, run
from inspect_ai.scorer import SampleScore, Score

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import arenahardwriting as arena
from posttrainbench.evaluation import grader as grader_module
from posttrainbench.evaluation.graded import MAX_REPEATS, _cap_substrings, clean_answer, limit_repetitions

pytestmark = pytest.mark.usefixtures("shared_data")


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(grader_module, "BASE_DELAY_S", 0.01)
    monkeypatch.setattr(grader_module, "MAX_ATTEMPTS", 3)


def questions_and_baselines():
    ctx = eval_context("arenahardwriting", None)
    return arena.load_questions(ctx.data_file("question")), arena.load_baselines(ctx.data_file("baseline"))


def test_data_has_250_writing_prompts_each_with_a_baseline_answer():
    questions, baselines = questions_and_baselines()
    assert len(questions) == 250 == len({q["uid"] for q in questions})
    assert {q["category"] for q in questions} == {"creative_writing"}
    assert len(baselines) == 250
    assert {q["uid"] for q in questions} == set(baselines)
    assert all(answer.strip() for answer in baselines.values())


def test_selection_is_the_originals_seed_42_shuffle():
    questions, _ = questions_and_baselines()
    first_three = ["934879a5b80a421b", "86e476fd58be4568", "042351d2911d453b"]
    assert [q["uid"] for q in arena.select(questions, 3)] == first_three
    # The original wrote its baseline answers in the order of this same shuffle.
    baseline_file = eval_context("arenahardwriting", None).data_file("baseline")
    baseline_order = [json.loads(line)["uid"] for line in baseline_file.read_text(encoding="utf-8").splitlines()]
    assert [q["uid"] for q in arena.select(questions, None)] == baseline_order


@pytest.mark.parametrize(
    "judgement, verdict",
    [
        ("A is vivid, B is flat.\nMy final verdict: [[A>>B]]", "A>>B"),
        ("Verdict [[b>a]]", "B>A"),
        ("tie [[A=B]]", "A=B"),
        ("[[B=A]]", "A=B"),
        ("[[B<<A]]", "A>>B"),
        ("[[A<B]]", "B>A"),
        ("Considered [[A>B]] at first, but on reflection [[B>>A]]", "B>>A"),
        ("single brackets only: [A>B]", "A>B"),
        ("[[A>B]] beats a single [B>A] later", "A>B"),
        ("Both are good.", None),
        ("[[C>A]] [[AB]]", None),
    ],
)
def test_parse_verdict(judgement, verdict):
    assert arena.parse_verdict(judgement) == verdict


def test_verdict_credit_counts_strong_verdicts_three_times_and_ties_half():
    assert arena.game_credit("B>>A", model_is="B") == (3.0, 3)
    assert arena.game_credit("B>>A", model_is="A") == (0.0, 3)
    assert arena.game_credit("A>B", model_is="A") == (1.0, 1)
    assert arena.game_credit("A=B", model_is="B") == (0.5, 1)
    # Both orders: baseline first (model is B), then model first (model is A).
    assert arena.item_credit("B>>A", "A>>B") == (6.0, 6)
    assert arena.item_credit("B>>A", "A=B") == (3.5, 4)
    assert arena.item_credit("A>B", "B>>A") == (0.0, 4)
    assert arena.item_credit(None, "A>B") == (0.0, 0)


def sample_scores(*items):
    return [SampleScore(score=Score(value={"credit": c, "weight": w}), sample_id=i) for i, (c, w) in enumerate(items)]


def test_win_rate_pools_weighted_verdicts_over_items():
    scores = sample_scores((6.0, 6), (0.0, 2), (0.0, 0))  # strong wins both ways; plain losses; unjudged
    assert arena.win_rate()(scores) == pytest.approx(6 / 8)
    stderr = arena.win_rate_stderr()(scores)
    assert 0.2 < stderr < 0.6
    assert arena.win_rate_stderr()(scores) == stderr  # seeded bootstrap
    assert arena.win_rate()(sample_scores((0.0, 0))) == 0.0


def test_clean_answer_strips_a_closed_think_block_only():
    assert clean_answer("<think>plan the poem</think>\n\nRoses are red.") == "Roses are red."
    assert clean_answer("  <think>still thinking when cut off") == "<think>still thinking when cut off"
    assert clean_answer("Intro <think>x</think> outro") == "Intro <think>x</think> outro"


def test_limit_repetitions_caps_lines_blocks_and_substrings():
    assert limit_repetitions("start\n" + "the same line\n" * 12 + "end") == "start\n" + "the same line\n" * 5 + "end"
    block = "Verse one\nVerse two\n"
    assert limit_repetitions(block * 9 + "Verse") == (block * MAX_REPEATS).rstrip()  # a cut-off copy goes too
    assert limit_repetitions("ha ha " + "la-" * 40 + "!") == "ha ha " + "la-" * 5 + "!"
    assert limit_repetitions("Be " * 6) == "Be " * 5
    prose = "A quiet harbour. Boats knock together, ropes creak.\nThe gulls argue over nothing.\n\n" * 2
    assert limit_repetitions(prose) == prose
    assert limit_repetitions("=====") == "====="  # 3-character units need six copies to count


def test_substring_capping_matches_the_plain_regex():
    oracle = re.compile(r"(.{3,500}?)\1{5,}", re.DOTALL)
    rng = random.Random(7)
    for _ in range(300):
        alphabet = rng.choice(["ab", "abc", "a\nb", "xy z\n"])
        text = "".join(
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) * rng.randint(1, 9)
            for _ in range(rng.randint(1, 6))
        )
        expected = oracle.sub(lambda m: m.group(1) * MAX_REPEATS, text)
        assert _cap_substrings(text) == expected, text


def test_judging_both_orders_against_the_fake_grader(tmp_path):
    with FakeOpenAI(lambda r: "[[A>>B]]" if "<response_a>\nMODEL ANSWER" in r.prompt else "[[A=B]]") as server:
        ctx = eval_context("arenahardwriting", server.url, limit=2)
        log = run(arena.build_task(ctx), canned_model("<think>secret plan</think>MODEL ANSWER"), tmp_path)
    assert log.status == "success", log.error
    metrics = log.results.scores[0].metrics
    assert metrics["accuracy"].value == pytest.approx(3.5 / 4)  # per item: tie (0.5 of 1) + strong win (3 of 3)
    assert metrics["stderr"].value == 0.0
    posts = server.posts()
    assert len(posts) == 4
    _, baselines = questions_and_baselines()
    for uid in ("934879a5b80a421b", "86e476fd58be4568"):
        games = [p.prompt for p in posts if baselines[uid][:200] in p.prompt]
        assert len(games) == 2
        assert sum("<response_a>\nMODEL ANSWER" in g for g in games) == 1
        assert sum("<response_b>\nMODEL ANSWER" in g for g in games) == 1
    assert not any("secret plan" in p.prompt for p in posts)
    assert all(p.body["max_completion_tokens"] == 49152 for p in posts)
    assert arena.summarize(log) == {
        "n_examples": 2,
        "unparsed_verdicts": 0,
        "grader_calls": 4,
        "grader_prompt_tokens": 400,
        "grader_completion_tokens": 80,
        "grader_cost_usd": pytest.approx(4 * (100 * 0.25 + 20 * 2.0) / 1e6),
    }


def test_item_without_a_readable_verdict_is_left_out(tmp_path):
    first_uid_answer = questions_and_baselines()[1]["934879a5b80a421b"][:200]

    def script(request):
        return "I cannot decide." if first_uid_answer in request.prompt else "[[A>B]]"

    with FakeOpenAI(script) as server:
        log = run(arena.build_task(eval_context("arenahardwriting", server.url)), canned_model("MODEL"), tmp_path)
    assert log.results.scores[0].metrics["accuracy"].value == pytest.approx(0.5)  # one win, one loss
    assert arena.summarize(log)["n_examples"] == 1
    assert arena.summarize(log)["unparsed_verdicts"] == 2


def test_no_grader_is_an_error_before_generation():
    with pytest.raises(PtbError, match="no grader endpoint is configured"):
        arena.build_task(eval_context("arenahardwriting", None))


def test_dead_grader_is_an_error_before_generation(fast_retries):
    with FakeOpenAI() as server:
        url = server.url
    with pytest.raises(PtbError, match="is unreachable"):
        arena.build_task(eval_context("arenahardwriting", url))


def test_grader_failing_mid_run_ends_the_evaluation_with_a_clear_error(fast_retries, tmp_path):
    with FakeOpenAI(lambda request: Fault(503, "grader overloaded")) as server:
        start = time.monotonic()
        log = run(arena.build_task(eval_context("arenahardwriting", server.url)), canned_model("x"), tmp_path)
    assert time.monotonic() - start < 30
    assert log.status == "error"
    assert "failed after 3 attempts: HTTP 503: grader overloaded" in log.error.message


@pytest.mark.slow
def test_end_to_end_on_a_small_model(small_model, tmp_path):
    import torch

    from posttrainbench.evaluation.base import GraderConfig
    from posttrainbench.evaluation.runner import evaluate

    torch.set_num_threads(1)
    with FakeOpenAI(lambda request: "Both are weak; A is a little better. [[A>B]]") as server:
        metrics = evaluate(
            small_model, "arenahardwriting", base_model="smollm2-135m", out_dir=tmp_path, limit=2, backend="hf",
            device="cpu", max_tokens=24,
            grader=GraderConfig(model="gpt-5-mini", base_url=server.url, api_key="test-key"),
        )  # fmt: skip
    # Whoever answers first wins by a little: the model wins one of its two games on each item.
    assert metrics["accuracy"] == 0.5 and metrics["n_samples"] == 2 and metrics["n_examples"] == 2
    assert metrics["grader_calls"] == 4 == len(server.posts())
    assert metrics["grader_cost_usd"] == pytest.approx(4 * (100 * 0.25 + 20 * 2.0) / 1e6)
    [log_file] = (tmp_path / "logs").glob("*.json")
    from inspect_ai.log import read_eval_log

    log = read_eval_log(log_file)
    for sample in log.samples:
        answer = sample.scores["pairwise_judge"].answer
        assert answer.strip() and sum(f"<response_a>\n{answer}\n</response_a>" in p.prompt for p in server.posts()) == 1
