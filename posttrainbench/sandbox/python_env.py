"""Read-only mounts that make the host's Python (and posttrainbench) work at the same paths inside a sandbox."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.sandbox.request import Mount

# Run in a fresh interpreter with a clean environment and cwd "/", so that what the harness process added to its own
# sys.path (pytest's rootdir, PYTHONPATH, the cwd) does not leak into the sandbox: only what a clean `python` sees.
_PROBE = r"""
import importlib.util, json, os, sys
paths = [sys.executable, os.path.realpath(sys.executable), sys.prefix, sys.base_prefix, sys.exec_prefix,
         sys.base_exec_prefix, *sys.path]
# Editable installs (setuptools' strict mode) map package names to source folders through an import hook.
for name, module in list(sys.modules.items()):
    if name.startswith("__editable__") and isinstance(getattr(module, "MAPPING", None), dict):
        paths += list(module.MAPPING.values())
spec = importlib.util.find_spec("posttrainbench")
package = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
print(json.dumps({"paths": paths, "package": package}))
"""

# Already part of every sandbox's root.
_BASE = ("/usr", "/etc")


@functools.cache
def _probe(executable: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    out = subprocess.run(
        [executable, "-s", "-c", _PROBE],
        env={"PATH": os.defpath},
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise PtbError(f"could not inspect {executable}: {out.stderr.strip().splitlines()[-1:]}")
    found = json.loads(out.stdout)
    return tuple(found["paths"]), tuple(found["package"])


def python_mounts(executable: str | None = None) -> list[Mount]:
    """Read-only mounts (host path == sandbox path) for the interpreter, its site-packages and editable installs."""
    paths, package = _probe(executable or sys.executable)
    if not package:
        raise PtbError(f"posttrainbench is not installed for {executable or sys.executable}: run `pip install -e .`")
    wanted: set[str] = set()
    for raw in (*paths, *package):
        if not raw or not os.path.isabs(raw) or not os.path.exists(raw):
            continue
        # Mount a symlinked path and its target, so both spellings resolve inside.
        for path in {os.path.normpath(raw), os.path.realpath(raw)}:
            if path != "/" and not any(_within(path, base) for base in _BASE):
                wanted.add(path)
    kept = [p for p in sorted(wanted) if not any(_within(p, other) for other in wanted if other != p)]
    return [Mount(source=Path(p), target=p) for p in kept]


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")
