import asyncio
import json

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.model import ChatMessageAssistant, ModelName, ModelOutput, ModelUsage
from inspect_ai.scorer import Target
from inspect_ai.solver import TaskState
from inspect_ai.tool import ToolCall

from posttrainbench.evaluation import bfcl
from posttrainbench.evaluation.base import EvalContext
from posttrainbench.specs import get_benchmark, get_model


def context(shared_data, limit=None, tool_call_format="hermes"):
    spec = get_benchmark("bfcl")
    files = {f.name: shared_data / f.mirror for f in spec.data}
    model = get_model("smollm2-135m").model_copy(update={"tool_call_format": tool_call_format})
    return EvalContext(benchmark=spec, base_model=model, limit=limit, generation=spec.generation, data_file=files.__getitem__)


@pytest.fixture(scope="module")
def samples(shared_data):
    return bfcl.load_samples(shared_data / get_benchmark("bfcl").data[0].mirror)


def score(sample, message, fmt="hermes"):
    if isinstance(message, str):
        message = ChatMessageAssistant(content=message)
    state = TaskState(
        model=ModelName("mockllm/model"),
        sample_id=sample.id,
        epoch=1,
        input=sample.input,
        messages=[],
        target=Target(sample.target),
        output=ModelOutput.from_message(message),
        metadata=sample.metadata,
    )
    return asyncio.run(bfcl.function_call(fmt)(state, Target(sample.target)))


def reply(text):
    # With usage given, mockllm skips counting tokens with tiktoken (whose encoding is a download).
    output = ModelOutput.from_content("mockllm/model", text)
    output.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
    return output


def hermes(name, arguments):
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


def python_call(name, arguments):
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"


def test_loader_reads_the_100_items(samples):
    assert len(samples) == get_benchmark("bfcl").count == 100
    assert len({s.id for s in samples}) == 100
    for sample in samples:
        info = bfcl.tool_info(sample.metadata["function"])
        name, _ = bfcl.parse_python_call(sample.target)
        assert info.name == name
        assert "dict" not in json.dumps(info.parameters.model_dump())


def test_schema_types_become_json_schema():
    schema = bfcl.json_schema(
        {"type": "dict", "properties": {"p": {"type": "tuple", "items": {"type": "float"}}, "q": {"type": "any"}}}
    )
    assert schema == {"type": "object", "properties": {"p": {"type": "array", "items": {"type": "number"}}, "q": {"type": "string"}}}


def test_every_ground_truth_as_a_hermes_call_scores_1(samples):
    for sample in samples:
        name, arguments = bfcl.parse_python_call(sample.target)
        result = score(sample, f"I'll call the function.\n{hermes(name, arguments)}")
        assert result.value == 1, (sample.id, result.explanation)
        assert result.metadata == {"outcome": "match"}


def test_every_ground_truth_as_a_parsed_tool_call_scores_1(samples):
    for sample in samples:
        name, arguments = bfcl.parse_python_call(sample.target)
        message = ChatMessageAssistant(content="", tool_calls=[ToolCall(id="1", function=name, arguments=arguments)])
        assert score(sample, message).value == 1, sample.id


def test_gemma_calls_parse_in_both_styles(samples):
    for sample in samples:
        name, arguments = bfcl.parse_python_call(sample.target)
        tool_code = f"```tool_code\n{python_call(name, arguments)}\n```"
        assert score(sample, tool_code, fmt="gemma").value == 1, sample.id
        assert score(sample, hermes(name, arguments), fmt="gemma").value == 1, sample.id
        # tool_code blocks are Gemma's convention only
        assert score(sample, tool_code, fmt="hermes").metadata == {"outcome": "no_call"}


def wrong_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    return list(value) + [list(value)[-1]]


def wrong_type(value):
    if isinstance(value, (bool, int, float)):
        return str(value)
    if isinstance(value, str):
        return [value]
    return json.dumps(list(value))


def perturbations(name, arguments):
    first = next(iter(arguments))
    yield "wrong name", name + "_v2", arguments
    yield "missing argument", name, {k: v for k, v in arguments.items() if k != first}
    yield "extra argument", name, {**arguments, "verbose": True}
    yield "wrong value", name, {**arguments, first: wrong_value(arguments[first])}
    yield "wrong type", name, {**arguments, first: wrong_type(arguments[first])}


def test_every_perturbed_call_scores_0(samples):
    for sample in samples:
        name, arguments = bfcl.parse_python_call(sample.target)
        for kind, bad_name, bad_arguments in perturbations(name, arguments):
            result = score(sample, hermes(bad_name, bad_arguments))
            assert result.value == 0, (sample.id, kind)
            assert result.metadata == {"outcome": "mismatch"}


def test_each_argument_must_match(samples):
    """Beyond the first argument: a wrong value in any position fails the call."""
    for sample in samples:
        name, arguments = bfcl.parse_python_call(sample.target)
        for key in arguments:
            assert score(sample, hermes(name, {**arguments, key: wrong_value(arguments[key])})).value == 0


def by_id(samples, item_id):
    return next(s for s in samples if s.id == item_id)


def test_numbers_compare_numerically_and_booleans_strictly(samples):
    binomial = by_id(samples, "exec_simple_0")  # n=20, k=5, p=0.6
    assert score(binomial, hermes("calc_binomial_probability", {"n": 20.0, "k": 5, "p": 0.6})).value == 1
    assert score(binomial, hermes("calc_binomial_probability", {"n": 20, "k": 5, "p": 0.60000001})).value == 0
    sort = by_id(samples, "exec_simple_78")  # reverse=True
    arguments = bfcl.parse_python_call(sort.target)[1]
    assert score(sort, hermes("sort_array", {**arguments, "reverse": 1})).value == 0


def test_an_omitted_argument_may_be_passed_with_its_declared_default(samples):
    investment = by_id(samples, "exec_simple_86")  # adjust_for_inflation: optional, default true, not in the label
    name, arguments = bfcl.parse_python_call(investment.target)
    assert score(investment, hermes(name, {**arguments, "adjust_for_inflation": True})).value == 1
    assert score(investment, hermes(name, {**arguments, "adjust_for_inflation": False})).value == 0
    booking = by_id(samples, "exec_simple_90")  # discount_code: default null
    name, arguments = bfcl.parse_python_call(booking.target)
    assert score(booking, hermes(name, {**arguments, "discount_code": None})).value == 1
    assert score(booking, hermes(name, {**arguments, "discount_code": "SAVE"})).value == 0


@pytest.mark.parametrize(
    ("output", "outcome"),
    [
        ("The probability is about 0.0013.", "no_call"),
        ("<tool_call>{not json}</tool_call>", "unparsable_call"),
        ("<tool_call>{[1]: 2}</tool_call>", "unparsable_call"),
        ('<tool_call>{"arguments": {"n": 20}}</tool_call>', "unparsable_call"),
        (hermes("calc_binomial_probability", {"n": 20, "k": 5, "p": 0.6}) * 2, "several_calls"),
        ('<think>\n<tool_call>{"name": "x", "arguments": {}}</tool_call>\n</think>\nNo call needed.', "no_call"),
    ],
)
def test_outputs_without_exactly_one_call_score_0(samples, output, outcome):
    result = score(samples[0], output)
    assert (result.value, result.metadata["outcome"]) == (0, outcome)


@pytest.mark.parametrize(
    "output",
    [
        # unterminated block (generation stopped at the closing tag), single quotes, arguments as a JSON string
        '<tool_call>\n{"name": "calc_binomial_probability", "arguments": {"n": 20, "k": 5, "p": 0.6}}',
        "<tool_call>{'name': 'calc_binomial_probability', 'arguments': {'n': 20, 'k': 5, 'p': 0.6}}</tool_call>",
        '<tool_call>{"name": "calc_binomial_probability", "arguments": "{\\"n\\": 20, \\"k\\": 5, \\"p\\": 0.6}"}'
        "</tool_call>",
        '<think>I need n, k and p.</think>\n<tool_call>{"name": "calc_binomial_probability", "parameters": '
        '{"n": 20, "k": 5, "p": 0.6}}</tool_call>',
    ],
)
def test_hermes_variants_parse(samples, output):
    assert score(samples[0], output).value == 1


def test_task_offers_the_function_as_a_tool_and_summarizes(shared_data, tmp_path):
    task = bfcl.build_task(context(shared_data, limit=4))
    targets = {sample.input[0].text: sample.target for sample in task.dataset}
    seen = []

    def model(messages, tools, tool_choice, config):
        seen.append([tool.name for tool in tools])
        if len(seen) == 1:
            return reply("no idea")
        name, arguments = bfcl.parse_python_call(targets[messages[-1].text])
        return reply(hermes(name, arguments))

    [log] = inspect_eval(
        task, model="mockllm/model", model_args={"custom_outputs": model}, log_dir=str(tmp_path), display="none",
        max_samples=1,
    )
    assert log.status == "success"
    assert len(seen) == 4 and all(len(names) == 1 for names in seen)
    assert log.results.scores[0].metrics["accuracy"].value == pytest.approx(0.75)
    assert bfcl.summarize(log) == {"share_match": 0.75, "share_no_call": 0.25}


@pytest.mark.parametrize("template", ["qwen3.jinja", "smollm3.jinja", "gemma3_tool.jinja"])
def test_tool_templates_show_the_function_to_the_model(small_model, samples, template):
    """What the hf backend does with a tool: json_schema_dump(ToolInfo) into apply_chat_template(tools=...)."""
    from inspect_ai.util._json import json_schema_dump
    from transformers import AutoTokenizer

    from posttrainbench.evaluation.chat_templates import TEMPLATES_DIR

    tokenizer = AutoTokenizer.from_pretrained(small_model)
    sample = samples[0]
    tools = [json_schema_dump(bfcl.tool_info(sample.metadata["function"]))]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": sample.input[0].text}], tools=tools, add_generation_prompt=True, tokenize=False,
        chat_template=(TEMPLATES_DIR / template).read_text(),
    )
    assert '"name": "calc_binomial_probability"' in prompt and '"type": "number"' in prompt
    assert "<tool_call>" in prompt


@pytest.mark.slow
def test_end_to_end_on_a_small_model(small_model, tmp_path):
    import torch

    from posttrainbench.evaluation.runner import evaluate

    torch.set_num_threads(1)
    metrics = evaluate(
        small_model, "bfcl", base_model="smollm2-135m", out_dir=tmp_path, limit=2, backend="hf", device="cpu",
        max_tokens=48,
    )
    assert metrics["n_samples"] == 2 and metrics["accuracy"] in (0.0, 0.5, 1.0)
    shares = {k: v for k, v in metrics.items() if k.startswith("share_")}
    assert shares and sum(shares.values()) == pytest.approx(1.0)
