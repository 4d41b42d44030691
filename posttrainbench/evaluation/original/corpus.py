"""Model outputs of many styles per benchmark, built at run time from the test data (nothing copied into the
repo), scored by our scorer and by the original's (through the pinned environment).

Each style is a function of one test sample returning the output a model might give: correct and wrong answers in
the common formats, empty outputs, rambling base-model continuations, fenced and unfenced code, tool calls in
several forms.
"""

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from inspect_ai.dataset import Sample
from inspect_ai.model import ChatCompletionChoice, ChatMessageAssistant, ChatMessageUser, ModelName, ModelOutput
from inspect_ai.scorer import Target
from inspect_ai.solver import TaskState
from inspect_ai.tool import ToolCall

from posttrainbench.evaluation import aime2025, bfcl, data, gpqamain, gsm8k, humaneval
from posttrainbench.specs import get_benchmark


@dataclass
class Output:
    completion: str
    tool_calls: list[dict] = field(default_factory=list)  # calls a backend's tool parser already extracted


Style = Callable[[Sample], Output]
RAMBLE = "\n\nQuestion: A farmer has 3 fields with 12 rows each. How many rows?\nReasoning: 3 * 12 = 36.\nANSWER: 36"


def _wrong_int(target: str) -> str:
    return str(int(target) + 1)


AIME: dict[str, Style] = {
    "prompted": lambda s: Output(f"We compute step by step.\n\nANSWER: {s.target}"),
    "prompted_wrong": lambda s: Output(f"We compute step by step.\n\nANSWER: {_wrong_int(s.target)}"),
    "boxed_only": lambda s: Output(f"Thus the answer is $\\boxed{{{s.target}}}$."),
    "answer_boxed": lambda s: Output(f"ANSWER: \\boxed{{{s.target}}}"),
    "bold_marker": lambda s: Output(f"Work.\n\n**ANSWER: {s.target}**"),
    "degrees": lambda s: Output(f"The angle is found.\n\nANSWER: {s.target}^\\circ"),
    "zero_padded": lambda s: Output(f"ANSWER: {int(s.target):03d}"),
    "ramble_after": lambda s: Output(f"ANSWER: {s.target}" + RAMBLE),
    "last_number_only": lambda s: Output(f"After simplifying we get {s.target}"),
    "think_then_answer": lambda s: Output(f"<think>Maybe 12, or 5.</think>\nANSWER: {s.target}"),
    "empty": lambda s: Output(""),
}


def _gsm_number(target: str) -> str:
    return target.replace(",", "")


GSM8K: dict[str, Style] = {
    "prompted": lambda s: Output(f"{s.metadata['reasoning']}\n\nANSWER: {s.target}"),
    "prompted_wrong": lambda s: Output(f"Some work.\n\nANSWER: {_wrong_int(_gsm_number(s.target))}"),
    "thousands": lambda s: Output(f"ANSWER: {int(_gsm_number(s.target)):,}"),
    "dollars": lambda s: Output(f"So she makes money.\nANSWER: ${s.target}"),
    "decimal": lambda s: Output(f"ANSWER: {_gsm_number(s.target)}.00"),
    "boxed": lambda s: Output(f"The answer is \\boxed{{{s.target}}}"),
    "the_answer_is": lambda s: Output(f"The answer is {s.target}."),
    "ramble_after": lambda s: Output(f"ANSWER: {s.target}" + RAMBLE),
    "gsm_hashes": lambda s: Output(f"{s.metadata['reasoning']}\n#### {s.target}"),
    "empty": lambda s: Output(""),
}


def _other_letter(letter: str) -> str:
    return "ABCD"[("ABCD".index(letter) + 1) % 4]


GPQA: dict[str, Style] = {
    "prompted": lambda s: Output(f"Reasoning about the options.\n\nANSWER: {s.target}"),
    "prompted_wrong": lambda s: Output(f"Reasoning.\n\nANSWER: {_other_letter(s.target)}"),
    "lowercase": lambda s: Output(f"Reasoning.\n\nANSWER: {s.target.lower()}"),
    "parenthesized": lambda s: Output(f"The correct option is ({s.target})."),
    "bold_letter": lambda s: Output(f"Reasoning.\n\nANSWER: **{s.target}**"),
    "two_answer_lines": lambda s: Output(f"ANSWER: {_other_letter(s.target)}\nWait, no.\nANSWER: {s.target}"),
    "period": lambda s: Output(f"ANSWER: {s.target}."),
    "empty": lambda s: Output(""),
}


def _body(sample: Sample) -> str:
    return sample.target  # the canonical solution: the body that continues the prompt


def _function(sample: Sample) -> str:
    return sample.metadata["prompt"] + sample.target


HUMANEVAL: dict[str, Style] = {
    "fenced_function": lambda s: Output(f"```python\n{_function(s)}```"),
    "fenced_body": lambda s: Output(f"```python\n{_body(s)}```"),
    "unfenced_body": lambda s: Output(_body(s)),
    "py_fence": lambda s: Output(f"```py\n{_function(s)}```"),
    "fenced_then_prose": lambda s: Output(f"Here it is:\n```python\n{_function(s)}```\nThis works because."),
    "wrong": lambda s: Output(f"```python\n{s.metadata['prompt']}    return None\n```"),
    "exit_zero": lambda s: Output("    import sys\n    sys.exit(0)\n"),
    "empty": lambda s: Output(""),
}


def _truth(sample: Sample) -> tuple[str, dict]:
    return bfcl.parse_python_call(sample.target)


def _hermes(name: str, arguments: dict) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def _changed(arguments: dict) -> dict:
    key = next(iter(arguments), None)
    return {**arguments, key: "changed"} if key is not None else {"unexpected": 1}


BFCL: dict[str, Style] = {
    "hermes": lambda s: Output(_hermes(*_truth(s))),
    "hermes_wrong_argument": lambda s: Output(_hermes(_truth(s)[0], _changed(_truth(s)[1]))),
    "hermes_unclosed": lambda s: Output(_hermes(*_truth(s)).removesuffix("</tool_call>")),
    "hermes_after_prose": lambda s: Output("Let me call the function.\n" + _hermes(*_truth(s))),
    "backend_parsed": lambda s: Output("", [{"function": _truth(s)[0], "arguments": _truth(s)[1]}]),
    "two_calls": lambda s: Output(_hermes(*_truth(s)) + "\n" + _hermes(*_truth(s))),
    "python_call": lambda s: Output(s.target),
    "bare_json": lambda s: Output(json.dumps({"name": _truth(s)[0], "arguments": _truth(s)[1]})),
    "empty": lambda s: Output(""),
}

STYLES: dict[str, dict[str, Style]] = {
    "aime2025": AIME, "gsm8k": GSM8K, "gpqamain": GPQA, "humaneval": HUMANEVAL, "bfcl": BFCL,
}
MODULES = {"aime2025": aime2025, "gsm8k": gsm8k, "gpqamain": gpqamain, "humaneval": humaneval, "bfcl": bfcl}


@dataclass
class Case:
    benchmark: str
    style: str
    sample: Sample
    output: Output

    def record(self) -> dict:
        """score.py's record (the same fields original.record_of takes from an evaluation log)."""
        return {
            "benchmark": self.benchmark, "id": f"{self.style}/{self.sample.id}", "completion": self.output.completion,
            "target": self.sample.target, "metadata": dict(self.sample.metadata or {}),
            "choices": self.sample.choices, "tool_calls": self.output.tool_calls or None,
        }


def samples(benchmark: str) -> list[Sample]:
    return MODULES[benchmark].load_samples(data.data_file(get_benchmark(benchmark), "test"))


def cases(benchmark: str, limit: int | None = None, styles: list[str] | None = None) -> Iterator[Case]:
    for sample in samples(benchmark)[:limit]:
        for style, make in STYLES[benchmark].items():
            if styles is None or style in styles:
                yield Case(benchmark, style, sample, make(sample))


def _state(case: Case) -> TaskState:
    message = ChatMessageAssistant(
        content=case.output.completion,
        tool_calls=[ToolCall(id=f"call_{i}", function=c["function"], arguments=c["arguments"])
                    for i, c in enumerate(case.output.tool_calls)] or None,
    )
    return TaskState(
        model=ModelName("corpus/model"), sample_id=case.sample.id, epoch=1, input="",
        messages=[ChatMessageUser(content=""), message], target=Target(case.sample.target),
        choices=case.sample.choices, output=ModelOutput(model="corpus/model", choices=[ChatCompletionChoice(
            message=message, stop_reason="stop")]),
        metadata=dict(case.sample.metadata or {}),
    )


def our_verdict(case: Case) -> bool:
    """Our scorer's verdict, through the same scorer objects an evaluation uses."""
    state = _state(case)
    target = Target(case.sample.target)
    if case.benchmark == "gpqamain":
        from inspect_ai.scorer import choice
        from inspect_ai.solver._multiple_choice import parse_answers, set_choices_based_on_generated_response

        set_choices_based_on_generated_response(state, parse_answers(state, multiple_correct=False))
        score = asyncio.run(choice()(state, target))
    else:
        scorer = {"aime2025": aime2025.integer_answer, "gsm8k": gsm8k.numeric_answer,
                  "humaneval": humaneval.verify, "bfcl": bfcl.function_call}[case.benchmark]()
        score = asyncio.run(scorer(state, target))
    return score.value in ("C", 1, 1.0, True)
