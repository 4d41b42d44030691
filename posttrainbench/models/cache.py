"""The local model cache, laid out as a Hugging Face hub cache so that a sandbox with HF_HOME=hf_home() and
HF_HUB_OFFLINE=1 loads a model by its hub id.

    <hf_home>/hub/models--ORG--NAME/snapshots/<revision>/...   the model folder
    <hf_home>/hub/models--ORG--NAME/refs/main                   <revision>, so `from_pretrained("ORG/NAME")` finds it
    <hf_home>/.ptb-tmp/                                          staging; nothing here is ever a model
    <hf_home>/.ptb-locks/                                        one lock per model id

A snapshot folder appears only through a single rename of a finished folder, so its existence means it is complete.
"""

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from posttrainbench.paths import cache_dir
from posttrainbench.specs.models import HubSource, ModelSpec


def hf_home() -> Path:
    return cache_dir() / "hf"


def hub_dir() -> Path:
    return hf_home() / "hub"


def repo_dir(spec: ModelSpec) -> Path:
    return hub_dir() / ("models--" + spec.hf_id.replace("/", "--"))


def revision(spec: ModelSpec) -> str:
    """The snapshot folder name. Hub models use their pinned commit. A GGUF-derived model has no hub commit whose
    content it matches (its weights went through quantization and back), yet the hub cache only resolves 40-hex
    folder names; hashing the GGUF sha256 and dtype gives a name that is the same on every machine and changes
    whenever the weights would."""
    if isinstance(spec.source, HubSource):
        return spec.source.revision
    return hashlib.sha256(f"ptb-gguf:{spec.source.sha256}:{spec.source.dtype}".encode()).hexdigest()[:40]


def snapshot_dir(spec: ModelSpec) -> Path:
    return repo_dir(spec) / "snapshots" / revision(spec)


def local_path(spec: ModelSpec) -> Path | None:
    path = snapshot_dir(spec)
    return path if path.is_dir() else None


def point_main_at(spec: ModelSpec) -> None:
    ref = repo_dir(spec) / "refs" / "main"
    if ref.is_file() and ref.read_text() == revision(spec):
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f".main.{os.getpid()}")
    tmp.write_text(revision(spec))
    os.replace(tmp, ref)


@contextmanager
def locked(spec: ModelSpec) -> Iterator[None]:
    """Serializes fetches of one model across processes: test sessions of several people share one cache."""
    locks = hf_home() / ".ptb-locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(locks / f"{spec.id}.lock"):
        yield


def staging_dir(spec: ModelSpec) -> Path:
    """A per-model scratch folder on the cache's file system, so the final move is a rename."""
    path = hf_home() / ".ptb-tmp" / f"{spec.id}-{revision(spec)}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_readable(tree: Path) -> None:
    """safetensors writes its files 0600; the sandboxed agent may run under another uid and must read them."""
    for path in [tree, *tree.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))


def publish_folder(spec: ModelSpec, built: Path) -> Path:
    make_readable(built)
    target = snapshot_dir(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(built, target)
    return target


def publish_hub_repo(spec: ModelSpec, staged_repo: Path) -> Path:
    """Moves a finished hub download (blobs, tree listing, snapshot of symlinks into ../../blobs) from a staging
    cache into the real one. Blobs go first, the snapshot folder last, so a crash in between leaves only unused
    blobs behind."""
    staged_snapshot = staged_repo / "snapshots" / revision(spec)
    make_readable(staged_repo)
    for path in sorted(staged_repo.rglob("*")):
        rel = path.relative_to(staged_repo)
        if rel.parts[0] in ("snapshots", "refs") or path.is_dir():
            continue
        dest = repo_dir(spec) / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    return publish_folder(spec, staged_snapshot)


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
