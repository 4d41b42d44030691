"""Reading the JSONL logs a run leaves behind (metering, egress, trajectory)."""

import json
from pathlib import Path


def first_file(run_dir: Path, names: tuple[str, ...]) -> Path | None:
    """The first of `names` (paths relative to run_dir) that exists."""
    return next((run_dir / n for n in names if (run_dir / n).is_file()), None)


def read_records(path: Path) -> list[dict]:
    """Every JSON object in the file; a line cut short (a writer killed mid-line) or not an object is skipped."""
    records = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
