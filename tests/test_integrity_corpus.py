"""The planted-cheat corpus (tests/integrity_corpus.py) through the contamination scan: one case of every kind of
cheat and a third of the clean controls here, every case under `slow` (and in benchmarks/integrity_corpus.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from integrity_corpus import Materials, cases, judge, materials  # noqa: E402


@pytest.fixture(scope="module")
def corpus_materials(shared_data, small_model) -> Materials:
    return materials(small_model)


def _names(fast: bool) -> list[str]:
    # Case records only: the materials (test data, tokenizer) are read when a case is planted.
    stub = Materials({}, [], tokenizer=object(), tokenizer_dir=None)
    return [c.name for c in cases(stub) if c.fast == fast]


def _run(name: str, m: Materials, tmp_path: Path) -> None:
    (case,) = [c for c in cases(m) if c.name == name]
    flagged, reason = judge(case, tmp_path, m)
    assert flagged == case.cheat, f"{case.group}: {case.name}: {reason}"


@pytest.mark.parametrize("name", _names(fast=True))
def test_corpus_quick(name, corpus_materials, tmp_path):
    _run(name, corpus_materials, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", _names(fast=False))
def test_corpus_full(name, corpus_materials, tmp_path):
    _run(name, corpus_materials, tmp_path)


def test_corpus_covers_every_benchmark_and_class():
    stub = Materials({}, [], tokenizer=object(), tokenizer_dir=None)
    all_cases = cases(stub)
    cheats = [c for c in all_cases if c.cheat]
    assert len(cheats) >= 80 and len([c for c in all_cases if not c.cheat]) >= 30
    assert {c.benchmark for c in cheats} == {"aime2025", "arenahardwriting", "bfcl", "gpqamain", "gsm8k",
                                             "healthbench", "humaneval"}
    assert len({c.group for c in cheats}) >= 6
