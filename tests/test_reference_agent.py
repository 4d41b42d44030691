"""The reference agent: budget planning, training data, chat formatting, the adapter, and one real (tiny) run."""

import ast
import gzip
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from posttrainbench.agents.base import AgentContext
from posttrainbench.agents.recipe import budget, data
from posttrainbench.agents.recipe.stdlib_corpus import build_stdlib_tasks, tasks_from_source
from posttrainbench.errors import PtbError
from posttrainbench.specs import AgentSpec, get_benchmark, get_model

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "posttrainbench" / "evaluation" / "templates"


# --- budget ----------------------------------------------------------------------------------------------------


def test_parse_timer():
    assert budget.parse_timer("Remaining time (hours:minutes): 9:59\n") == 9 * 3600 + 59 * 60
    assert budget.parse_timer("Remaining time (hours:minutes): 0:03") == 180
    assert budget.parse_timer("Timer expired!\n") == 0
    with pytest.raises(PtbError, match="cannot read"):
        budget.parse_timer("bash: timer.sh: No such file")


def test_read_timer_runs_the_script(tmp_path):
    (tmp_path / "timer.sh").write_text('#!/bin/bash\necho "Remaining time (hours:minutes): 1:30"\n')
    assert budget.read_timer(tmp_path) == 5400
    with pytest.raises(PtbError, match="missing"):
        budget.read_timer(tmp_path / "nowhere")


def test_plan_budget_keeps_a_margin_and_evaluates_only_long_runs():
    small = budget.plan_budget(15 * 60, model_bytes=540_000_000, want_eval=True)
    assert small.eval_s == 0  # 15 minutes: comparing against the base model does not fit
    assert small.reserve_s == pytest.approx(0.1 * 900 + 30 + 540e6 / 100e6)
    assert small.train_s == pytest.approx(900 - small.reserve_s)

    long = budget.plan_budget(10 * 3600, model_bytes=8_000_000_000, want_eval=True)
    assert long.eval_s == pytest.approx(40 * 60 + 30 + 80)  # capped at 40 minutes + one extra save
    assert long.train_s == pytest.approx(36000 - 3600 - 110 - long.eval_s)
    assert budget.plan_budget(10 * 3600, 8_000_000_000, want_eval=False).eval_s == 0
    assert budget.plan_budget(60, 8_000_000_000, want_eval=False).train_s == 0


def test_plan_steps_by_time_epochs_and_cap():
    # 100 s at 1 s per step (+10% overhead) -> 90 steps
    assert budget.plan_steps(100, 1.0, steps_per_epoch=1000, max_epochs=3, cap=None) == 90
    assert budget.plan_steps(10_000, 1.0, steps_per_epoch=20, max_epochs=3, cap=None) == 60
    assert budget.plan_steps(10_000, 1.0, steps_per_epoch=20, max_epochs=3, cap=7) == 7
    assert budget.plan_steps(4, 1.0, steps_per_epoch=20, max_epochs=3, cap=None) == 0  # < 5 steps: not worth it
    assert budget.plan_steps(4, 1.0, steps_per_epoch=20, max_epochs=3, cap=2) == 2
    with pytest.raises(ValueError):
        budget.plan_steps(100, 0, 10, 3, None)


def test_clock_callback_stops_training_at_the_deadline(capsys):
    from transformers import TrainerControl, TrainerState

    from posttrainbench.agents.recipe.train import ClockCallback

    state = TrainerState(global_step=3, max_steps=10)
    callback = ClockCallback(budget.Clock(600), deadline=time.monotonic() + 60)
    assert not callback.on_step_end(None, state, TrainerControl()).should_training_stop
    callback.on_log(None, state, TrainerControl(), logs={"loss": 1.25, "learning_rate": 1e-4})
    assert "step 3/10 loss 1.2500 lr 1.00e-04" in capsys.readouterr().out
    callback.deadline = time.monotonic() - 1
    assert callback.on_step_end(None, state, TrainerControl()).should_training_stop


# --- the standard-library code corpus --------------------------------------------------------------------------


def humaneval_body(completion: str) -> str:
    """What HumanEval's scorer (inspect_evals) runs after the prompt: the first fenced block minus its signature."""
    block = re.search(r"```python\n(.*?)```", completion, re.DOTALL).group(1)
    return block[block.find(":\n    ") + 2 :]


@pytest.fixture(scope="module")
def stdlib_tasks():
    return build_stdlib_tasks()


def test_stdlib_corpus_is_large_and_well_formed(stdlib_tasks):
    assert len(stdlib_tasks) >= 400
    assert len({t.solution for t in stdlib_tasks}) == len(stdlib_tasks)
    for task in stdlib_tasks:
        tree = ast.parse(task.prompt + "    pass\n")
        func = tree.body[-1]
        assert isinstance(func, ast.FunctionDef) and func.name == task.name
        assert ast.get_docstring(func)
        assert task.solution.startswith(f"def {task.name}(")
        # the scorer's extraction gives back exactly the body, which completes the prompt into valid code
        body = humaneval_body(task.answer())
        assert body.strip() and not body.lstrip().startswith('"""')
        ast.parse(task.prompt + body)


def test_stdlib_corpus_rejects_functions_that_need_module_state():
    source = '''
import os
_CACHE = {}
class Thing: pass

def uses_os(path):
    """Return the base name of a path, lower-cased."""
    name = os.path.basename(path)
    return name.lower()

def uses_class(x):
    """Wrap the value in a Thing object for later."""
    t = Thing()
    return t

def writes_global(x):
    """Remember the value in the module cache."""
    global _CACHE
    _CACHE = x
    return x
'''
    tasks = list(tasks_from_source(source, "demo"))
    assert [t.name for t in tasks] == ["uses_os"]
    assert tasks[0].prompt.startswith("import os\n")


def test_stdlib_corpus_shares_nothing_with_humaneval(stdlib_tasks, shared_data):
    with gzip.open(shared_data / "humaneval" / "HumanEval.jsonl.gz", "rt") as f:
        problems = [json.loads(line) for line in f]
    assert len(problems) == 164

    def grams(text: str, n: int = 13) -> set[tuple[str, ...]]:
        words = re.findall(r"\w+|[^\w\s]", text)
        return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}

    corpus_text = "\n".join(t.prompt + t.solution for t in stdlib_tasks)
    corpus = set().union(*(grams(t.prompt + t.solution) for t in stdlib_tasks))
    flat = " ".join(corpus_text.split())
    for problem in problems:
        assert not grams(problem["prompt"] + problem["canonical_solution"]) & corpus, problem["task_id"]
        for func in ast.walk(ast.parse(problem["prompt"])):
            doc = ast.get_docstring(func) if isinstance(func, ast.FunctionDef) else None
            assert not doc or " ".join(doc.split())[:80] not in flat, problem["task_id"]


# --- converters ------------------------------------------------------------------------------------------------


def test_gsm8k_examples_end_with_an_answer_line(shared_data):
    rows = [json.loads(line) for line in (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()[:50]]
    rng = random.Random(0)
    examples = [data.gsm8k_example(row, rng, rows) for row in rows]
    for row, example in zip(rows, examples, strict=True):
        answer = example["messages"][-1]["content"]
        assert answer.endswith("ANSWER: " + row["answer"].rpartition("####")[2].strip().replace(",", ""))
        assert "<<" not in answer and "####" not in answer
        assert row["question"].strip() in example["messages"][-2]["content"]
    with_shots = [e for e in examples if e["messages"][0]["role"] == "system"]
    assert with_shots and len(with_shots) < len(examples) / 2
    assert with_shots[0]["messages"][0]["content"].count("ANSWER: ") == data.GSM8K_FEWSHOT


def test_build_examples_offline_uses_only_allowed_local_sources(shared_data, capsys):
    gsm8k = data.build_examples("gsm8k", shared_data, online=False)
    assert len(gsm8k) == 7473
    aime = data.build_examples("aime2025", shared_data, online=False)
    assert len(aime) == 7473  # GSM8K train stands in for competition math when the hub is unreachable
    assert "hub data for aime2025 (numina) not used; falling back to gsm8k-train" in capsys.readouterr().out
    assert data.build_examples("gsm8k", None, online=False) == []


def test_hub_converters_on_sample_rows():
    rng = random.Random(1)
    sciq = data.sciq_example(
        {"question": "What gas do plants absorb?", "correct_answer": "carbon dioxide", "distractor1": "oxygen",
         "distractor2": "helium", "distractor3": "neon", "support": "Plants take in carbon dioxide."}, rng)
    prompt, answer = sciq["messages"][0]["content"], sciq["messages"][1]["content"]
    letter = answer.rsplit("ANSWER: ", 1)[1]
    assert f"{letter}) carbon dioxide" in prompt and "one of A,B,C,D" in prompt

    numina = data.numina_example(
        {"source": "amc_aime", "problem": "Find n.", "solution": "So $n = \\boxed{\\frac{1}{2}}$."}, rng)
    assert numina is None  # AIME answers are integers
    numina = data.numina_example({"source": "olympiads", "problem": "Find n.", "solution": "Thus \\boxed{42}."}, rng)
    assert numina["messages"][1]["content"].endswith("ANSWER: 42")

    hermes = data.hermes_example({"conversations": [
        {"from": "system", "value": "You are a function calling AI model. <tools> [{'type': 'function', 'function': "
         "{'name': 'get_weather', 'description': 'Weather of a city', 'parameters': {'type': 'object', "
         "'properties': {'city': {'type': 'string'}}, 'required': ['city']}}}] </tools>"},
        {"from": "human", "value": "Weather in Paris?"},
        {"from": "gpt", "value": "<tool_call>\n{'arguments': {'city': 'Paris'}, 'name': 'get_weather'}\n</tool_call>"},
    ]}, rng)
    assert hermes["tools"][0]["function"]["name"] == "get_weather"
    call = hermes["messages"][-1]["tool_calls"][0]["function"]
    assert call == {"name": "get_weather", "arguments": {"city": "Paris"}}


# --- chat formatting -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(small_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(small_model)


def test_rendering_with_the_evaluation_template(tokenizer):
    from posttrainbench.agents.recipe.formatting import ChatFormat, tokenize

    chat = ChatFormat(tokenizer, (TEMPLATES / "qwen3.jinja").read_text())
    end = chat.end_of_turn()
    assert tokenizer.convert_ids_to_tokens(end) == "<|im_end|>"
    example = data.chat("What is 2+3?", "2+3=5\n\nANSWER: 5")
    rendered = chat.render(example)
    assert rendered.prompt.endswith("<|im_start|>assistant\n")
    assert rendered.completion.startswith("<think>\n\n</think>\n\n2+3=5")  # qwen3 closes an empty thought
    rows = tokenize(chat, [example, data.chat("long " * 600, "x")], max_length=256)
    assert len(rows) == 1  # the over-long example is dropped, not cut
    ids, mask = rows[0]["input_ids"], rows[0]["completion_mask"]
    answer = [i for i, m in zip(ids, mask, strict=True) if m]
    assert tokenizer.decode(answer).startswith("<think>")
    assert answer[-2:] == tokenizer("<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids[: mask.index(1)]) == rendered.prompt


def test_tool_calls_render_in_the_template_format(tokenizer, tmp_path):
    from posttrainbench.agents.recipe.formatting import ChatFormat, load_template

    (tmp_path / "templates").mkdir()
    for name in ("gemma3.jinja", "gemma3_tool.jinja"):
        (tmp_path / "templates" / name).write_text((TEMPLATES / name).read_text())
    template = load_template(tmp_path, "gemma3.jinja", "bfcl", tokenizer)
    assert template == (TEMPLATES / "gemma3_tool.jinja").read_text()
    assert load_template(tmp_path, "gemma3.jinja", "gsm8k", tokenizer) == (TEMPLATES / "gemma3.jinja").read_text()
    example = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    }
    rendered = ChatFormat(tokenizer, template).render(example)
    assert '"name": "get_weather"' in rendered.prompt  # the tool list sits in the prompt
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert rendered.completion == f"\n{call}<end_of_turn>\n"  # what the evaluation's hermes parser reads
    with pytest.raises(PtbError, match="missing"):
        load_template(tmp_path, "qwen3.jinja", "gsm8k", tokenizer)


# --- keeping the better of trained and base model ------------------------------------------------------------


@pytest.mark.parametrize(("trained", "base", "kept"), [(0.2, 0.5, "base"), (0.5, 0.5, "trained"), (None, 0.9, "trained")])
def test_keep_better_submits_the_higher_scoring_model(tmp_path, monkeypatch, trained, base, kept):
    from posttrainbench.agents.recipe import compare

    final, work = tmp_path / "final_model", tmp_path / "work"
    final.mkdir()
    work.mkdir()
    (final / "which").write_text("trained")
    scores = {"final_model": trained, "base_model": base}
    monkeypatch.setattr(compare, "run_evaluate", lambda task, path, *args: scores[path.name])

    def make_base(path: Path) -> None:
        path.mkdir()
        (path / "which").write_text("base")

    compare.keep_better(tmp_path, final, make_base, 10, time.monotonic() + 3600, work)
    assert (final / "which").read_text() == kept
    assert not (tmp_path / ".final_model.old").exists()


# --- the adapter -----------------------------------------------------------------------------------------------


def context(tmp_path, model: str, benchmark, gpus: int = 1) -> AgentContext:
    return AgentContext(
        agent=AgentSpec(scaffold="reference"),
        model=get_model(model),
        benchmark=benchmark,
        prompt="(unused by the reference agent)",
        hours=0.25,
        gpus=gpus,
        run_dir=tmp_path,
        home=tmp_path / "home",
        task=tmp_path / "task",
    )


def test_adapter_launches_the_recipe(tmp_path):
    from posttrainbench.agents.reference import prepare

    launch = prepare(context(tmp_path, "qwen3-1.7b-base", get_benchmark("gsm8k"), gpus=2))
    assert launch.argv[:3] == [sys.executable, "-m", "posttrainbench.agents.recipe"]
    args = launch.argv[3:]
    assert args[args.index("--model") + 1] == "Qwen/Qwen3-1.7B-Base"
    assert args[args.index("--benchmark") + 1] == "gsm8k"
    assert args[args.index("--chat-template") + 1] == "qwen3.jinja"
    assert args[args.index("--eval-limit") + 1] == "150"
    assert launch.env["NUM_GPUS"] == "2" and int(launch.env["OMP_NUM_THREADS"]) >= 1

    smol = prepare(context(tmp_path, "smollm2-135m", get_benchmark("humaneval"))).argv
    assert "--chat-template" not in smol  # the demo model brings its own template
    graded = prepare(context(tmp_path, "smollm2-135m", get_benchmark("healthbench"))).argv
    assert "--eval-limit" not in graded  # no grader without the LLM proxy


# --- one real run ----------------------------------------------------------------------------------------------


def hub_cache(root: Path, repo_id: str, model_dir: Path) -> Path:
    """A Hugging Face hub cache holding `model_dir` as `repo_id`, as the harness's model cache is laid out."""
    revision = "0" * 40
    repo = root / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "snapshots").mkdir(parents=True)
    (repo / "snapshots" / revision).symlink_to(model_dir, target_is_directory=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return root


@pytest.mark.slow
def test_recipe_end_to_end_on_a_tiny_model(tiny_model, shared_data, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    task = tmp_path / "task"
    task.mkdir()
    (task / "timer.sh").write_text('#!/bin/bash\necho "Remaining time (hours:minutes): 0:03"\n')
    env = dict(
        os.environ,
        HF_HOME=str(hub_cache(tmp_path / "hf", "ptb-test/tiny", tiny_model)),
        HF_HUB_OFFLINE="1",
        PTB_DATA_DIR=str(shared_data),
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(REPO),
    )
    cmd = [sys.executable, "-m", "posttrainbench.agents.recipe", "--model", "ptb-test/tiny", "--benchmark", "gsm8k",
           "--max-steps", "2", "--max-examples", "48", "--offline"]
    done = subprocess.run(cmd, cwd=task, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "source GSM8K train" in out and "step 2/2 loss" in out and "training done at step 2" in out

    final = task / "final_model"
    files = {p.name for p in final.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"} <= files
    assert not any(name.endswith(".bin") for name in files)
    assert (task / "reference_work" / "adapter" / "adapter_model.safetensors").is_file()

    trained, base = load_file(final / "model.safetensors"), load_file(tiny_model / "model.safetensors")
    assert trained.keys() == base.keys()
    assert any(not torch.equal(trained[k], base[k]) for k in base)
    AutoModelForCausalLM.from_pretrained(final)  # plain transformers, no remote code
    end = AutoTokenizer.from_pretrained(final).convert_tokens_to_ids("<|im_end|>")
    assert end in GenerationConfig.from_pretrained(final).eos_token_id
