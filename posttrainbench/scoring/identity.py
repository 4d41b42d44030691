"""What makes two runs the same leaderboard entry, and which runs are results at all.

An entry is a full agent definition: its grid label, scaffold, model, effort, the hash of its command, budget,
network mode and test access. Runs that evaluate fewer items than the full test set (`--limit`) or cap the
generated tokens are smoke tests: they form entries of their own, shown apart and never ranked."""

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from posttrainbench.errors import PtbError
from posttrainbench.store import RunRow, Store

DEFAULT_NETWORK = "proxied"
DEFAULT_TEST_ACCESS = "visible"  # runs stored before test access was a setting saw the visible test split


@dataclass(frozen=True)
class Identity:
    key: str
    label: str | None  # the grid's name for the agent, when it gave one
    smoke: str | None  # why the run is a smoke test ("20 items", "≤ 320 tokens"), None for a full run


def command_hash(command: list[str] | None) -> str | None:
    if not command:
        return None
    return hashlib.sha256(json.dumps(command).encode()).hexdigest()[:8]


def test_access(spec: dict) -> str:
    value = spec.get("test_access")
    return value if isinstance(value, str) and value else DEFAULT_TEST_ACCESS


def smoke_reason(spec: dict) -> str | None:
    parts = []
    if spec.get("limit"):
        parts.append(f"{spec['limit']} items")
    if spec.get("max_tokens"):
        parts.append(f"≤ {spec['max_tokens']} tokens")
    return ", ".join(parts) or None


def identity(row: RunRow, base_key: str, label: str | None) -> Identity:
    """`base_key` names the agent or baseline; settings that differ from the defaults are appended to it."""
    spec = row.spec
    agent = spec.get("agent") if isinstance(spec.get("agent"), dict) else {}
    extras = []
    if label:
        extras.append(f"label={label}")
    if row.kind == "agent":
        digest = command_hash(agent.get("command"))
        if digest:
            extras.append(f"cmd={digest}")
        network = spec.get("network") or DEFAULT_NETWORK
        if network != DEFAULT_NETWORK:
            extras.append(f"net={network}")
        access = test_access(spec)
        if access != DEFAULT_TEST_ACCESS:
            extras.append(f"tests={access}")
    smoke = smoke_reason(spec)
    if spec.get("limit"):
        extras.append(f"limit={spec['limit']}")
    if spec.get("max_tokens"):
        extras.append(f"max_tokens={spec['max_tokens']}")
    return Identity(key=base_key + "".join(f"+{e}" for e in extras), label=label, smoke=smoke)


def grid_labels(store: Store) -> dict[str, str]:
    """run id -> the label its grid gave its agent (only labels a user wrote, not derived cell keys)."""
    labelled: dict[tuple[str, str], str] = {}
    try:
        grids = store.db.execute("SELECT name, grid FROM grids").fetchall()
        cells = store.db.execute("SELECT grid, agent, run_id FROM grid_cells WHERE run_id IS NOT NULL").fetchall()
    except sqlite3.OperationalError:  # a store that never held a grid has no grid tables
        return {}
    for name, grid in grids:
        for agent in json.loads(grid).get("agents", []):
            if agent.get("label"):
                labelled[(name, agent["label"])] = agent["label"]
    return {run_id: labelled[(grid, agent)] for grid, agent, run_id in cells if (grid, agent) in labelled}


def grid_runs(store: Store, name: str) -> set[str]:
    """The run ids of a grid's cells."""
    try:
        known = [r[0] for r in store.db.execute("SELECT name FROM grids ORDER BY name")]
        rows = store.db.execute("SELECT run_id FROM grid_cells WHERE grid=? AND run_id IS NOT NULL", (name,))
        runs = {r[0] for r in rows}
    except sqlite3.OperationalError:
        known, runs = [], set()
    if name not in known:
        raise PtbError(f"no grid '{name}' in the store {store.path} (grids: {', '.join(known) or 'none yet'})")
    return runs


def started(row: RunRow) -> bool:
    """Whether a run is a result (or on its way to one): a run that failed before its agent (or its baseline
    evaluation) ever ran, e.g. for a missing key or GPU, is not."""
    if row.status == "done" or row.status == "running":
        return True
    if row.status == "created" or row.kind != "agent" or not row.run_dir:
        return False
    return (Path(row.run_dir) / "logs" / "agent_exit.json").is_file()
