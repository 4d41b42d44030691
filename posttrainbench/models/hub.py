"""Models downloaded from the Hugging Face Hub at a pinned commit."""

from pathlib import Path

import huggingface_hub
from huggingface_hub.errors import GatedRepoError, OfflineModeIsEnabled

from posttrainbench.errors import PtbError
from posttrainbench.models import cache
from posttrainbench.models.progress import quiet_libraries
from posttrainbench.specs.models import HubSource, ModelSpec

# Weights only as safetensors: pickled *.bin checkpoints can run code on load and would double the download.
ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.model", "*.jinja"]


def download(spec: ModelSpec, *, progress: bool) -> Path:
    source = spec.source
    assert isinstance(source, HubSource)
    # A fixed staging folder, not a fresh one, so an interrupted download resumes from its partial blobs.
    staging = cache.staging_dir(spec)
    try:
        with quiet_libraries(not progress):
            huggingface_hub.snapshot_download(
                source.repo, revision=source.revision, cache_dir=staging, allow_patterns=ALLOW_PATTERNS
            )
    except Exception as exc:  # noqa: BLE001 - any failure of the hub client becomes one line for the user
        if not any(staging.glob("models--*/blobs/*")):
            cache.discard(staging)
        raise PtbError(_unreachable(spec, exc)) from None
    staged_repo = staging / ("models--" + source.repo.replace("/", "--"))
    path = cache.publish_hub_repo(spec, staged_repo)
    cache.discard(staging)
    return path


def _unreachable(spec: ModelSpec, exc: Exception) -> str:
    source = spec.source
    # The hub client wraps the network error in a paragraph of advice; the wrapped error is the useful part.
    root = exc.__cause__ or exc
    if isinstance(root, OfflineModeIsEnabled):
        reason = "HF_HUB_OFFLINE is set"
    else:
        reason = f"{type(root).__name__}: {' '.join(str(root).split())}"
    hint = "accept the model's license on the Hub and set HF_TOKEN, " if isinstance(exc, GatedRepoError) else ""
    return (
        f"cannot download {source.repo}@{source.revision} from the Hugging Face Hub: {reason}; {hint}"
        f"set HF_ENDPOINT to a reachable mirror or pre-stage it with "
        f"`hf download {source.repo} --revision {source.revision} --cache-dir {cache.hub_dir()}`"
    )
