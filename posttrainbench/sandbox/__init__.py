"""Run an agent in a bubblewrap sandbox: only the request's mounts are visible (read-only unless marked writable),
the environment is exactly the request's, the network is off unless asked for, GPUs are passed through by index,
and the harness enforces the wall clock on the whole process tree. The sandbox is unprivileged whoever runs the
harness (confine.py: its own uid, a user namespace, no capabilities, no_new_privs, seccomp.py's filter) and held
to memory, process, CPU and disk limits (limits.py).

The `none` backend runs the same request directly on the host, without any isolation, for debugging only.
"""

from posttrainbench.sandbox.bwrap import bwrap_argv, find_bwrap
from posttrainbench.sandbox.gpus import gpu_mounts_and_env
from posttrainbench.sandbox.python_env import python_mounts
from posttrainbench.sandbox.request import ExitInfo, Mount, SandboxRequest
from posttrainbench.sandbox.runner import run

__all__ = [
    "ExitInfo",
    "Mount",
    "SandboxRequest",
    "bwrap_argv",
    "find_bwrap",
    "gpu_mounts_and_env",
    "python_mounts",
    "run",
]
