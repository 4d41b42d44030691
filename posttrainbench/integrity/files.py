"""Every file the agent could have written, opened without following its links, for the contamination scan.

Every folder of the run directory is the agent's unless the harness owns it (HARNESS_DIRS): task/, home/ and
whatever else a sandbox makes writable there (its /tmp), with no name or place left out: outputs, logs, caches,
node_modules and site-packages are read like any other file. Names decide nothing; what a file holds is found out
by decoding it (`decode`). The one distinction by place is `cache` for the Hugging Face download cache: a complete
unaltered copy of a test set there is a download (the check reports it); anything else in it counts.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from posttrainbench import untrusted

# Written by the harness, never mounted writable into the sandbox: the pristine evaluation files, the staged test
# data, the harness's logs, the vetted model copy, evaluation results and judges' workspaces.
# The evaluation service's folder holds inspect logs of the test set (its own, for the agent's requests) and
# agent_data is what the harness handed out: neither is written by the agent.
HARNESS_DIRS = frozenset({"eval", "data", "agent_data", "logs", "service", "final_model", "results", "judges"})
DOWNLOAD_CACHE = "home/.cache/huggingface"
CAPS = untrusted.Caps(files=2_000_000, depth=256)


@dataclass
class Found:
    rel: str  # relative to the run directory; agent-chosen: shown only through untrusted.shown
    size: int
    kind: str  # workspace | cache


def roots(run_dir: Path) -> list[str]:
    """The run directory's folders that the agent could write."""
    return [entry.rel for entry in untrusted.walk(run_dir, prune=lambda _: True)
            if entry.kind == "dir" and entry.rel not in HARNESS_DIRS]


def walk(run_dir: Path, notes: list[str]) -> Iterator[Found]:
    """Regular files in the agent's folders; links are never followed (a link is a name, not data). A cap of the
    walk reached is added to `notes`."""
    for root in roots(run_dir):
        for entry in untrusted.walk(run_dir, root, caps=CAPS, on_cap=notes.append):
            if entry.kind != "file":
                continue
            rel = f"{root}/{entry.rel}"
            kind = "cache" if rel.startswith(DOWNLOAD_CACHE + "/") else "workspace"
            yield Found(rel, entry.size, kind)


def open_file(run_dir: Path, found: Found) -> BinaryIO:
    return untrusted.open_file(run_dir, found.rel)
