"""The text of every benchmark's test items, split into the parts an agent could train on (question, answer,
solution, ...), and the text of the data each benchmark allows for training.

Files are read raw from the verified data files rather than through the benchmark modules' loaders: those import
inspect-ai (seconds per process) and keep only what scoring needs, while contamination also needs explanations,
ideal completions and rubrics.
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from posttrainbench.evaluation.data import data_file, read_jsonl
from posttrainbench.specs import BenchmarkSpec


@dataclass(frozen=True)
class Item:
    benchmark: str
    id: str
    segments: tuple[tuple[str, str], ...]  # (part name, text)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _gsm8k(spec: BenchmarkSpec) -> list[Item]:
    rows = read_jsonl(data_file(spec, "test"))
    return [Item(spec.id, str(i + 1), (("question", r["question"]), ("answer", r["answer"])))
            for i, r in enumerate(rows)]


def _aime(spec: BenchmarkSpec) -> list[Item]:
    rows = _lines(data_file(spec, "test"))
    # The integer answer alone is too short to be evidence; the problem is.
    return [Item(spec.id, str(i + 1), (("problem", r["problem"]),)) for i, r in enumerate(rows)]


def _gpqa(spec: BenchmarkSpec) -> list[Item]:
    with data_file(spec, "test").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    parts = (("question", "Question"), ("answer", "Correct Answer"), ("explanation", "Explanation"))
    return [Item(spec.id, r["Record ID"], tuple((name, r[column]) for name, column in parts)) for r in rows]


def _humaneval(spec: BenchmarkSpec) -> list[Item]:
    rows = read_jsonl(data_file(spec, "test"))
    parts = (("prompt", "prompt"), ("solution", "canonical_solution"), ("tests", "test"))
    return [Item(spec.id, r["task_id"], tuple((name, r[key]) for name, key in parts)) for r in rows]


def _bfcl(spec: BenchmarkSpec) -> list[Item]:
    items = []
    for r in _lines(data_file(spec, "test")):
        question = "\n".join(m["content"] for turn in r["question"] for m in turn)
        items.append(Item(spec.id, r["id"], (("question", question), ("call", "\n".join(r["ground_truth"])))))
    return items


def _arena(spec: BenchmarkSpec) -> list[Item]:
    answers = {}
    for row in _lines(data_file(spec, "baseline")):
        content = row["messages"][-1]["content"]
        answers[row["uid"]] = content.get("answer", "") if isinstance(content, dict) else str(content)
    return [
        Item(spec.id, q["uid"], (("prompt", q["prompt"]), ("baseline_answer", answers.get(q["uid"], ""))))
        for q in _lines(data_file(spec, "question"))
    ]


def _healthbench(spec: BenchmarkSpec) -> list[Item]:
    items = []
    for r in _lines(data_file(spec, "test")):
        conversation = "\n".join(turn["content"] for turn in r["prompt"])
        ideal = (r.get("ideal_completions_data") or {}).get("ideal_completion") or ""
        rubrics = "\n".join(rubric["criterion"] for rubric in r["rubrics"])
        items.append(Item(spec.id, r["prompt_id"], (("conversation", conversation), ("ideal_answer", ideal),
                                                     ("rubrics", rubrics))))
    return items


LOADERS = {
    "gsm8k": _gsm8k,
    "aime2025": _aime,
    "gpqamain": _gpqa,
    "humaneval": _humaneval,
    "bfcl": _bfcl,
    "arenahardwriting": _arena,
    "healthbench": _healthbench,
}


def test_items(spec: BenchmarkSpec) -> list[Item]:
    return LOADERS[spec.id](spec)


def canaries(spec: BenchmarkSpec) -> set[str]:
    """Canary strings the benchmark's authors embedded so that copies of the test set can be recognised."""
    if spec.id == "healthbench":
        return {r["canary"] for r in _lines(data_file(spec, "test")) if r.get("canary")}
    if spec.id == "gpqamain":
        with data_file(spec, "test").open(newline="", encoding="utf-8") as handle:
            return {r["Canary String"] for r in csv.DictReader(handle) if r.get("Canary String")}
    return set()


def allowed_texts(spec: BenchmarkSpec) -> list[str]:
    """Texts of the data files this benchmark allows for training (GSM8K train for gsm8k)."""
    texts = []
    for name in spec.allowed_training_data:
        path = data_file(spec, name)
        rows = read_jsonl(path) if path.suffix in (".jsonl", ".gz") else []
        texts += [value for row in rows for value in row.values() if isinstance(value, str)]
    return texts
