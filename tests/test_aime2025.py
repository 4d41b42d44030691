import asyncio
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.model import ModelName, ModelOutput, ModelUsage
from inspect_ai.scorer import Target
from inspect_ai.solver import TaskState

from posttrainbench.evaluation import aime2025
from posttrainbench.evaluation.base import EvalContext
from posttrainbench.evaluation.extract import extract_integer
from posttrainbench import paths
from posttrainbench.specs import get_benchmark, get_model


def context(shared_data, limit=None):
    spec = get_benchmark("aime2025")
    files = {f.name: shared_data / f.mirror for f in spec.data}
    return EvalContext(
        benchmark=spec, base_model=get_model("smollm2-135m"), limit=limit, generation=spec.generation,
        data_file=files.__getitem__,
    )


@pytest.fixture(scope="module")
def samples(shared_data):
    return aime2025.load_samples(shared_data / get_benchmark("aime2025").data[0].mirror)


def reply(text):
    # With usage given, mockllm skips counting tokens with tiktoken (whose encoding is a download).
    output = ModelOutput.from_content("mockllm/model", text)
    output.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
    return output


def test_loader_reads_the_30_problems(samples):
    assert len(samples) == get_benchmark("aime2025").count == 30
    assert [s.id for s in samples] == list(range(1, 31))
    assert all(0 <= int(s.target) <= 999 for s in samples)
    assert samples[0].target == "70"


def test_loader_reads_the_hub_layout_too(tmp_path):
    hub = tmp_path / "test.jsonl"
    hub.write_text('{"problem": "Find 7*10.", "answer": "70", "id": "0"}\n{"problem": "Find 1+1.", "answer": 2, "id": "1"}\n')
    assert [(s.input, s.target) for s in aime2025.load_samples(hub)] == [("Find 7*10.", "70"), ("Find 1+1.", "2")]


TRICKY = [
    ("Adding up, 40 + 30 = 70.\nANSWER: 70", 70),
    ("ANSWER: 070", 70),
    ("ANSWER: 1,234", 1234),
    ("ANSWER: $\\boxed{588}$", 588),
    ("**ANSWER:** 16", 16),
    ("- **Answer**: 117", 117),
    ("Final Answer: 279.", 279),
    ("ANSWER: 70.0", 70),
    ("ANSWER: x = 504", 504),
    ("ANSWER: 60^\\circ", 60),
    ("so the area is \\boxed{821}.", 821),
    ("Thus\n$$\n\\boxed{\\text{77}}\n$$\n", 77),
    ("The answer is 62.", 62),
    ("ANSWER: 81\n\nThis matches the count of valid grids.", 81),
    ("ANSWER: 259 (mod 1000)", 259),
    ("<think>Maybe ANSWER: 5.</think>\nANSWER: 510", 510),
    ("</think>\n\nThe total is \\boxed{204}", 204),
    ("We have the answer: first compute N.\n... so \\boxed{60}", 60),
    ("ANSWER: 12\nWait, recheck.\nANSWER: 13", 13),
    # no integer answer: None, never a number pulled out of a fraction or a truncated reasoning
    ("ANSWER: \\frac{7}{2}", None),
    ("ANSWER: 7/2", None),
    ("ANSWER: 70.5", None),
    ("<think>ANSWER: 70 ... still thinking", None),
    ('The last line should be "ANSWER: $ANSWER".', None),
    ("I cannot solve this.", None),
    ("", None),
]


@pytest.mark.parametrize(("completion", "expected"), TRICKY)
def test_extraction(completion, expected):
    assert extract_integer(completion) == expected


def score(scorer, sample, completion):
    state = TaskState(
        model=ModelName("mockllm/model"), sample_id=sample.id, epoch=1, input=sample.input, messages=[],
        target=Target(sample.target), output=ModelOutput.from_content("mockllm/model", completion),
    )
    return asyncio.run(scorer(state, Target(sample.target)))


def test_task_prompts_for_the_answer_line_and_scores(shared_data, tmp_path):
    task = aime2025.build_task(context(shared_data, limit=3))
    answers = {s.input: s.target for s in task.dataset}
    prompts = []

    def model(messages, tools, tool_choice, config):
        prompt = messages[-1].text
        prompts.append(prompt)
        answer = next(a for problem, a in answers.items() if problem in prompt)
        return reply(f"Work.\nANSWER: {answer}" if len(prompts) < 3 else "ANSWER: 1000")

    [log] = inspect_eval(
        task, model="mockllm/model", model_args={"custom_outputs": model}, log_dir=str(tmp_path), display="none",
        max_samples=1,
    )
    assert log.status == "success"
    assert all('"ANSWER: $ANSWER"' in p for p in prompts)
    assert log.results.scores[0].metrics["accuracy"].value == pytest.approx(2 / 3)
    assert [s.scores["integer_answer"].answer for s in log.samples].count("1000") == 1


def inspect_evals_aime_scorer():
    """inspect_evals' own AIME scorer (aime_common.py imports only inspect_ai), from the installed package or else
    from its wheel on PyPI, cached."""
    spec = importlib.util.find_spec("inspect_evals")
    source = Path(spec.submodule_search_locations[0]) / "utils" / "aime_common.py" if spec else None
    if source is None or not source.is_file():
        source = paths.cache_dir() / "inspect_evals" / "aime_common.py"
        if not source.is_file():
            wheels = source.parent / "wheel"
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), "inspect-evals==0.28.0"],
                capture_output=True,
            )
            if result.returncode != 0:
                pytest.skip("inspect-evals is not installed and its wheel cannot be downloaded")
            with zipfile.ZipFile(next(wheels.glob("*.whl"))) as wheel:
                source.write_bytes(wheel.read("inspect_evals/utils/aime_common.py"))
    module_spec = importlib.util.spec_from_file_location("inspect_evals_aime_common", source)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.aime_scorer()


# Completion styles over every real answer. Ours reads the requested "ANSWER:" line wherever it stands;
# inspect_evals reads only the last line, so the last two styles are where the scorers part (by design).
STYLES = {
    "answer line": lambda a, w: f"Step 1. Step 2.\nANSWER: {a}",
    "leading zeros": lambda a, w: f"Done.\nANSWER: {int(a):03d}",
    "boxed last line": lambda a, w: f"Therefore\n\\boxed{{{a}}}",
    "display math": lambda a, w: f"Therefore\n$$\n\\boxed{{{a}}}\n$$",
    "sentence": lambda a, w: f"So the answer is {a}.",
    "think then answer": lambda a, w: f"<think>ANSWER: {w}</think>\nANSWER: {a}",
    "wrong answer": lambda a, w: f"Hmm.\nANSWER: {w}",
    "fraction": lambda a, w: f"ANSWER: \\frac{{{a}}}{{7}}",
    "no answer": lambda a, w: "I could not finish.",
    "answer then remark": lambda a, w: f"ANSWER: {a}\n\nI double-checked the arithmetic.",
    "answer with note": lambda a, w: f"ANSWER: {a} (mod 1000)",
}
BY_DESIGN = {"answer then remark", "answer with note"}


def test_agreement_with_inspect_evals(samples):
    reference = inspect_evals_aime_scorer()
    ours = aime2025.integer_answer()
    disagreements = {}
    for style, render in STYLES.items():
        for sample in samples:
            completion = render(sample.target, str((int(sample.target) + 1) % 1000))
            mine, theirs = (score(s, sample, completion).value for s in (ours, reference))
            if mine != theirs:
                disagreements.setdefault(style, []).append((sample.id, mine, theirs))
    total = len(STYLES) * len(samples)
    agreed = total - sum(map(len, disagreements.values()))
    print(f"agreement with inspect_evals aime_scorer: {agreed}/{total} = {agreed / total:.3f}")
    assert set(disagreements) <= BY_DESIGN, disagreements
    assert all(mine == "C" for cases in disagreements.values() for _, mine, _ in cases)


@pytest.mark.slow
def test_end_to_end_on_a_small_model(small_model, tmp_path):
    import torch
    from inspect_ai.log import read_eval_log

    from posttrainbench.evaluation.runner import evaluate

    torch.set_num_threads(1)
    metrics = evaluate(
        small_model, "aime2025", base_model="smollm2-135m", out_dir=tmp_path, limit=2, backend="hf", device="cpu",
        max_tokens=32,
    )
    assert metrics["n_samples"] == 2 and metrics["accuracy"] in (0.0, 0.5, 1.0)
    assert metrics["generation"]["max_tokens"] == 32 and metrics["generation"]["temperature"] == 0.6
    [log_file] = (tmp_path / "logs").glob("*.json")
    log = read_eval_log(log_file)
    assert all(s.output.completion.strip() and "integer_answer" in s.scores for s in log.samples)
