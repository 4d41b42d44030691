"""The original's verdicts, computed by the library versions the original pinned (run in the pinned venv only).

This file runs under the interpreter of the original-scorer environment (inspect-ai 0.3.150, inspect-evals
0.3.103, see requirements.txt) and never imports posttrainbench. It reads one JSON record per line on stdin:

    {"benchmark": "...", "id": ..., "completion": "...", "target": "...", "metadata": {...},
     "choices": [...], "tool_calls": [{"function": "...", "arguments": {...}}] | null}

and writes one JSON line per record on stdout: {"id": ..., "value": "C"|"I", "answer": "..."}.

HumanEval's scorer runs the candidate program through `sandbox().exec`. Here that sandbox is the caller's: the
scorer's exec becomes a line {"exec": {"cmd": [...], "timeout": n}} on stdout, the caller runs the command in its
own sandbox and answers with one line {"success", "returncode", "stdout", "stderr"} on stdin. Nothing in this
process executes model output.
"""

import asyncio
import importlib
import json
import os
import re
import sys
from importlib.metadata import version

# Library prints (e.g. bfcl's parse_target) must not corrupt the protocol: stdout is only ours.
PROTOCOL = os.fdopen(os.dup(1), "w", encoding="utf-8")
sys.stdout = sys.stderr

from inspect_ai.model import ChatMessageAssistant, ChatMessageUser, ModelName, ModelOutput  # noqa: E402
from inspect_ai.model._call_tools import parse_tool_call  # noqa: E402
from inspect_ai.scorer import Target, choice, match  # noqa: E402
from inspect_ai.solver import TaskState  # noqa: E402
from inspect_ai.solver._multiple_choice import parse_answers, set_choices_based_on_generated_response  # noqa: E402
from inspect_ai.util import ExecResult  # noqa: E402
from inspect_evals.aime2025.aime2025 import aime_scorer  # noqa: E402

# The packages re-export their task functions under the modules' names: import the modules themselves.
bfcl_module = importlib.import_module("inspect_evals.bfcl.bfcl")
humaneval_module = importlib.import_module("inspect_evals.humaneval.humaneval")

PACKAGES = ("inspect_ai", "inspect_evals")

# vLLM 0.11's hermes tool parser (the `--tool-call-parser hermes` the original served BFCL with): every
# <tool_call> block is JSON with "name" and "arguments"; if any block fails, the whole output has no calls.
_HERMES = re.compile(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)", re.DOTALL)


def hermes_calls(text: str) -> list[tuple[str, str]]:
    if "<tool_call>" not in text:
        return []
    try:
        raw = [json.loads(a if a else b) for a, b in _HERMES.findall(text)]
        return [(call["name"], json.dumps(call["arguments"], ensure_ascii=False)) for call in raw]
    except Exception:
        return []


class CallerSandbox:
    """inspect's sandbox interface, answered by the calling process's sandbox."""

    async def exec(self, cmd: list[str], timeout: int | None = None, **_: object) -> ExecResult:
        send({"exec": {"cmd": cmd, "timeout": timeout}})
        reply = json.loads(sys.stdin.readline())
        if reply.get("timeout"):
            raise TimeoutError
        return ExecResult(bool(reply["success"]), int(reply["returncode"]), reply["stdout"], reply["stderr"])


def send(message: dict) -> None:
    PROTOCOL.write(json.dumps(message) + "\n")
    PROTOCOL.flush()


def state_for(record: dict) -> TaskState:
    completion = record["completion"]
    return TaskState(
        model=ModelName("original/scorer"),
        sample_id=record["id"],
        epoch=1,
        input="",
        messages=[ChatMessageUser(content="")],
        target=Target(record["target"]),
        choices=record.get("choices"),
        output=ModelOutput.from_content(model="original/scorer", content=completion),
        metadata=record.get("metadata") or {},
    )


async def verdict(record: dict):
    benchmark = record["benchmark"]
    state = state_for(record)
    target = Target(record["target"])
    if benchmark == "aime2025":
        return await aime_scorer()(state, target)
    if benchmark == "gsm8k":
        return await match(numeric=True)(state, target)
    if benchmark == "gpqamain":
        # multiple_choice(cot=True) parses the answer and marks the choices; choice() then scores them.
        set_choices_based_on_generated_response(state, parse_answers(state, multiple_correct=False))
        return await choice()(state, target)
    if benchmark == "humaneval":
        return await humaneval_module.verify()(state, target)
    if benchmark == "bfcl":
        return await bfcl_verdict(record, state)
    raise ValueError(f"no original scorer for {benchmark!r}")


async def bfcl_verdict(record: dict, state: TaskState):
    meta = record["metadata"]
    sample = bfcl_module.record_to_sample(
        {"question": [[]], "ground_truth": [record["target"]], "function": [meta["function"]]}
    )
    tools = [bfcl_module.create_tool_info_from_dict(meta["function"])]
    if record.get("tool_calls"):
        # the backend's parser already produced calls (our vLLM serve runs the original's hermes parser)
        pairs = [(c["function"], json.dumps(c["arguments"], ensure_ascii=False)) for c in record["tool_calls"]]
    else:
        pairs = hermes_calls(record["completion"])
    calls = [parse_tool_call(f"call_{i}", name, args, tools) for i, (name, args) in enumerate(pairs)] or None
    content = record["completion"] if calls is None else record["completion"].split("<tool_call>", 1)[0]
    state.messages.append(ChatMessageAssistant(content=content, tool_calls=calls))
    state.metadata.update(sample.metadata or {})
    return await bfcl_module.bfcl_scorer()(state, Target(str(sample.target)))


def main() -> int:
    humaneval_module.sandbox = CallerSandbox  # the scorer calls sandbox().exec(...)
    if sys.argv[1:] == ["--versions"]:
        send({name: version(name) for name in PACKAGES})
        return 0
    for line in sys.stdin:
        if not line.strip():
            continue
        record = json.loads(line)
        score = asyncio.run(verdict(record))
        send({"id": record["id"], "value": score.value, "answer": score.answer})
    return 0


if __name__ == "__main__":
    sys.exit(main())
