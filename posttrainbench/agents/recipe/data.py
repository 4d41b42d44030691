"""Training data per benchmark: pinned hub sets when the network allows, offline sources otherwise.

An example is `{"messages": [...], "tools": [...]?}` whose last message is the assistant turn to learn. Prompts
follow the wording the benchmark's evaluation uses (inspect_evals' templates), so training looks like the test.
Never a benchmark's test file: the only file read from the data mirror is GSM8K's train split.
"""

import ast
import json
import os
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from posttrainbench.agents.recipe import log
from posttrainbench.agents.recipe.stdlib_corpus import build_stdlib_tasks

Example = dict

MATH_PROMPT = """Solve the following math problem step by step. The last line of your response should be of the form \
"ANSWER: $ANSWER" (without quotes) where $ANSWER is the answer to the problem.

{prompt}

Remember to put your answer on its own line at the end in the form "ANSWER: $ANSWER" (without quotes) where $ANSWER \
is the answer to the problem, and you do not need to use a \\boxed command.

Reasoning:"""

CHOICE_PROMPT = """Answer the following multiple choice question. The last line of your response should be of the \
following format: 'ANSWER: $LETTER' (without quotes) where LETTER is one of {letters}. Think step by step before \
answering.

{question}

{choices}"""

CODE_INSTRUCTION = """Read the following function signature and docstring, and fully implement
the function described. Your response should only contain the code for
this function.
"""

GSM8K_FEWSHOT, GSM8K_FEWSHOT_SHARE = 10, 0.1  # the evaluation shows 10 solved train problems as a system message
ROWS_PER_HUB_SET = 20_000


def chat(user: str, assistant: str, system: str | None = None) -> Example:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": [*messages, {"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


# --- converters: one hub or file row -> an example (None = unusable) ----------------------------------------

_CALCULATOR = re.compile(r"<<[^>]*>>")


def gsm8k_parts(row: dict) -> tuple[str, str, str]:
    reasoning, _, answer = row["answer"].rpartition("####")
    return row["question"].strip(), _CALCULATOR.sub("", reasoning).strip(), answer.strip().replace(",", "")


def gsm8k_example(row: dict, rng: random.Random, shots: list[dict] | None = None) -> Example:
    question, reasoning, answer = gsm8k_parts(row)
    system = None
    if shots and rng.random() < GSM8K_FEWSHOT_SHARE:
        picked = [shot for shot in rng.sample(shots, GSM8K_FEWSHOT + 1) if shot is not row][:GSM8K_FEWSHOT]
        system = "\n\n".join(f"{q}\n\nReasoning:\n{r}\n\nANSWER: {a}" for q, r, a in map(gsm8k_parts, picked))
    return chat(MATH_PROMPT.format(prompt=question), f"{reasoning}\n\nANSWER: {answer}", system)


def last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j].strip()
    return None


NUMINA_SOURCES = {"amc_aime", "olympiads", "aops_forum", "math", "synthetic_math", "synthetic_amc"}


def numina_example(row: dict, rng: random.Random) -> Example | None:
    """Competition problems with an integer answer, like AIME's; the boxed answer becomes an ANSWER line."""
    if row.get("source") not in NUMINA_SOURCES:
        return None
    answer = last_boxed(row["solution"])
    if answer is None or not re.fullmatch(r"-?\d+", answer):
        return None
    return chat(MATH_PROMPT.format(prompt=row["problem"].strip()), f"{row['solution'].strip()}\n\nANSWER: {answer}")


def sciq_example(row: dict, rng: random.Random) -> Example | None:
    options = [row["correct_answer"], row["distractor1"], row["distractor2"], row["distractor3"]]
    if not all(isinstance(o, str) and o.strip() for o in options):
        return None
    order = list(range(4))
    rng.shuffle(order)
    letters = "ABCD"
    choices = "\n".join(f"{letters[i]}) {options[k].strip()}" for i, k in enumerate(order))
    correct = letters[order.index(0)]
    support = (row.get("support") or "").strip()
    reasoning = support or f"The correct option is {options[0].strip()}."
    prompt = CHOICE_PROMPT.format(letters=",".join(letters), question=row["question"].strip(), choices=choices)
    return chat(prompt, f"{reasoning}\n\nANSWER: {correct}")


def _loose_json(text: str):
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return ast.literal_eval(text)


def _as_tool(spec: dict) -> dict:
    return spec if spec.get("type") == "function" and "function" in spec else {"type": "function", "function": spec}


def hermes_example(row: dict, rng: random.Random) -> Example | None:
    """A single-turn function-calling conversation with exactly one call, as structured tools and tool_calls so
    that each chat template renders them in its own format (the one the evaluation parses)."""
    turns = {t["from"]: t["value"] for t in row.get("conversations", [])}
    if not {"system", "human", "gpt"} <= turns.keys():
        return None
    tools_text = re.search(r"<tools>(.*?)</tools>", turns["system"], re.DOTALL)
    calls = re.findall(r"<tool_call>(.*?)</tool_call>", turns["gpt"], re.DOTALL)
    if not tools_text or len(calls) != 1:
        return None
    try:
        tools = _loose_json(tools_text.group(1))
        call = _loose_json(calls[0])
    except (ValueError, SyntaxError):
        return None
    tools = [tools] if isinstance(tools, dict) else tools
    if not isinstance(tools, list) or not isinstance(call, dict) or "name" not in call:
        return None
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    assistant = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": call["name"], "arguments": arguments}}],
    }
    return {"messages": [{"role": "user", "content": turns["human"]}, assistant], "tools": [_as_tool(t) for t in tools]}


NO_ROBOTS_CATEGORIES = {"Generation", "Brainstorm", "Rewrite", "Open QA", "Chat", "Summarize"}


def no_robots_example(row: dict, rng: random.Random) -> Example | None:
    messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    if row.get("category") not in NO_ROBOTS_CATEGORIES or not messages or messages[-1]["role"] != "assistant":
        return None
    return {"messages": messages}


def medical_example(row: dict, rng: random.Random) -> Example | None:
    question, response = (row.get("Question") or "").strip(), (row.get("Response") or "").strip()
    return chat(question, response) if question and response else None


def magicoder_example(row: dict, rng: random.Random) -> Example | None:
    if row.get("lang") != "python" or "```" not in row["solution"]:
        return None
    return chat(row["problem"].strip(), row["solution"].strip())


def stdlib_examples() -> list[Example]:
    return [chat(CODE_INSTRUCTION + "\n" + task.prompt, task.answer()) for task in build_stdlib_tasks()]


# --- sources ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubSet:
    repo: str
    revision: str  # a commit: the data does not move under a rerun
    convert: Callable[[dict, random.Random], Example | None]
    config: str | None = None
    data_files: str | None = None
    split: str = "train"

    def describe(self) -> str:
        part = self.config or self.data_files
        return f"{self.repo}@{self.revision[:8]}" + (f" ({part})" if part else "")


HUB_SETS = {
    "gsm8k": HubSet("openai/gsm8k", "e53f048856ff4f594e959d75785d2c2d37b678ee", gsm8k_example, config="main"),
    "numina": HubSet("AI-MO/NuminaMath-CoT", "9d8d210c9f6a36c8f3cd84045668c9b7800ef517", numina_example),
    "sciq": HubSet("allenai/sciq", "2c94ad3e1aafab77146f384e23536f97a4849815", sciq_example),
    "hermes": HubSet(
        "NousResearch/hermes-function-calling-v1",
        "dae3e1d28cfbcf4b915c04ea1e072030529b4bda",
        hermes_example,
        data_files="func-calling-singleturn.json",
    ),
    "no_robots": HubSet("HuggingFaceH4/no_robots", "e6f9a4ac5c37faeb744ba9ecf0473184d7f8105b", no_robots_example),
    "medical": HubSet(
        "FreedomIntelligence/medical-o1-reasoning-SFT",
        "fc2c9e8a37b38f38da6d449564a8c350b244aef4",
        medical_example,
        config="en",
    ),
    "magicoder": HubSet("ise-uiuc/Magicoder-OSS-Instruct-75K", "5f839b1f368a76b161028bb9edff055db34022b2",
                        magicoder_example),
}


@dataclass(frozen=True)
class Plan:
    always: tuple[str, ...]  # local sources, used in every run
    online: tuple[str, ...] = ()  # HUB_SETS keys, used when the hub is reachable
    offline: tuple[str, ...] = ()  # local sources standing in when no online set could be loaded


PLANS = {
    "gsm8k": Plan(always=("gsm8k-train",)),
    "humaneval": Plan(always=("stdlib",), online=("magicoder",)),
    "aime2025": Plan(always=(), online=("numina",), offline=("gsm8k-train",)),
    "gpqamain": Plan(always=(), online=("sciq",), offline=("gsm8k-train",)),
    "bfcl": Plan(always=(), online=("hermes",), offline=("stdlib",)),
    "arenahardwriting": Plan(always=(), online=("no_robots",), offline=("gsm8k-train", "stdlib")),
    "healthbench": Plan(always=(), online=("medical",), offline=("gsm8k-train", "stdlib")),
}
DEFAULT_PLAN = Plan(always=(), offline=("gsm8k-train", "stdlib"))


def hub_online(timeout: float = 10.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    from huggingface_hub import HfApi

    gsm8k = HUB_SETS["gsm8k"]
    try:
        HfApi().dataset_info(gsm8k.repo, revision=gsm8k.revision, timeout=timeout)
    except Exception as exc:  # no route, proxy refusal, DNS: all mean the same here
        log(f"the Hugging Face hub is not reachable ({type(exc).__name__}); using offline data only")
        return False
    return True


def hub_rows(hub: HubSet) -> Iterator[dict]:
    from datasets import load_dataset

    dataset = load_dataset(
        hub.repo, hub.config, data_files=hub.data_files, split=hub.split, revision=hub.revision, streaming=True
    )
    return iter(dataset.shuffle(seed=0, buffer_size=10_000))


def load_hub_set(hub: HubSet, rng: random.Random, rows: int = ROWS_PER_HUB_SET) -> list[Example]:
    examples = []
    for row in islice(hub_rows(hub), rows * 3):  # converters drop rows; read a bounded surplus
        example = hub.convert(row, rng)
        if example is not None:
            examples.append(example)
            if len(examples) >= rows:
                break
    return examples


def gsm8k_train(data_dir: Path | None, online: bool, rng: random.Random) -> tuple[list[Example], str] | None:
    mirror = data_dir / "gsm8k" / "train.jsonl" if data_dir else None
    if mirror and mirror.is_file():
        rows = [json.loads(line) for line in mirror.read_text().splitlines() if line.strip()]
        where = str(mirror)
    elif online:
        rows = list(islice(hub_rows(HUB_SETS["gsm8k"]), ROWS_PER_HUB_SET))
        where = HUB_SETS["gsm8k"].describe()
    else:
        return None
    return [gsm8k_example(row, rng, rows) for row in rows], f"GSM8K train ({where})"


def local_source(name: str, data_dir: Path | None, online: bool, rng: random.Random):
    if name == "gsm8k-train":
        return gsm8k_train(data_dir, online, rng)
    if name == "stdlib":
        return stdlib_examples(), "Python standard library functions (HumanEval-style completions)"
    raise ValueError(f"unknown local source {name}")


def build_examples(benchmark: str, data_dir: Path | None, online: bool, seed: int = 0) -> list[Example]:
    """The training examples for `benchmark`, shuffled; logs which sources were used and why."""
    rng = random.Random(seed)
    plan = PLANS.get(benchmark, DEFAULT_PLAN)
    examples: list[Example] = []

    def add_local(name: str) -> None:
        found = local_source(name, data_dir, online, rng)
        if found is None:
            log(f"source {name}: not available (no data mirror file and no network)")
            return
        rows, what = found
        log(f"source {what}: {len(rows)} examples")
        examples.extend(rows)

    for name in plan.always:
        add_local(name)
    loaded_online = False
    for key in plan.online if online else ():
        hub = HUB_SETS[key]
        try:
            rows = load_hub_set(hub, rng)
        except Exception as exc:
            log(f"source {hub.describe()}: failed to load ({type(exc).__name__}: {str(exc)[:200]})")
            continue
        log(f"source {hub.describe()}: {len(rows)} examples")
        examples.extend(rows)
        loaded_online = loaded_online or bool(rows)
    if plan.online and not loaded_online:
        fallback = f"; falling back to {', '.join(plan.offline)}" if plan.offline else ""
        log(f"hub data for {benchmark} ({', '.join(plan.online)}) not used{fallback}")
    if not loaded_online:
        for name in plan.offline:
            add_local(name)
    rng.shuffle(examples)
    return examples
