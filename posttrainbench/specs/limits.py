"""Resource limits of an agent's sandbox (part of the run and grid specs)."""

from pydantic import BaseModel, Field

# Sized for a 10-hour run on one 80-141 GB GPU of a 16-core, 128 GiB node: room for a 4B model's full fine-tune
# in bf16 with CPU-side optimizer offload, vLLM's CPU swap space and dataloader workers (memory); vLLM, torch
# compile workers and their threads, which count as processes (pids); a few checkpoints of a 4B model with optimizer
# state plus datasets and pip caches (disk).
DEFAULT_MEMORY_GB = 96.0
DEFAULT_PIDS = 8192
DEFAULT_DISK_GB = 300.0


class SandboxLimits(BaseModel):
    memory_gb: float | None = Field(DEFAULT_MEMORY_GB, gt=0, description="RAM of all the agent's processes")
    pids: int | None = Field(DEFAULT_PIDS, gt=0, description="processes and threads at once")
    cpus: float | None = Field(None, gt=0, description="CPU cores' worth of time (None: all of the host's)")
    disk_gb: float | None = Field(DEFAULT_DISK_GB, gt=0, description="everything the agent can write")
