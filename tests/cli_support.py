"""The `ptb` CLI as a subprocess, the way a user runs it (PTB_HOME comes from conftest's per-test isolation)."""

import os
import subprocess
import sys


def ptb(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posttrainbench.cli", *args], capture_output=True, text=True,
                          env=os.environ | (env or {}), timeout=300)
