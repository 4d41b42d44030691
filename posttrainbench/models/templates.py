"""The chat template of a base checkpoint, pinned when the harness fetches it.

Models whose spec says `chat_template: own` are prompted in the format their checkpoint ships. That format must come
from the base checkpoint the harness downloaded, never from the submission: a template is Jinja that can print any
text into every prompt, answers included. The pin is a JSON record outside the hub folder that sandboxes mount:

    <hf_home>/.ptb-templates/<model id>/<revision>.json   {"text", "sha256", "source", "revision"}

Evaluation reads the record and checks the sha256 of the text against it. A sandboxed evaluation, which has no model
cache, is handed the record read-only at the path in RECORD_ENV (evaluation/sandboxed.py).
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.models import cache
from posttrainbench.specs.models import ModelSpec

# Where a checkpoint keeps its template, in the order transformers prefers them.
TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_CONFIG = "tokenizer_config.json"
# The pinned record given to a sandboxed harness child by path.
RECORD_ENV = "PTB_PINNED_TEMPLATE"


@dataclass(frozen=True)
class PinnedTemplate:
    text: str
    sha256: str
    source: str  # the base checkpoint's file it came from
    revision: str


def record_path(spec: ModelSpec) -> Path:
    return cache.hf_home() / ".ptb-templates" / spec.id / f"{cache.revision(spec)}.json"


def read_checkpoint_template(folder: Path) -> tuple[str, str] | None:
    """(text, file it came from) of the checkpoint's own chat template, or None when it has none."""
    jinja = folder / TEMPLATE_FILE
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8"), TEMPLATE_FILE
    config = folder / TOKENIZER_CONFIG
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            return template, TOKENIZER_CONFIG
    return None


def pin(spec: ModelSpec, snapshot: Path) -> PinnedTemplate | None:
    """Record the template of the freshly fetched base checkpoint `snapshot` (None when it has none)."""
    found = read_checkpoint_template(snapshot)
    if found is None:
        return None
    text, source = found
    pinned = PinnedTemplate(text, hashlib.sha256(text.encode()).hexdigest(), source, cache.revision(spec))
    path = record_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(pinned.__dict__, indent=2))
    os.replace(tmp, path)
    return pinned


def read_record(path: Path, spec: ModelSpec) -> PinnedTemplate:
    """The pinned record at `path`, checked against its sha256 and the spec's revision."""
    pinned = PinnedTemplate(**json.loads(path.read_text()))
    if hashlib.sha256(pinned.text.encode()).hexdigest() != pinned.sha256:
        raise PtbError(f"{path}: the pinned chat template of {spec.id} does not match its sha256")
    if pinned.revision != cache.revision(spec):
        raise PtbError(f"{path}: the pinned chat template is of revision {pinned.revision}, not {spec.id}'s "
                       f"{cache.revision(spec)}")
    return pinned


def pinned_template(spec: ModelSpec) -> PinnedTemplate | None:
    """The base checkpoint's pinned template: the record handed over in RECORD_ENV, else the one in this model
    cache. Caches filled before pinning existed are pinned now from the harness's own snapshot; None when the base
    checkpoint is not in this cache or has no template."""
    handed = os.environ.get(RECORD_ENV)
    if handed:
        return read_record(Path(handed), spec)
    path = record_path(spec)
    if path.is_file():
        return read_record(path, spec)
    snapshot = cache.local_path(spec)
    return pin(spec, snapshot) if snapshot is not None else None
