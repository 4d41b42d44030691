"""Base models: fetched once into a local Hugging Face hub cache that sandboxes mount read-only."""

from pathlib import Path

from posttrainbench.models.cache import hf_home, local_path, repo_dir, revision
from posttrainbench.models.tiny import build_tiny_model
from posttrainbench.specs.models import HubSource, ModelSpec

__all__ = ["build_tiny_model", "fetch", "hf_home", "local_path", "repo_dir", "revision"]


def fetch(spec: ModelSpec, *, progress: bool = True) -> Path:
    """The model's folder (safetensors, config, tokenizer, generation config), downloading or converting it on
    first use, when its chat template is also pinned (models/templates.py); afterwards
    `from_pretrained(spec.hf_id)` also works offline with HF_HOME=hf_home()."""
    from posttrainbench.models import cache, gguf, hub, templates

    with cache.locked(spec):
        path = cache.local_path(spec)
        if path is None:
            path = hub.download(spec, progress=progress) if isinstance(spec.source, HubSource) else gguf.build(
                spec, progress=progress
            )
            templates.pin(spec, path)
        cache.point_main_at(spec)
    return path
