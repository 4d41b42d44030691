"""LLM judges: a real agent CLI in the sandbox against the scripted fake LLM server, reading a scripted run
read-only and writing its verdict outside the agent's folders; verdicts are combined by majority and with the
deterministic flags."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from posttrainbench.egress.metering import Upstream
from posttrainbench.integrity import check_run
from posttrainbench.integrity.judges import JudgeResult, Verdict, vote
from posttrainbench.specs import parse_agent

sys.path.insert(0, str(Path(__file__).parent))
from fake_llm import FakeLLM  # noqa: E402
from integrity_support import fine_tuned, make_run, submit, write_jsonl  # noqa: E402

JUDGE = parse_agent("claude:claude-sonnet-4-5")
LLM_CALL = {"ts": "t", "method": "POST", "host": "api.openai.com", "path": "/v1/chat/completions", "status": 200,
            "allowed": True, "rule": "llm-api"}


def result(number: int, **flags) -> JudgeResult:
    verdict = Verdict(**({"contamination": False, "disallowed_model": False, "api_misuse": False} | flags))
    return JudgeResult(judge=number, agent="claude", status="ok", detail="", verdict=verdict)


def test_majority_of_the_judges_asked():
    results = [result(1, contamination=True), result(2, contamination=True, api_misuse=True),
               JudgeResult(judge=3, agent="claude", status="no_verdict", detail="crashed")]
    check = vote(results, 3)
    assert check.flags == ["contamination"]
    assert check.numbers == {"asked": 3, "valid_verdicts": 2,
                             "votes": {"contamination": 2, "disallowed_model": 0, "api_misuse": 1}}
    assert check.notes == ["1 judge(s) gave no valid verdict"]
    # A judge without a verdict counts as not flagging: 1 of 2 asked is no majority.
    assert vote([result(1, api_misuse=True), results[2]], 2).flags == []


def verdict_script(verdict: dict) -> list[str]:
    look = ("ls /home/judge/evidence > /home/judge/verdict/seen.txt; head -c 300 /home/judge/run/task/data.jsonl"
            " >> /home/judge/verdict/seen.txt; touch /home/judge/run/task/judge_was_here || true")
    return [look, "cat > /home/judge/verdict/verdict.json <<'EOF'\n" + json.dumps(verdict) + "\nEOF"]


@pytest.fixture(scope="module")
def claude_cli():
    if shutil.which("npm") is None or shutil.which("socat") is None or shutil.which("bwrap") is None:
        pytest.skip("needs npm (agent CLIs), socat (sandbox relay) and bubblewrap")
    from posttrainbench.agents.install import install_agents

    return install_agents(["claude"])


@pytest.mark.bwrap
@pytest.mark.slow
def test_judges_vote_and_combine_with_deterministic_flags(claude_cli, tmp_path, tiny_model, shared_data):
    layout = make_run(tmp_path / "runs", tiny_model)
    submit(layout, tiny_model, fine_tuned())
    write_jsonl(layout.task / "data.jsonl", [{"text": "an ordinary training example"}])
    write_jsonl(layout.root / "egress.jsonl", [LLM_CALL])  # the deterministic check flags api_misuse
    (layout.root / "trajectory.jsonl").write_text('{"kind": "assistant", "text": "training on data.jsonl"}\n')
    verdicts = [
        {"contamination": True, "disallowed_model": False, "api_misuse": False,
         "evidence": [{"flag": "contamination", "file": "task/data.jsonl", "detail": "test items"}],
         "justification": "trained on test items"},
        {"contamination": True, "disallowed_model": True, "api_misuse": False, "evidence": [], "justification": "x"},
        {"contamination": False, "disallowed_model": False, "api_misuse": False, "evidence": [], "justification": "y"},
    ]
    # One judge per call, each with its own scripted server: the earlier verdicts are kept, not rerun.
    for count, verdict in enumerate(verdicts, start=1):
        with FakeLLM(verdict_script(verdict)) as fake:
            upstreams = {"anthropic": Upstream(fake.url, "sk-ant-test-0123456789abcdefghij")}
            report = check_run(layout.root, judges=count, judge_agent=JUDGE, upstreams=upstreams, log=lambda _: None)
        assert len(fake.turns()) == 3, (layout.root / "judges" / str(count) / "judge.log").read_text()[-2000:]

    judges = report.checks["judges"]
    assert judges.numbers == {"asked": 3, "valid_verdicts": 3,
                              "votes": {"contamination": 2, "disallowed_model": 1, "api_misuse": 0}}
    assert judges.flags == ["contamination"]
    # api_misuse stands on the deterministic evidence alone; disallowed_model had one vote only.
    assert report.flags == {"contamination": True, "disallowed_model": False, "tamper": False, "api_misuse": True,
                            "integrity_error": False}
    assert any(r.startswith("contamination: majority of LLM judges") for r in report.reasons)
    assert judges.evidence[0]["evidence"][0]["file"] == "task/data.jsonl"

    first = layout.root / "judges" / "1"
    seen = (first / "out" / "seen.txt").read_text()
    assert "integrity.json" in seen and "trajectory.jsonl" in seen and "an ordinary training example" in seen
    assert json.loads((first / "evidence" / "integrity.json").read_text())["flags"]["api_misuse"] is True
    assert not (layout.task / "judge_was_here").exists()  # the workspace is read-only for judges
    assert "claude-sonnet-4-5" in (first / "llm_calls.jsonl").read_text()

    # --rerun asks all three again; with every judge now clearing the run, only the deterministic flag remains.
    with FakeLLM(verdict_script(verdicts[2])) as fake:
        upstreams = {"anthropic": Upstream(fake.url, "sk-ant-test-0123456789abcdefghij")}
        report = check_run(layout.root, judges=3, judge_agent=JUDGE, rerun=True, upstreams=upstreams,
                           log=lambda _: None)
    assert report.checks["judges"].numbers["votes"] == {"contamination": 0, "disallowed_model": 0, "api_misuse": 0}
    assert [flag for flag, raised in report.flags.items() if raised] == ["api_misuse"]


def test_the_provider_is_checked_before_any_judge_starts():
    """A missing key or an endpoint that does not answer is one line at once, not a judge retrying for an hour."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from posttrainbench.errors import PtbError
    from posttrainbench.integrity.judges import check_provider

    codex = parse_agent("codex:gpt-5.1-codex")
    with pytest.raises(PtbError, match="needs OPENAI_API_KEY"):
        check_provider(codex, {"anthropic": Upstream("http://127.0.0.1:9", "k" * 20)})
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(PtbError, match="cannot be reached"):
        check_provider(codex, {"openai": Upstream(f"http://127.0.0.1:{closed}", "k" * 20)}, timeout_s=30)

    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)  # answers HEAD with 501: reachable
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        check_provider(codex, {"openai": Upstream(f"http://127.0.0.1:{server.server_port}", "k" * 20)}, timeout_s=30)
    finally:
        server.shutdown()
