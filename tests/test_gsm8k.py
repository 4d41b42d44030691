"""GSM8K: real test/train sets, the 10-shot prompt, answer extraction on tricky outputs."""

import asyncio

import pytest
from inspect_ai.model import ModelOutput
from inspect_ai.scorer import Target
from inspect_ai.solver import TaskState

from posttrainbench.evaluation import gsm8k
from posttrainbench.evaluation.data import data_file
from posttrainbench.specs import get_benchmark


@pytest.fixture(scope="module")
def splits(shared_data):
    bench = get_benchmark("gsm8k")
    return gsm8k.load_samples(data_file(bench, "test")), gsm8k.load_samples(data_file(bench, "train"))


def test_loaders_read_the_real_splits(splits):
    test, train = splits
    assert (len(test), len(train)) == (1319, 7473)
    assert test[0].target == "18"
    assert "####" not in test[0].metadata["reasoning"]
    assert all(s.target.replace(",", "").lstrip("-").isdigit() for s in test)


def test_fewshot_examples_are_inspect_evals_choice(splits):
    """inspect_evals takes the first 10 rows of `datasets.Dataset.shuffle(seed=42)` over the train split."""
    import datasets

    _, train = splits
    order = datasets.Dataset.from_dict({"i": list(range(len(train)))}).shuffle(seed=42)["i"][:10]
    assert [s.id for s in gsm8k.fewshot_samples(train)] == [train[i].id for i in order]
    text = gsm8k.fewshot_text(train[0])
    assert text.startswith(train[0].input + "\n\nReasoning:\n") and text.endswith(f"ANSWER: {train[0].target}")


def test_task_prompt(splits, shared_data):
    from posttrainbench.evaluation.base import EvalContext

    bench = get_benchmark("gsm8k")
    ctx = EvalContext(bench, None, None, bench.generation, lambda name: data_file(bench, name))
    task = gsm8k.build_task(ctx)
    assert len(task.dataset) == 1319
    assert task.name == "gsm8k"


TRICKY = [
    ("ANSWER: 18", "18", True),
    ("so she makes 9 * 2 = $18 a day.\nANSWER: $18", "18", True),
    ("ANSWER: 1,234.", "1234", True),
    ("ANSWER: **42**", "42", True),
    ("The answer is 42.", "42", True),
    ("Therefore, the final answer is: $1,000.", "1000", True),
    ("\\boxed{7}", "7", True),
    ("work...\n#### 72", "72", True),
    ("ANSWER: -5", "-5", True),
    ("ANSWER: −5", "-5", True),
    ("ANSWER: 3.50", "3.5", True),
    ("ANSWER: 0.5", ".5", True),
    ("He pays 3 + 4 = 7 dollars in total", "7", True),  # no marker: last number
    ("ANSWER: 18\n\nQuestion: Tom has 3 apples... Reasoning: ... ANSWER: 3", "18", True),  # rambling on
    ("<think>maybe ANSWER: 5?</think>\nANSWER: 6", "6", True),
    ("ANSWER: 18\nANSWER: 19\nANSWER: 20", "20", False),  # listing answers does not help
    ("ANSWER: 180", "18", False),
    ("ANSWER: 18%", "18", True),
    ("I cannot solve this.", "18", False),
    ("ANSWER: 1.8", "18", False),
    ("ANSWER: 12,000", "12000", True),
    ("The total is 5 + 13 = 18 eggs", "18", True),
]


@pytest.mark.parametrize("completion, target, correct", TRICKY)
def test_extraction(completion, target, correct):
    assert gsm8k.answers_match(gsm8k.extract_answer(completion), target) is correct


def _score(completion: str, target: str) -> bool:
    state = TaskState(model="m", sample_id=1, epoch=1, input="q", messages=[],
                      output=ModelOutput.from_content("m", completion))
    score = asyncio.run(gsm8k.numeric_answer()(state, Target(target)))
    return score.value == "C"


def test_scorer_uses_the_extraction():
    assert _score("Reasoning...\n\nANSWER: 1,319", "1319")
    assert not _score("ANSWER: 13", "1319")


def test_agrees_with_inspect_evals_on_well_formed_answers(splits):
    """inspect's match(numeric=True) takes the last number; on outputs that end with the answer line we agree."""
    from inspect_ai.scorer._common import match_str

    test, _ = splits
    styles = [
        "{reasoning}\n\nANSWER: {target}",
        "{reasoning}\nThe answer is {target}.",
        "{reasoning}\n#### {target}",
        "{reasoning}\n\nANSWER: ${target}",
    ]
    agree = total = 0
    for sample in test[:300]:
        for style in styles:
            text = style.format(reasoning=sample.metadata["reasoning"], target=sample.target)
            ours = gsm8k.answers_match(gsm8k.extract_answer(text), sample.target)
            theirs = match_str(text, sample.target, location="end", numeric=True)[1]
            assert ours, text
            agree += ours == theirs
            total += 1
    assert agree / total > 0.99
