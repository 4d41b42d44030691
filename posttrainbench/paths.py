"""Where posttrainbench keeps its state. Everything hangs off PTB_HOME unless overridden."""

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("PTB_HOME", Path.home() / ".ptb")).expanduser().resolve()


def cache_dir() -> Path:
    return Path(os.environ.get("PTB_CACHE", home() / "cache")).expanduser().resolve()


def models_dir() -> Path:
    return cache_dir() / "models"


def data_cache_dir() -> Path:
    return cache_dir() / "data"


def runs_dir() -> Path:
    return Path(os.environ.get("PTB_RUNS", home() / "runs")).expanduser().resolve()


def store_path() -> Path:
    return Path(os.environ.get("PTB_STORE", home() / "ptb.sqlite")).expanduser().resolve()


def data_mirror() -> Path | None:
    """A local folder laid out like shared/data, for air-gapped clusters and tests."""
    value = os.environ.get("PTB_DATA_DIR")
    return Path(value).expanduser().resolve() if value else None
