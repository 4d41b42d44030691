"""SQLite store of runs, their stages and metrics. Artifacts stay in each run's directory."""

from posttrainbench.store.db import RunRow, Store, short_id

__all__ = ["RunRow", "Store", "short_id"]
