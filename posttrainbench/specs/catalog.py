"""Loads the YAML files that define models and benchmarks: one small file per entry."""

from functools import cache
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from posttrainbench.errors import PtbError

T = TypeVar("T", bound=BaseModel)

HERE = Path(__file__).parent


@cache
def _load(folder: str, cls: type[T]) -> dict[str, T]:
    entries: dict[str, T] = {}
    for path in sorted((HERE / folder).glob("*.yaml")):
        try:
            entry = cls.model_validate(yaml.safe_load(path.read_text()))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise PtbError(f"{path.name}: {where}: {first['msg']}") from None
        if entry.id != path.stem:
            raise PtbError(f"{path.name}: id '{entry.id}' must match the file name")
        entries[entry.id] = entry
    return entries


def lookup(folder: str, cls: type[T], name: str, kind: str) -> T:
    entries = _load(folder, cls)
    if name not in entries:
        raise PtbError(f"unknown {kind} '{name}'; valid: {', '.join(sorted(entries))}")
    return entries[name]


def all_of(folder: str, cls: type[T]) -> list[T]:
    return list(_load(folder, cls).values())
