"""The contamination index on every benchmark's real test items: the fast word keys agree with the exact words,
copies are found in any of the shapes training data takes, and unrelated text of the same kinds is not."""

import base64
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from posttrainbench.integrity import contamination, files, ngram

sys.path.insert(0, str(Path(__file__).parent))
from integrity_support import DATA, gsm8k_rows, paraphrase  # noqa: E402

SAMPLES = [
    "Janet’s ducks lay 16 eggs per day.\nShe eats three.",
    'caf\\u00e9 \\"quoted\\" \\\\n path\\\\to\\\\file',
    "Подводка к пляжному драг-рейсингу",
    "请用幽默风趣的语言风格修改以下内容，形成一篇1000字左右的文章",
    "mixed: naïve café Ünïcödé — “quotes” and emoji 😀 ok",
]


@pytest.fixture(scope="module")
def index(shared_data):
    return contamination.default_index()


@pytest.mark.parametrize("text", SAMPLES)
def test_fast_keys_follow_the_exact_words(text):
    for form in (text, json.dumps(text), json.dumps(text, ensure_ascii=False)):
        _, keys = ngram.keys(form.encode())
        exact = ngram.words(form)
        assert len(keys) == len(exact)
        assert np.array_equal(keys, ngram.keys(" ".join(exact).encode())[1])
    # Escaped or not, the same text gives the same words.
    assert ngram.words(json.dumps(text)) == ngram.words(text) == ngram.words(json.dumps(text, ensure_ascii=False))


def test_hash_set_finds_its_members_and_only_them():
    rng = np.random.default_rng(5)
    members = rng.integers(0, 2**63, 50_000, dtype=np.int64).astype(np.uint64) * np.uint64(3)
    hashes = ngram.HashSet(members)
    probes = np.concatenate([rng.integers(0, 2**63, 200_000, dtype=np.int64).astype(np.uint64), members[::7]])
    rng.shuffle(probes)
    at, where = hashes.find(probes)
    assert np.array_equal(at, np.flatnonzero(np.isin(probes, members)))  # in order, none missed, none extra
    assert np.array_equal(hashes.sorted[where], probes[at])
    again = ngram.HashSet(hashes.sorted, packed=hashes.packed())  # as loaded from the cache
    assert all(np.array_equal(a, b) for a, b in zip(again.find(probes), (at, where), strict=True))


def test_an_index_of_no_items_finds_nothing():
    index = contamination.Index.build([], [])
    assert index.scan(b"Janet's ducks lay 16 eggs per day and she eats three for breakfast every morning") == []


def test_words_split_as_described():
    assert ngram.words("Janet’s ducks: 16/day") == ["janet", "s", "ducks", "16", "day"]
    assert ngram.words("你好，世界") == ["你", "好", "世", "界"]
    assert ngram.words("Подводка к") == ["Подводка", "к"]


def test_every_benchmark_found_verbatim_and_reworded(index):
    by_benchmark = defaultdict(list)
    for item in index.items:
        by_benchmark[item.benchmark].append(item)
    for benchmark, items in by_benchmark.items():
        verbatim = "\n".join(json.dumps(dict(item.segments)) for item in items).encode()
        reworded = "\n".join(json.dumps({k: paraphrase(v) for k, v in item.segments}) for item in items).encode()
        for blob, least in ((verbatim, 0.98), (reworded, 0.95)):
            found = {hit.item for hit in index.scan(blob)}
            assert found <= {item.id for item in items}
            assert len(found) >= least * len(items), (benchmark, len(found), len(items))


def test_gsm8k_train_is_not_gsm8k_test(index):
    train = (DATA / "gsm8k" / "train.jsonl").read_bytes()
    assert index.scan(train) == []
    reworded = "\n".join(json.dumps({"q": paraphrase(r["question"]), "a": paraphrase(r["answer"])})
                         for r in gsm8k_rows("train")).encode()
    assert index.scan(reworded) == []


def test_ordinary_code_and_prose_match_nothing(index):
    stdlib = Path(json.__file__).parents[1]
    code = b"\n".join(p.read_bytes() for p in sorted(stdlib.glob("*.py"))[:200])
    assert len(code) > 3_000_000
    assert index.scan(code) == []


def test_hits_report_where_they_are(index):
    rows = gsm8k_rows("test")
    blob = ("filler line\n" * 3 + json.dumps(rows[41]) + "\n").encode()
    (hit,) = index.scan(blob)
    assert (hit.benchmark, hit.item, hit.coverage) == ("gsm8k", "42", 1.0)
    assert blob[: hit.offset].count(b"\n") == 3


def test_an_item_split_across_two_base64_json_lines_is_one_match(index, tmp_path):
    # Small base64 JSON runs are decoded as one layer: the halves of a question meet again, where alone each would
    # be a fragment only.
    words = gsm8k_rows("test")[41]["question"].split()
    halves = (words[: len(words) // 2], words[len(words) // 2 :])
    lines = [base64.b64encode(json.dumps({"text": " ".join(half)}).encode()) for half in halves]
    data = b"filler line\n" + b"\n".join(lines) + b"\n"
    (tmp_path / "data.jsonl").write_bytes(data)
    result = contamination.scan_file(index, tmp_path, files.Found("data.jsonl", len(data), "workspace"))
    (match,) = result.matches
    assert (match.benchmark, match.item, match.where, match.via) == ("gsm8k", "42", "line 1", "base64")



def _owners(index, text: str) -> np.ndarray:
    """Part of each of the text's word 5-grams found in the index (stride 1, every word)."""
    _, at = index.hashes.find(ngram.ngram_hashes(ngram.keys(text.encode())[1], contamination.N))
    return index.owner[at]


@pytest.mark.parametrize("shift", [0, 1])
def test_the_shortest_unbroken_copy_the_sampling_guarantees_is_a_candidate(index, shift):
    # contamination._EVERY: a part that needs h hits at the sampled words is a candidate wherever N - 1 + 2 * h of
    # its words are copied unbroken (their n-grams all indexed), whichever word of the text the copy starts on.
    number = next(n for n, item in enumerate(index.items) if (item.benchmark, item.id) == ("gsm8k", "42"))
    words = index.items[number].segments[0][1].split()
    part = _owners(index, " ".join(words))[0]
    length = contamination.N - 1 + contamination.SAMPLE * int(index.need[part])
    copy = next(" ".join(words[s : s + length]) for s in range(len(words) - length)
                if list(_owners(index, " ".join(words[s : s + length]))) == [part] * (length - contamination.N + 1))
    blob = ("zebra " * (7 + shift) + copy + " zebra" * 7).encode()
    assert [cluster[0] for cluster in index._clusters(*index._candidates(blob)[:4])] == [number]
