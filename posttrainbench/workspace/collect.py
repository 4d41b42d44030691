"""Stage 3: take the agent's final_model and make a vetted copy: safetensors, config and tokenizer only.

The agent controls everything in its folder, so nothing executable or pickled is carried over and the
checkpoint's generation_config.json is dropped (sampling is pinned per benchmark)."""

import json
import shutil
from pathlib import Path

from pydantic import BaseModel
from safetensors import safe_open

from posttrainbench.workspace.hashing import sha256_file

CONFIG = "config.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "preprocessor_config.json",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class CollectResult(BaseModel):
    status: str  # "ok", "missing" or "rejected"
    reason: str | None = None
    files: dict[str, str] = {}
    tokenizer_from_base: bool = False


class Rejected(Exception):
    pass


def _check(src: Path) -> list[Path]:
    if not src.is_dir():
        raise FileNotFoundError
    for path in src.rglob("*"):
        if path.is_symlink():
            raise Rejected(f"final_model contains a symbolic link: {path.relative_to(src)}")
    weights = sorted(src.glob("*.safetensors"))
    pickled = [p.name for p in src.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    if not weights:
        detail = f" (found pickled weights {', '.join(pickled[:3])}; save with safe_serialization)" if pickled else ""
        raise Rejected(f"final_model has no .safetensors weights{detail}")
    config_path = src / CONFIG
    if not config_path.is_file():
        raise Rejected("final_model has no config.json")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise Rejected(f"final_model/config.json is not valid JSON: {exc}") from None
    if "auto_map" in config:
        raise Rejected("final_model needs remote code (config.json has auto_map)")
    for path in weights:
        try:
            with safe_open(path, "pt") as fh:
                fh.keys()
        except Exception as exc:  # safetensors raises several error types for corrupt headers
            raise Rejected(f"{path.name} is not a readable safetensors file: {exc}") from None
    index = src / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        missing = sorted(shards - {p.name for p in weights})
        if missing:
            raise Rejected(f"final_model is missing shards: {', '.join(missing)}")
        weights.append(index)
    return weights


def collect(submitted: Path, dest: Path, base_model: Path) -> CollectResult:
    try:
        weights = _check(submitted)
    except FileNotFoundError:
        return CollectResult(status="missing", reason="the agent left no final_model folder")
    except Rejected as exc:
        return CollectResult(status="rejected", reason=str(exc))

    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in [*weights, submitted / CONFIG]:
        shutil.copyfile(path, tmp / path.name)
    tokenizer = [name for name in TOKENIZER_FILES if (submitted / name).is_file()]
    from_base = not any(name in tokenizer for name in ("tokenizer.json", "tokenizer.model", "vocab.json"))
    source = base_model if from_base else submitted
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, tmp / name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    files = {p.name: sha256_file(p) for p in sorted(dest.iterdir())}
    return CollectResult(status="ok", files=files, tokenizer_from_base=from_base)
