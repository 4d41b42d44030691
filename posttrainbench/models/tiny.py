"""Tiny random models: the architecture and file layout of a real checkpoint at a few MB, for tests and GPU
plumbing where the weights don't matter (they generate noise)."""

import os
import shutil
import tempfile
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.models.cache import make_readable

SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    tie_word_embeddings=True,
    max_position_embeddings=4096,
)

CONFIGS = {
    "qwen3": "Qwen3Config",
    "qwen2": "Qwen2Config",
    "llama": "LlamaConfig",
    "smollm3": "SmolLM3Config",
    "gemma3": "Gemma3TextConfig",
}

SEED = 0


def build_tiny_model(out: Path, *, tokenizer_from: Path, family: str = "qwen3", dtype: str = "float32") -> Path:
    """Writes a seeded random `family` model with the tokenizer (and chat template) of `tokenizer_from` to `out`.
    The same inputs give the same weights, so tests that compare outputs stay stable."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if family not in CONFIGS:
        raise PtbError(f"unknown model family '{family}'; valid: {', '.join(sorted(CONFIGS))}")
    out = Path(out)
    if out.exists():
        raise PtbError(f"{out} already exists; choose an empty path for the tiny model")
    tok = AutoTokenizer.from_pretrained(tokenizer_from)
    special = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if special["pad_token_id"] is None:
        special["pad_token_id"] = special["eos_token_id"]
    config = getattr(transformers, CONFIGS[family])(vocab_size=len(tok), **SHAPE, **special)
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.generation_config = GenerationConfig(**special)
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(build)
        tok.save_pretrained(build)
        make_readable(build)
        os.rename(build, out)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return out
