"""BFCL v3 exec_simple: 100 requests, each answered by one call of the one function offered.

The model gets the function as a tool (its chat template renders it); the single call it makes is parsed from
its output and must name the function and pass exactly the ground-truth arguments.
"""

import ast
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from inspect_ai import Task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.log import EvalLog
from inspect_ai.model import ChatMessageAssistant, ChatMessageUser
from inspect_ai.scorer import Score, Scorer, Target, accuracy, scorer, stderr
from inspect_ai.solver import Generate, Solver, TaskState, solver
from inspect_ai.tool import ToolInfo, ToolParams

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import fewshot
from posttrainbench.evaluation.base import EvalContext
from posttrainbench.evaluation.extract import strip_reasoning

# Read by the runner: render with the base model's tool-calling template, and let `vllm serve` turn
# <tool_call> blocks into structured calls (the original's flags; Gemma's tool template uses the same blocks).
USES_TOOLS = True
VLLM_ARGS = {"enable_auto_tool_choice": True, "tool_call_parser": "hermes"}

Call = tuple[str, dict[str, Any]]
Format = Literal["hermes", "gemma"]

# BFCL writes Python type names where JSON Schema has its own.
_SCHEMA_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}
_TOOL_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_TOOL_CODE = re.compile(r"```tool_code\s*(.*?)\s*(?:```|$)", re.DOTALL)
_NO_DEFAULT = object()

# Few-shot mode offers the function in the text itself: a plain-text prompt has no tool slot.
TEXT_QUERY = """You can call this function:
{function}

Answer with exactly one call, written as
<tool_call>
{{"name": "<function name>", "arguments": {{<arguments as a JSON object>}}}}
</tool_call>

{question}"""


def json_schema(bfcl: dict[str, Any]) -> dict[str, Any]:
    """A BFCL parameter schema in JSON Schema terms (recursively)."""
    out: dict[str, Any] = {}
    for key, value in bfcl.items():
        if key == "type":
            out[key] = _SCHEMA_TYPES.get(value, value)
        elif key == "properties":
            out[key] = {name: json_schema(prop) for name, prop in value.items()}
        elif key == "items":
            out[key] = json_schema(value)
        else:
            out[key] = value
    return out


def tool_info(function: dict[str, Any]) -> ToolInfo:
    parameters = json_schema(function["parameters"])
    return ToolInfo(
        name=function["name"],
        description=function["description"],
        parameters=ToolParams(properties=parameters["properties"], required=parameters.get("required", [])),
    )


def parse_python_call(text: str) -> Call:
    """`f(a=1, b='x')` → ("f", {"a": 1, "b": "x"}); only literal keyword arguments."""
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or node.args:
        raise ValueError(f"not a call with keyword arguments only: {text!r}")
    return ast.unparse(node.func), {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}


def _parse_json_call(text: str) -> Call:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = ast.literal_eval(text.strip())  # single-quoted dicts, as small models often write them
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ValueError(f"no function name in {text!r}")
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        arguments = json.loads(arguments)
    if not isinstance(arguments, dict):
        raise ValueError(f"arguments are not an object in {text!r}")
    return data["name"], arguments


def parse_calls(text: str, fmt: Format) -> list[Call]:
    """The function calls written in a completion.

    hermes: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks, what the Qwen, SmolLM and Gemma
    tool templates ask for (the original's gemma3_tool_calling.jinja asked Gemma for the same blocks). gemma also
    accepts the ```tool_code fenced Python calls of Google's Gemma function-calling guide. Raises ValueError or
    SyntaxError when a block does not parse.
    """
    body = strip_reasoning(text)
    calls = [_parse_json_call(block) for block in _TOOL_CALL.findall(body)]
    if fmt == "gemma":
        calls += [parse_python_call(block) for block in _TOOL_CODE.findall(body)]
    return calls


def values_equal(got: Any, want: Any) -> bool:
    """Type-aware equality: ints and floats compare numerically, bools only with bools, strings exactly,
    lists and tuples (JSON has no tuples) and dicts element by element."""
    if isinstance(got, bool) or isinstance(want, bool):
        return isinstance(got, bool) and isinstance(want, bool) and got == want
    if isinstance(want, (int, float)):
        return isinstance(got, (int, float)) and got == want
    if isinstance(want, (list, tuple)):
        return (
            isinstance(got, (list, tuple)) and len(got) == len(want) and all(map(values_equal, got, want))
        )
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(values_equal(got[k], want[k]) for k in want)
    return type(got) is type(want) and got == want


def check_call(call: Call, expected: Call, function: dict[str, Any]) -> str | None:
    """Why `call` differs from the expected one, or None when it matches.

    An argument the ground truth leaves out is accepted only when it equals the default the schema declares.
    """
    name, arguments = call
    want_name, want_arguments = expected
    if name != want_name:
        return f"called {name}, expected {want_name}"
    for key, value in want_arguments.items():
        if key not in arguments:
            return f"missing argument {key}"
        if not values_equal(arguments[key], value):
            return f"{key}={arguments[key]!r}, expected {value!r}"
    properties = function["parameters"].get("properties", {})
    for key in arguments.keys() - want_arguments.keys():
        default = properties.get(key, {}).get("default", _NO_DEFAULT)
        if default is _NO_DEFAULT or not values_equal(arguments[key], default):
            return f"unexpected argument {key}={arguments[key]!r}"
    return None


def load_samples(path: Path) -> list[Sample]:
    """One sample per JSON line: id, question (one user turn), function (one), ground_truth (one call)."""
    samples = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        try:
            turn = row["question"][0]
            (function,) = row["function"]
            (ground_truth,) = row["ground_truth"]
            parse_python_call(ground_truth)
        except (KeyError, ValueError, SyntaxError) as exc:
            raise PtbError(f"{path}: line {number} is not a single-call BFCL item ({exc})") from None
        samples.append(
            Sample(
                id=row["id"],
                input=[ChatMessageUser(content=message["content"]) for message in turn],
                target=ground_truth,
                metadata={"function": function},
            )
        )
    return samples


@solver
def offer_function() -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        # A ToolInfo reaches the model as a definition only: the call is scored, never executed.
        state.tools.append(tool_info(state.metadata["function"]))  # type: ignore[arg-type]
        return await generate(state, tool_calls="none")

    return solve


@solver
def describe_function() -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        state.user_prompt.text = text_query(state.metadata["function"], state.user_prompt.text)
        return await generate(state)

    return solve


def text_query(function: dict[str, Any], question: str) -> str:
    described = {"name": function["name"], "description": function["description"],
                 "parameters": json_schema(function["parameters"])}
    return TEXT_QUERY.format(function=json.dumps(described), question=question.strip())


def demo_messages(ctx: EvalContext) -> list[fewshot.Example]:
    pairs = []
    for demo in fewshot.demos_for(ctx):
        name, arguments = parse_python_call(demo["call"])
        call = json.dumps({"name": name, "arguments": arguments})
        pairs.append((text_query(demo["function"], demo["question"]), f"<tool_call>\n{call}\n</tool_call>"))
    return fewshot.turns(pairs)


def completion_calls(message: ChatMessageAssistant, fmt: Format) -> tuple[list[Call], str | None]:
    """The calls in the model's answer, from the backend's tool-call parser or else from the raw text."""
    parsed = [(call.function, call.arguments) for call in message.tool_calls or [] if not call.parse_error]
    if parsed:
        return parsed, None
    try:
        calls = parse_calls(message.text, fmt)
    except (ValueError, SyntaxError, TypeError, RecursionError) as exc:
        return [], f"unparsable call: {exc}"
    if not calls and message.tool_calls:
        return [], f"unparsable call: {message.tool_calls[0].parse_error}"
    return calls, None


@scorer(metrics=[accuracy(), stderr()])
def function_call(fmt: Format = "hermes") -> Scorer:
    async def score(state: TaskState, target: Target) -> Score:
        calls, error = completion_calls(state.output.message, fmt)
        if error is not None:
            outcome = "unparsable_call"
        elif not calls:
            outcome, error = "no_call", "no function call"
        elif len(calls) > 1:
            outcome, error = "several_calls", f"{len(calls)} calls, expected one"
        else:
            error = check_call(calls[0], parse_python_call(target.text), state.metadata["function"])
            outcome = "mismatch" if error else "match"
        return Score(
            value=1 if error is None else 0,
            answer="; ".join(f"{name}({json.dumps(args)})" for name, args in calls),
            explanation=error or "match",
            metadata={"outcome": outcome},
        )

    return score


def build_task(ctx: EvalContext) -> Task:
    samples = load_samples(ctx.data_file("test"))[: ctx.limit]
    return Task(
        name="bfcl",
        dataset=MemoryDataset(samples, name="bfcl"),
        solver=describe_function() if ctx.fewshot else offer_function(),
        scorer=function_call(ctx.base_model.tool_call_format),
    )


def summarize(log: EvalLog) -> dict:
    """Share of samples per outcome (match, mismatch, no_call, several_calls, unparsable_call)."""
    outcomes = Counter(
        score.metadata["outcome"]
        for sample in log.samples or []
        for score in (sample.scores or {}).values()
        if score.metadata and "outcome" in score.metadata
    )
    total = sum(outcomes.values())
    return {f"share_{outcome}": count / total for outcome, count in sorted(outcomes.items())} if total else {}
