"""Few-shot base prompting: the examples are clean and correct, the prompt is built as specified, answers are cut
at the next turn, bad --shots are refused, and the few-shot baseline is stored and ranked like the others."""

import json
from pathlib import Path

import pytest
from cli_support import ptb
from inspect_ai import eval as inspect_eval
from inspect_ai.model import ModelOutput, ModelUsage, get_model
from jinja2 import Environment

from posttrainbench.errors import PtbError
from posttrainbench.evaluation import bfcl, fewshot, gsm8k, humaneval
from posttrainbench.evaluation.base import EvalContext
from posttrainbench.evaluation.data import data_file
from posttrainbench.specs import get_benchmark, get_model as get_model_spec

CURATED = ["aime2025", "arenahardwriting", "bfcl", "gpqamain", "healthbench", "humaneval"]


def context(benchmark: str, shots: int | None = None, limit: int | None = 1) -> EvalContext:
    spec = get_benchmark(benchmark)
    return EvalContext(benchmark=spec, base_model=get_model_spec("qwen3-1.7b-base"), limit=limit,
                       generation=fewshot.generation(spec.generation), data_file=lambda n: data_file(spec, n),
                       fewshot=True, shots=shots)


def module_of(benchmark: str):
    import importlib

    return importlib.import_module(f"posttrainbench.evaluation.{get_benchmark(benchmark).module}")


@pytest.mark.parametrize("bench", CURATED)
def test_curated_examples_contain_no_test_item(bench, shared_data):
    from posttrainbench.integrity.contamination import default_index

    assert default_index().scan(fewshot.demos_file(bench).read_bytes()) == []


def test_curated_examples_are_correct():
    for demo in fewshot.load_demos("humaneval"):
        scope: dict = {}
        exec(demo["prompt"] + demo["completion"] + "\n" + demo["test"], scope)  # noqa: S102 - our own examples
        scope["check"](scope[demo["entry_point"]])
    for demo in fewshot.load_demos("bfcl"):
        call = bfcl.parse_python_call(demo["call"])
        assert bfcl.check_call(call, call, demo["function"]) is None
        assert set(demo["function"]["parameters"]["required"]) <= set(call[1])
        assert call[0] == demo["function"]["name"]
    for demo in fewshot.load_demos("gpqamain"):
        assert len(demo["incorrect"]) == 3 and demo["correct"] not in demo["incorrect"]
        assert "ANSWER" not in demo["reasoning"]
    for demo in fewshot.load_demos("aime2025"):
        assert 0 <= int(demo["answer"]) <= 999 and str(int(demo["answer"])) in demo["solution"]
    for demo in fewshot.load_demos("healthbench"):
        assert demo["conversation"][-1]["role"] == "user"


def test_base_template_is_plain_text():
    rendered = Environment().from_string(fewshot.template().text).render(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?\n"},
                  {"role": "assistant", "content": "4"}, {"role": "user", "content": "3+3?"}],
        add_generation_prompt=True,
    )
    assert rendered == "Be brief.\n\nUser: 2+2?\n\nAssistant: 4\n\nUser: 3+3?\n\nAssistant:"


def reply(text: str) -> ModelOutput:
    # With usage given, mockllm skips counting tokens with tiktoken (whose encoding is a download).
    output = ModelOutput.from_content("mockllm/model", text)
    output.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
    return output


def run_mock(benchmark: str, outputs: list[str], log_dir, shots: int | None = None, limit: int = 1):
    ctx = context(benchmark, shots, limit)
    module = module_of(benchmark)
    demos = module.demo_messages(ctx)
    task = fewshot.with_demos(module.build_task(ctx), demos)
    model = get_model("mockllm/model", custom_outputs=[reply(o) for o in outputs], memoize=False)
    (log,) = inspect_eval(task, model=model, limit=limit, display="none", log_dir=str(log_dir), score_display=False)
    assert log.status == "success", log.error
    return demos, log.samples


FIXED_TEXT = {"aime2025": "Remember to put your answer on its own line", "gsm8k": "\n\nReasoning:",
              "gpqamain": "Think step by step before answering.", "humaneval": "fully implement",
              "bfcl": "Answer with exactly one call"}


@pytest.mark.parametrize("bench", ["aime2025", "gpqamain", "humaneval", "bfcl", "gsm8k"])
def test_examples_come_first_in_the_task_format(bench, shared_data, tmp_path):
    demos, (sample,) = run_mock(bench, ["whatever"], shots=2, log_dir=tmp_path)
    assert len(demos) == 2
    messages = sample.messages
    roles = [m.role for m in messages]
    assert roles == ["user", "assistant"] * 3, roles  # two examples, then the item and the answer
    example, item = messages[0].text, messages[4].text
    # the example's question is dressed exactly like the item's
    assert example.splitlines()[0] == item.splitlines()[0]
    assert example != item and FIXED_TEXT[bench] in example and FIXED_TEXT[bench] in item
    if bench == "gpqamain":
        assert messages[1].text.splitlines()[-1] in {f"ANSWER: {x}" for x in "ABCD"}
        assert "D) " in example and "D) " in item
    if bench == "bfcl":
        assert '"parameters"' in item and "<tool_call>" in messages[1].text
        assert not sample.output.message.tool_calls
    if bench == "gsm8k":
        assert not any(m.role == "system" for m in messages)  # the examples replace the 10-shot system message
        train = gsm8k.fewshot_samples(gsm8k.load_samples(data_file(get_benchmark("gsm8k"), "train")))
        assert messages[1].text.endswith(f"ANSWER: {train[0].target}")


def test_answers_are_cut_where_the_model_starts_the_next_turn(shared_data, tmp_path):
    rambling = "Half of 36 is 18.\n\nANSWER: 18\n\nUser: Tom has 7 apples...\n\nAssistant: ANSWER: 7"
    _, (sample,) = run_mock("gsm8k", [rambling], log_dir=tmp_path)
    assert sample.output.completion == "Half of 36 is 18.\n\nANSWER: 18"
    assert sample.messages[-1].text == sample.output.completion
    assert sample.scores["numeric_answer"].answer == "18"


def test_bfcl_call_written_as_text_is_scored(shared_data, tmp_path):
    rows = bfcl.load_samples(data_file(get_benchmark("bfcl"), "test"))
    name, arguments = bfcl.parse_python_call(rows[0].target)
    call = f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>\nUser: thanks'
    _, (sample,) = run_mock("bfcl", [call], log_dir=tmp_path)
    assert sample.scores["function_call"].value == 1


def test_shots_choose_a_prefix_and_bad_counts_are_refused(shared_data):
    def texts(examples):
        return [[m.text for m in example] for example in examples]

    everything = humaneval.demo_messages(context("humaneval"))
    assert texts(humaneval.demo_messages(context("humaneval", shots=2))) == texts(everything[:2])
    with pytest.raises(PtbError, match=f"humaneval has {len(everything)} few-shot examples"):
        humaneval.demo_messages(context("humaneval", shots=len(everything) + 1))
    with pytest.raises(PtbError, match="at least 1"):
        fewshot.check_shots("gsm8k", 0)
    assert len(gsm8k.demo_messages(context("gsm8k", shots=25))) == 25


def test_graded_benchmarks_have_examples():
    from posttrainbench.evaluation import arenahardwriting, healthbench

    for example in arenahardwriting.demo_messages(context("arenahardwriting")):
        assert [m.role for m in example] == ["user", "assistant"]
    examples = healthbench.demo_messages(context("healthbench"))
    assert all(e[-1].role == "assistant" and e[-2].role == "user" for e in examples)
    assert any(len(e) > 2 for e in examples)  # a multi-turn conversation among them


def test_cli_refuses_bad_shot_requests(tmp_path, tiny_model):
    cases = [
        (["eval", str(tiny_model), "--benchmark", "gsm8k", "--base-model", "smollm2-135m", "--shots", "2"],
         "--shots applies to few-shot evaluation only"),
        (["eval", str(tiny_model), "--benchmark", "humaneval", "--base-model", "smollm2-135m", "--fewshot",
          "--shots", "99"], "few-shot examples; --shots 99 asks for more"),
        (["baseline", "fewshot", "--model", "smollm2-135m", "--benchmark", "gsm8k", "--shots", "0"],
         "--shots must be at least 1"),
        (["baseline", "zeroshot", "--model", "smollm2-135m", "--benchmark", "gsm8k", "--shots", "3"],
         "--shots applies to the fewshot baseline only"),
    ]
    for args, message in cases:
        result = ptb(*args)
        assert result.returncode != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.slow
def test_fewshot_baseline_is_stored_and_ranked(tmp_path, small_model):
    from posttrainbench.executors.baseline import run_baseline
    from posttrainbench.scoring.leaderboard import leaderboard
    from posttrainbench.store import Store

    store = Store(tmp_path / "store.sqlite")
    row = run_baseline(store, "fewshot", "smollm2-135m", "humaneval", limit=2, max_tokens=48, shots=2,
                       log=lambda _: None)
    assert (row.kind, row.agent, row.status, row.score_source) == ("baseline", "base-fewshot", "done", "final")
    assert store.metrics(row.id)["final"]["n_samples"] == 2
    metrics = json.loads((Path(row.run_dir) / "results" / "final" / "metrics.json").read_text())
    assert metrics["prompting"] == {"mode": "fewshot", "shots": 2, "stop": fewshot.STOP,
                                    "shots_source": "posttrainbench/evaluation/fewshot/humaneval.yaml"}
    assert metrics["generation"]["chat_template"] == "base.jinja"
    assert (metrics["generation"]["temperature"], metrics["generation"]["top_k"]) == (0.6, 20)
    log_file = next((Path(row.run_dir) / "results" / "final" / "logs").glob("*.json"))
    prompt = json.loads(log_file.read_text())["samples"][0]["messages"][0]["content"]
    assert prompt.startswith(humaneval.INSTRUCTION)
    # --limit makes it a smoke test: an entry of its own, shown apart
    entry = leaderboard(store, bootstrap=0).entry("baseline:base-fewshot+limit=2+max_tokens=48")
    assert entry.benchmarks["humaneval"].value == pytest.approx(row.score)


def test_stop_strings_are_built_once_per_tokenizer(small_model, monkeypatch):
    import transformers.generation
    from transformers import AutoTokenizer

    from posttrainbench.evaluation.stop_strings import SharedStopStrings, share_stop_strings

    monkeypatch.setattr(transformers.generation, "StopStringCriteria", transformers.generation.StopStringCriteria)
    share_stop_strings()
    tok = AutoTokenizer.from_pretrained(small_model)
    from transformers.generation import StopStringCriteria  # what inspect's provider does in each call

    first, again = StopStringCriteria(tok, [fewshot.STOP]), StopStringCriteria(tok, [fewshot.STOP])
    assert first is again and isinstance(first, SharedStopStrings)
    assert StopStringCriteria(tok, ["\nQ:"]) is not first
    ids = tok(["Sure.\nUser:", "Sure, and"], return_tensors="pt", padding=True)["input_ids"]
    assert first(ids, None).tolist() == [True, False]
