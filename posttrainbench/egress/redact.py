"""Keep API keys out of run artifacts: redact known secret values and key-shaped strings, and scan for leaks."""

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from posttrainbench import untrusted

# Key shapes of the providers agents use; more specific prefixes first so the label says which one matched.
PATTERNS = [
    ("anthropic", re.compile(r"sk-ant-[A-Za-z0-9_\-]{20,}")),
    ("openrouter", re.compile(r"sk-or-[A-Za-z0-9_\-]{20,}")),
    ("openai-project", re.compile(r"sk-proj-[A-Za-z0-9_\-]{20,}")),
    ("openai", re.compile(r"sk-[A-Za-z0-9_\-]{20,}")),
    ("google", re.compile(r"AIzaSy[A-Za-z0-9_\-]{30,}")),
]
SECRET_ENV = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "CODEX_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
              "OPENROUTER_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "HF_TOKEN")
# Shorter values would redact ordinary words; a real key is far longer.
MIN_SECRET = 8
MAX_SCAN = 512 * 1024 * 1024


def secrets_from_env(env: dict[str, str] | None = None) -> list[str]:
    env = dict(os.environ if env is None else env)
    return [env[name] for name in SECRET_ENV if len(env.get(name, "")) >= MIN_SECRET]


def redact_text(text: str, secrets: list[str] = ()) -> str:
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, "[REDACTED]")
    for label, pattern in PATTERNS:
        text = pattern.sub(f"[REDACTED:{label}]", text)
    return text




def _files(root: Path) -> Iterator[tuple[Path, str]]:
    """(folder, name below it) of every regular file under root (or root itself), no link followed."""
    root = Path(root)
    if root.is_file():
        yield root.parent, root.name
        return
    # Folders past the caps are left out: the keys never enter the sandbox (the metering proxy adds them), so
    # this pass is a second line of defence, not the only one.
    for entry in untrusted.walk(root, caps=untrusted.SCAN_CAPS, on_cap=lambda message: None):
        if entry.kind == "file":
            yield root, entry.rel


def _is_text(data: bytes) -> bool:
    return b"\0" not in data[:8192]


def redact_files(root: Path, secrets: list[str] = ()) -> list[Path]:
    """Redact every text file under root in place; returns the files changed. Binary files (weights) are left
    alone: `find_secret` still scans them."""
    changed = []
    for folder, rel in _files(root):
        try:
            data = untrusted.read_bytes(folder, rel, limit=MAX_SCAN)
        except (untrusted.Refused, FileNotFoundError):
            continue  # too big, or replaced by a link or removed since the walk
        if not _is_text(data):
            continue
        text = data.decode("utf-8", errors="surrogateescape")
        clean = redact_text(text, secrets)
        if clean != text:
            untrusted.write_file(folder, rel, clean.encode("utf-8", errors="surrogateescape"))
            changed.append(folder / rel)
    return changed


@dataclass
class Hit:
    path: Path
    offset: int


def find_secret(root: Path, secret: str) -> list[Hit]:
    """Every place under root (text or binary, any size) where `secret` occurs, raw or in its hex form."""
    if len(secret) < MIN_SECRET:
        raise ValueError("refusing to scan for a secret shorter than 8 characters")
    needles = [secret.encode(), secret.encode().hex().encode()]
    hits = []
    for folder, rel in _files(root):
        path = folder / rel
        try:
            handle = untrusted.open_file(folder, rel)
        except (untrusted.Refused, FileNotFoundError):
            continue
        with handle:
            tail, position = b"", 0
            while chunk := handle.read(1 << 20):
                window = tail + chunk
                for needle in needles:
                    start = window.find(needle)
                    while start != -1:
                        offset = position - len(tail) + start
                        if not any(h.path == path and h.offset == offset for h in hits):
                            hits.append(Hit(path, offset))
                        start = window.find(needle, start + 1)
                tail = window[-(len(needles[1]) - 1):]
                position += len(chunk)
    return hits
