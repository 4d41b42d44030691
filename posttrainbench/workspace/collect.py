"""Stage 3: take the agent's final_model and make a vetted copy: safetensors, config and tokenizer only.

The agent controls everything in its folder, so nothing executable or pickled is carried over and the
checkpoint's generation_config.json is dropped (sampling is pinned per benchmark). The copy goes through the
untrusted-files boundary: no link is followed (final_model itself included), holes stay holes, sizes are capped;
every check then reads the harness's copy, not the agent's folder."""

import shutil
import stat
from pathlib import Path

from pydantic import BaseModel
from safetensors import safe_open

from posttrainbench import untrusted
from posttrainbench.workspace.hashing import sha256_file

CONFIG = "config.json"
INDEX = "model.safetensors.index.json"
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
# final_model may also hold the agent's checkpoints and logs: only the files above are copied, but the whole
# folder is walked (no link anywhere in it) within these caps.
MODEL_CAPS = untrusted.Caps(files=20_000, depth=16, bytes=256 << 30)


class CollectResult(BaseModel):
    status: str  # "ok", "missing" or "rejected"
    reason: str | None = None
    files: dict[str, str] = {}
    tokenizer_from_base: bool = False


class Rejected(Exception):
    pass


def _wanted(entry: untrusted.Entry) -> bool:
    name = entry.rel
    return entry.kind == "file" and entry.depth == 1 and (
        name.endswith(".safetensors") or name in (CONFIG, INDEX, *TOKENIZER_FILES))


def _copy(root: Path, rel: str, tmp: Path) -> list[str]:
    """Copy the wanted files of the agent's folder root/rel into `tmp`; returns the names of pickled files left
    behind."""
    try:
        mode = untrusted.lstat(root, rel).st_mode
    except untrusted.Refused as exc:
        raise Rejected(str(exc)) from None
    if stat.S_ISLNK(mode):
        raise Rejected("final_model is a symbolic link")
    if not stat.S_ISDIR(mode):
        raise FileNotFoundError
    pickled = []

    def select(entry: untrusted.Entry) -> bool:
        if entry.rel.endswith(PICKLE_SUFFIXES):
            pickled.append(untrusted.shown(entry.rel))
        return _wanted(entry)

    try:
        untrusted.copy_tree(root, rel, tmp, caps=MODEL_CAPS, select=select)
    except untrusted.Refused as exc:
        raise Rejected(str(exc).replace(untrusted.shown(rel), "final_model", 1)) from None
    return pickled


def _check(tmp: Path, pickled: list[str]) -> None:
    weights = sorted(p.name for p in tmp.iterdir() if p.name.endswith(".safetensors"))
    if not weights:
        detail = f" (found pickled weights {', '.join(pickled[:3])}; save with safe_serialization)" if pickled else ""
        raise Rejected(f"final_model has no .safetensors weights{detail}")
    if not (tmp / CONFIG).is_file():
        raise Rejected("final_model has no config.json")
    try:
        config = untrusted.read_json(tmp, CONFIG)
        index = untrusted.read_json(tmp, INDEX) if (tmp / INDEX).is_file() else None
    except untrusted.Refused as exc:
        raise Rejected(f"final_model/{exc}") from None
    if not isinstance(config, dict):
        raise Rejected("final_model/config.json is not a JSON object")
    if "auto_map" in config:
        raise Rejected("final_model needs remote code (config.json has auto_map)")
    for name in weights:
        try:
            with safe_open(tmp / name, "pt") as fh:
                fh.keys()
        except Exception as exc:  # safetensors raises several error types for corrupt headers
            raise Rejected(f"{untrusted.shown(name)} is not a readable safetensors file: "
                           f"{untrusted.clean_text(exc, limit=300)}") from None
    if index is not None:
        weight_map = index.get("weight_map", {}) if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):
            raise Rejected(f"final_model/{INDEX} has no weight_map object")
        missing = sorted({str(v) for v in weight_map.values()} - set(weights))
        if missing:
            raise Rejected(f"final_model is missing shards: {untrusted.shown(', '.join(missing))}")


def collect(submitted: Path, dest: Path, base_model: Path, *, root: Path | None = None) -> CollectResult:
    """Vet `submitted` (the agent's task/final_model) into `dest`; `base_model` supplies a missing tokenizer.

    `root` is the harness's folder that `submitted` lies in (default: its parent): no link is followed from there
    down, so a folder the agent swaps for a link after it was named is refused rather than followed."""
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    root = root or submitted.parent
    try:
        pickled = _copy(root, str(submitted.relative_to(root)), tmp)
        _check(tmp, pickled)
    except FileNotFoundError:
        shutil.rmtree(tmp, ignore_errors=True)
        return CollectResult(status="missing", reason="the agent left no final_model folder")
    except Rejected as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return CollectResult(status="rejected", reason=str(exc))
    from_base = not any((tmp / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "vocab.json"))
    if from_base:
        for name in TOKENIZER_FILES:
            (tmp / name).unlink(missing_ok=True)
            if (base_model / name).is_file():
                shutil.copyfile(base_model / name, tmp / name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    files = {p.name: sha256_file(p) for p in sorted(dest.iterdir())}
    return CollectResult(status="ok", files=files, tokenizer_from_base=from_base)
