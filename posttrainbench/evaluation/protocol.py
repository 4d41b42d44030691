"""The wire format between the agent's evaluate.py and the harness's evaluation service (test access `hidden`).

One unix-socket connection per evaluation. The client sends one JSON line (a Request); the service answers with
JSON lines: zero or more Progress lines while the request waits or runs, then one Reply. Lines are capped in size on
both sides, so neither can make the other buffer without bound; everything is validated with these models.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_LINE = 64 * 1024  # bytes of one JSON line, newline included
# The metrics a reply may carry: numbers about the evaluation, never an item, an output or a grader's note.
REPLY_METRICS = ("accuracy", "stderr", "n_samples", "input_tokens", "output_tokens", "eval_seconds")


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: str = Field("final_model", min_length=1, max_length=4096,
                            description="the checkpoint folder, relative to the task directory or absolute inside "
                                        "the agent's task or home directory")
    limit: int | None = Field(None, ge=1, le=1_000_000, description="first N items; None = all")
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_connections: int | None = Field(None, ge=1, le=4096)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)


class Progress(BaseModel):
    status: Literal["queued", "running"]
    ahead: int = 0  # evaluations before this one


class Reply(BaseModel):
    status: Literal["ok", "error"]
    error: str | None = None  # one line, for status "error"
    metrics: dict[str, float | int | None] = Field(default_factory=dict)
    checkpoint_sha256: str | None = None
    settings: dict[str, float | int | None] = Field(default_factory=dict)  # what the evaluation used
    queued_s: float = 0.0  # waiting for earlier evaluations of this run
    seconds: float = 0.0  # from the request to the reply
