"""The spec of one run: what a user asks for, before anything is resolved."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from posttrainbench.specs.agents import AgentSpec
from posttrainbench.specs.limits import SandboxLimits

SandboxKind = Literal["bwrap", "none"]
# open: the host's network (as the original); proxied: only through the logging, deny-listing egress proxy;
# offline: none at all.
NetworkMode = Literal["open", "proxied", "offline"]
# hidden: the test items never enter the sandbox, evaluate.py asks the harness's evaluation service; visible: the
# original's setup, the test data mounted for evaluate.py to read.
TestAccess = Literal["hidden", "visible"]

# Per-run LLM limits of the metering proxy (README, "LLM limits"): the original's dearest agents cost about $27
# (Opus 4.6) and $33 (Qwen3 Max) per 10-hour run, in the order of 10-50 M tokens, mostly cache reads.
DEFAULT_LLM_USD = 100.0
DEFAULT_LLM_TOKENS = 150_000_000


class LlmLimits(BaseModel):
    """What one run may spend through the metering proxy; null = no limit. Reaching one stops the agent."""

    model_config = ConfigDict(extra="forbid")

    max_usd: float | None = Field(DEFAULT_LLM_USD, gt=0, description="dollars at list prices, all calls together")
    max_tokens: int | None = Field(DEFAULT_LLM_TOKENS, gt=0, description="input + output tokens, all calls together")


class EvalSettings(BaseModel):
    """How the harness evaluates the base and the agent's model: the evaluator's own flags, as `ptb eval` takes
    them. The defaults use the whole machine (vLLM where it can run, every item in flight)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "hf", "vllm"] = "auto"
    max_connections: int | None = Field(None, gt=0, description="concurrent generations (hf: the batch size)")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="vllm: share of GPU memory to use")

    def runner_args(self) -> dict:
        """What differs from the defaults, as the evaluation runner's keyword arguments."""
        return self.model_dump(exclude_defaults=True)


class RunSpec(BaseModel):
    agent: AgentSpec
    model: str = Field(description="model id from the catalog")
    benchmark: str = Field(description="benchmark id from the catalog")
    seed: int = 0
    hours: float = Field(10.0, description="wall-clock budget of the agent")
    gpus: int = Field(1, ge=0)
    sandbox: SandboxKind = "bwrap"
    network: NetworkMode = "proxied"
    test_access: TestAccess = "hidden"
    limit: int | None = Field(None, description="evaluate only the first N items (tests, demos)")
    max_tokens: int | None = Field(None, description="cap on generated tokens per item (CPU demos); recorded")
    llm: LlmLimits = Field(default_factory=LlmLimits, description="the agent's LLM spending limits")
    sandbox_limits: SandboxLimits = Field(default_factory=SandboxLimits, description="the agent sandbox's resources")
    evaluation: EvalSettings = Field(default_factory=EvalSettings, description="the harness's evaluations' settings")

    @field_validator("hours")
    @classmethod
    def _positive_budget(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("the budget must be more than 0 hours")
        return value

    @field_validator("limit", "max_tokens")
    @classmethod
    def _positive_limit(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("must be a positive number")
        return value
