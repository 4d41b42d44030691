"""The harness's evaluations: progress on screen with its log path, and inspect logs that say whose they are."""

import json

import pytest

from posttrainbench.evaluation.progress import PREFIX, ProgressReporter


def test_progress_lines_become_items_rate_and_time_left():
    said = []
    reporter = ProgressReporter("the agent's model", said.append, every_s=0.0)
    assert reporter.feed(PREFIX + json.dumps({"done": 0, "total": 4, "output_tokens": 0}))
    assert reporter.feed(PREFIX + json.dumps({"done": 1, "total": 4, "output_tokens": 50}))
    assert reporter.feed(PREFIX + json.dumps({"done": 4, "total": 4, "output_tokens": 200}))
    assert not reporter.feed("plain output\n") and not reporter.feed(PREFIX + "{broken")
    assert said[0].startswith("evaluating the agent's model: 1/4 items, ") and "tok/s, about " in said[0]
    assert said[1].startswith("evaluating the agent's model: 4/4 items") and "left" not in said[1]


def test_a_quiet_batch_still_shows_it_is_alive():
    said = []
    reporter = ProgressReporter("the base model", said.append, quiet_s=0.0)
    reporter.heartbeat()
    assert said == []  # not started yet
    reporter.feed(PREFIX + json.dumps({"done": 0, "total": 20, "output_tokens": 0}))
    reporter.heartbeat()
    assert said[0].startswith("evaluating the base model: 0/20 items after 0:00:0")


@pytest.mark.slow
def test_harness_evaluation_shows_progress_and_labels_its_inspect_log(small_model, tmp_path, shared_data):
    from posttrainbench.executors.evaluate import run_evaluation

    said = []
    metrics = run_evaluation(small_model, "gsm8k", base_model="smollm2-135m", out_dir=tmp_path / "out", limit=2,
                             max_tokens=8, label="the agent's model", log=said.append,
                             metadata={"label": "final", "run_id": "20260101-000000-abcdef", "agent": "reference"})
    assert metrics["n_samples"] == 2
    assert said[0] == f"evaluating the agent's model on gsm8k; its log: {tmp_path / 'out' / 'evaluate.log'}"
    assert any(line.startswith("evaluating the agent's model: 2/2 items") for line in said), said
    assert "PTB-PROGRESS" not in (tmp_path / "out" / "evaluate.log").read_text()
    [log] = (tmp_path / "out" / "logs").glob("*.json")
    header = json.loads(log.read_text())["eval"]
    assert header["metadata"]["run_id"] == "20260101-000000-abcdef" and header["metadata"]["label"] == "final"
    assert header["metadata"]["model_path"] == str(small_model.resolve()) and header["metadata"]["agent"] == "reference"
    assert header["model"] == "hf/final-20260101-000000-abcdef" and "final" in header["tags"]
