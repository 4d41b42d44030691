"""Per-item scores of one evaluation, read from its inspect log, for bootstrap intervals over items.

Reading a large log takes a while, so the scores are cached under PTB_CACHE keyed by the log's path, size and
modification time.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from posttrainbench import paths
from posttrainbench.workspace.layout import RunLayout

_WORDS = {"c": 1.0, "correct": 1.0, "yes": 1.0, "true": 1.0, "p": 0.5, "partial": 0.5,
          "i": 0.0, "incorrect": 0.0, "n": 0.0, "no": 0.0, "false": 0.0}


def item_scores(run_dir: Path, label: str) -> np.ndarray | None:
    """One score per item (epochs averaged) from the newest inspect log under results/<label>/logs.

    None when there is no log, it cannot be read, or its scores are not scalar (e.g. dict-valued scores).
    """
    logs = RunLayout(Path(run_dir)).results(label) / "logs"
    candidates = [p for p in logs.glob("*") if p.suffix in (".json", ".eval")] if logs.is_dir() else []
    if not candidates:
        return None
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    stat = newest.stat()
    key = hashlib.sha256(f"{newest.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    cached = paths.cache_dir() / "item-scores" / f"{key}.json"
    if cached.is_file():
        return np.array(json.loads(cached.read_text()), dtype=float)
    scores = _read(newest)
    if scores is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps(scores))
        except OSError:
            pass  # an unwritable cache only costs the next reader the parse
    return None if scores is None else np.array(scores, dtype=float)


def original_item_scores(run_dir: Path, label: str) -> np.ndarray | None:
    """The original's scorer's verdict per item (results/<label>/items.jsonl, written beside metrics.json), or
    None when the file is missing, unreadable or an item has no verdict."""
    path = RunLayout(Path(run_dir)).results(label) / "items.jsonl"
    try:
        values = [json.loads(line)["accuracy_original"] for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not values or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return None
    return np.array(values, dtype=float)


def _read(log: Path) -> list[float] | None:
    # imported only when a log exists: inspect_ai takes seconds to import
    from inspect_ai.log import read_eval_log_sample_summaries

    try:
        samples = read_eval_log_sample_summaries(log)
    except (OSError, ValueError, KeyError):
        return None
    per_item: dict[str, list[float]] = {}
    for sample in samples:
        if not sample.scores:
            continue
        value = _to_float(next(iter(sample.scores.values())).value)
        if value is None:
            return None
        per_item.setdefault(str(sample.id), []).append(value)
    return [float(np.mean(v)) for v in per_item.values()] or None


def _to_float(value) -> float | None:
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _WORDS:
            return _WORDS[text]
        try:
            return float(text)
        except ValueError:
            return None
    return None
