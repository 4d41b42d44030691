"""The spec of one run: what a user asks for, before anything is resolved."""

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from posttrainbench.specs.agents import AgentSpec

SandboxKind = Literal["bwrap", "none"]
# open: the host's network (as the original); proxied: only through the logging, deny-listing egress proxy;
# offline: none at all.
NetworkMode = Literal["open", "proxied", "offline"]
# hidden: the test items never enter the sandbox, evaluate.py asks the harness's evaluation service; visible: the
# original's setup, the test data mounted for evaluate.py to read.
TestAccess = Literal["hidden", "visible"]


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
