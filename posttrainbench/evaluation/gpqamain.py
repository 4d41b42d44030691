"""GPQA main: 448 graduate-level multiple-choice questions, chain of thought, letter answer.

The authors ask that GPQA text never be reposted in plain text: it stays in the data file and the eval logs.
"""

import csv
import random
from pathlib import Path

from inspect_ai import Task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.scorer import choice
from inspect_ai.solver import Choices, multiple_choice
from inspect_ai.solver._multiple_choice import SINGLE_ANSWER_TEMPLATE_COT, prompt

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import fewshot
from posttrainbench.evaluation.base import EvalContext

LETTERS = "ABCD"
OPTION_COLUMNS = ["Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"]


def choice_order(record_id: str) -> list[int]:
    """The presentation order of the 4 options (0 = the correct one), fixed per item.

    The raw data always lists the correct answer first; the original shuffled with an unseeded RNG, so two
    evaluations of one checkpoint saw different exams. Seeding with the record id keeps every item's order
    stable across runs, limits and dataset order, while differing between items.
    """
    order = list(range(len(OPTION_COLUMNS)))
    random.Random(f"gpqamain/{record_id}").shuffle(order)
    return order


def load_samples(path: Path) -> list[Sample]:
    """Samples from gpqa_main.csv (HF Idavidrein/gpqa layout; a leading unnamed index column is ignored)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    samples = []
    for number, row in enumerate(rows, start=1):
        try:
            record_id = row["Record ID"]
            options = [str(row[column]) for column in OPTION_COLUMNS]
            question = row["Question"]
        except KeyError as exc:
            raise PtbError(f"{path}: row {number} lacks column {exc}") from None
        order = choice_order(record_id)
        samples.append(
            Sample(
                id=record_id,
                input=question,
                choices=[options[i] for i in order],
                target=LETTERS[order.index(0)],
                metadata={"domain": row.get("High-level domain"), "subdomain": row.get("Subdomain")},
            )
        )
    return samples


def build_task(ctx: EvalContext) -> Task:
    samples = load_samples(ctx.data_file("test"))[: ctx.limit]
    return Task(
        name="gpqamain",
        dataset=MemoryDataset(samples, name="gpqamain"),
        solver=multiple_choice(cot=True),
        scorer=choice(),
    )


def demo_messages(ctx: EvalContext) -> list[fewshot.Example]:
    """Worked examples rendered with the very template multiple_choice(cot=True) gives the test question."""
    pairs = []
    for number, demo in enumerate(fewshot.demos_for(ctx)):
        options = [demo["correct"], *demo["incorrect"]]
        order = choice_order(f"demo-{number}")
        question = prompt(demo["question"].strip(), Choices([options[i] for i in order]), SINGLE_ANSWER_TEMPLATE_COT)
        pairs.append((question, f"{demo['reasoning'].strip()}\n\nANSWER: {LETTERS[order.index(0)]}"))
    return fewshot.turns(pairs)
