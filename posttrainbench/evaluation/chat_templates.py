"""The chat template an evaluation forces on the model: chosen only by the run's base-model spec.

The original picked a template from substrings of the checkpoint path, so an agent directory named `qwen3max_…`
turned every model into a Qwen one. Here the base model's `chat_template` field decides, and `own` means the base
checkpoint's own template (demo models whose instruct format ships with the weights), pinned when the harness
fetched it (models/templates.py). The evaluated checkpoint's `chat_template.jinja` and `tokenizer_config.json` are
never read for a template: a template can print anything into every prompt, the answers included.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.models import cache
from posttrainbench.models.templates import read_checkpoint_template, pinned_template
from posttrainbench.specs import ModelSpec

TEMPLATES_DIR = Path(__file__).parent / "templates"

# The official SmolLM3 template stamps today's date into every prompt; ours stamps this one (see smollm3.jinja).
SMOLLM3_DATE = "08 July 2025"

# The token that closes an assistant turn in each format: generation stops there even when the checkpoint's
# tokenizer (a base model's) declares another end-of-sequence token.
END_OF_TURN = {
    "qwen3.jinja": "<|im_end|>",
    "smollm3.jinja": "<|im_end|>",
    "gemma3.jinja": "<end_of_turn>",
    "gemma3_tool.jinja": "<end_of_turn>",
}


@dataclass(frozen=True)
class ChatTemplate:
    name: str  # file under templates/, or "own:<base model id>"
    text: str
    end_of_turn: str | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def record(self) -> dict:
        info = {"chat_template": self.name, "chat_template_sha256": self.sha256}
        if self.name == "smollm3.jinja":
            info["chat_template_date"] = SMOLLM3_DATE
        return info


def template_file(base_model: ModelSpec, *, tools: bool = False) -> Path | None:
    """The template file for `base_model` (its `_tool` variant for function calling when one exists), or None
    when the base model uses the checkpoint's own template."""
    if base_model.chat_template == "own":
        return None
    path = TEMPLATES_DIR / base_model.chat_template
    if tools:
        variant = path.with_name(f"{path.stem}_tool{path.suffix}")
        if variant.is_file():
            path = variant
    if not path.is_file():
        raise PtbError(f"model {base_model.id}: chat template {base_model.chat_template} is not in {TEMPLATES_DIR}")
    return path


def chat_template(base_model: ModelSpec, *, tools: bool = False) -> ChatTemplate:
    path = template_file(base_model, tools=tools)
    if path is not None:
        return ChatTemplate(path.name, path.read_text(), END_OF_TURN.get(path.name))
    text = _base_template(base_model)
    if text is None:
        raise PtbError(f"base model {base_model.id} uses its checkpoint's own chat template, but the base checkpoint "
                       f"is not in the model cache or has none (fetch it with `ptb models fetch {base_model.id}`)")
    return ChatTemplate(f"own:{base_model.id}", text, None)


def _base_template(base_model: ModelSpec) -> str | None:
    """The template pinned in the harness's model cache; inside the agent's sandbox, where that cache is absent,
    the base checkpoint's template from the read-only hub mount at the pinned revision."""
    pinned = pinned_template(base_model)
    if pinned is not None:
        return pinned.text
    hf_home = os.environ.get("HF_HOME")
    if not hf_home:
        return None
    mounted = Path(hf_home) / "hub" / cache.repo_dir(base_model).name / "snapshots" / cache.revision(base_model)
    found = read_checkpoint_template(mounted) if mounted.is_dir() else None
    return found[0] if found else None
