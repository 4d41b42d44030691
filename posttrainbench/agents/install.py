"""Install the agent CLIs from npm at pinned versions, one npm prefix per CLI.

Versions are pinned because flags, config keys and tool names change between releases; the adapters are written
against exactly these versions.
"""

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

from posttrainbench import paths
from posttrainbench.errors import PtbError

PACKAGES: dict[str, tuple[str, str]] = {
    "claude": ("@anthropic-ai/claude-code", "2.1.197"),
    "codex": ("@openai/codex", "0.171.0"),
    "gemini": ("@google/gemini-cli", "0.61.0"),
    "opencode": ("opencode-ai", "1.18.33"),
}


def agents_dir() -> Path:
    """Shared by every run (CLIs are read-only inside the sandbox); lives in the cache so tests reuse it."""
    value = os.environ.get("PTB_AGENTS_DIR")
    return Path(value).expanduser().resolve() if value else paths.cache_dir() / "agents"


def install_dir(name: str, prefix: Path | None = None) -> Path:
    """The npm prefix of one CLI: everything its binary needs lies below it."""
    _check_name(name)
    return (prefix or agents_dir()) / name


def _check_name(name: str) -> None:
    if name not in PACKAGES:
        raise PtbError(f"unknown agent CLI '{name}'; valid: {', '.join(PACKAGES)}")


def installed_version(name: str, prefix: Path | None = None) -> str | None:
    _check_name(name)
    package, _ = PACKAGES[name]
    manifest = (prefix or agents_dir()) / name / "node_modules" / package / "package.json"
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text())["version"]


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def binary(name: str, prefix: Path | None = None) -> Path:
    """The executable to launch. Native binaries are preferred over npm's node shims, so the sandbox needs node
    only for Gemini CLI (a JS bundle with a node shebang)."""
    _check_name(name)
    modules = (prefix or agents_dir()) / name / "node_modules"
    arch = _arch()
    triple = {"x64": "x86_64-unknown-linux-musl", "arm64": "aarch64-unknown-linux-musl"}.get(arch, arch)
    candidates = {
        "claude": [modules / f"@anthropic-ai/claude-code-linux-{arch}/claude", modules / "@anthropic-ai/claude-code/bin/claude.exe"],
        "codex": [modules / f"@openai/codex-linux-{arch}/vendor/{triple}/bin/codex"],
        "gemini": [modules / "@google/gemini-cli/bundle/gemini.js"],
        "opencode": [modules / f"opencode-linux-{arch}/bin/opencode", modules / "opencode-ai/bin/opencode.exe"],
    }[name]
    for path in candidates:
        if path.is_file():
            return path
    raise PtbError(f"{name} is not installed under {modules.parent}; run `ptb agents install {name}`")


def install_agents(names: list[str] | None = None, prefix: Path | None = None) -> dict[str, str]:
    """Install (or keep) each CLI at its pinned version; returns name -> installed version."""
    prefix = prefix or agents_dir()
    names = list(names or PACKAGES)
    for name in names:
        _check_name(name)
    npm = shutil.which("npm")
    versions: dict[str, str] = {}
    for name in names:
        package, pinned = PACKAGES[name]
        if installed_version(name, prefix) != pinned:
            if npm is None:
                raise PtbError("npm is not installed (apt-get install nodejs npm); it is needed to install agent CLIs")
            target = prefix / name
            target.mkdir(parents=True, exist_ok=True)
            print(f"installing {package}@{pinned} into {target}", flush=True)
            done = subprocess.run(
                [npm, "install", "--prefix", str(target), "--no-audit", "--no-fund", "--loglevel=error", f"{package}@{pinned}"],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
                raise PtbError(f"npm install {package}@{pinned} failed: {' | '.join(tail)}")
        version = installed_version(name, prefix)
        if version != pinned:
            raise PtbError(f"{package} installed as {version}, expected {pinned}")
        binary(name, prefix)
        versions[name] = version
    return versions
