"""Decoders are bounded and never execute what they read; the scan walks every folder the agent could write and no
link; the contamination index is cached on disk and validated by hash."""

import gzip
import io
import json
import os
import pickle
import re
import zipfile

import numpy as np
import pytest

from posttrainbench.integrity import contamination, decode, files, index_cache
from posttrainbench.integrity.fold import fold, fold_whole, inert
from posttrainbench.specs import get_benchmark


def pieces(data: bytes, ctx: decode.Context | None = None) -> tuple[bytes, decode.Context]:
    ctx = ctx or decode.Context()
    text = b"\n".join(p.text for p in decode.decode(io.BytesIO(data), len(data), ctx))
    return text, ctx


def test_a_decompression_bomb_stops_at_the_cap():
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    assert len(bomb) < 100_000
    text, ctx = pieces(bomb, decode.Context(left=4 << 20))
    assert len(text) <= 4 << 20
    assert any("decoding stopped" in note for note in ctx.notes)

    plain = gzip.compress(b"word " * (4 << 20))
    text, ctx = pieces(plain, decode.Context(left=1 << 20))
    assert len(text) <= (1 << 20) + decode.CHUNK and ctx.notes


def test_archives_nested_too_deep_are_not_opened():
    data = b"the payload"
    for depth in range(decode.MAX_DEPTH + 3):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(f"layer{depth}", data)
        data = buffer.getvalue()
    text, ctx = pieces(data)
    assert b"the payload" not in text
    assert any("nested deeper" in note for note in ctx.notes)


def test_pickles_are_read_not_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    data = pickle.dumps({"text": "a string constant inside", "evil": Payload()})
    text, ctx = pieces(data)
    assert b"a string constant inside" in text and b"touch" in text
    assert not marker.exists()
    assert "pickle" in ctx.formats


def test_encodings_inside_text_are_decoded():
    import base64
    import codecs

    inner = "Natalia sold clips to 48 of her friends in April"
    blob = json.dumps({"a": base64.b64encode(inner.encode()).decode(), "b": inner.encode().hex()}).encode()
    text, _ = pieces(blob)
    assert text.count(inner.encode()) == 2
    text, ctx = pieces(inner.encode("utf-16"))
    assert inner.encode() in text and "utf-16-le" in ctx.formats
    # rot13 is found by the matcher (rot13 n-grams in the index), not by the decoders
    assert codecs.encode(inner, "rot13") != inner


def test_folding_removes_tricks_and_keeps_lines():
    assert fold("Ja\u200bnet’s duсks ｌａｙ 𝟏𝟔 eggs\nsecond line") == "Janet’s ducks lay 16 eggs\nsecond line"
    plain = "nothing to fold here, even with é"
    assert fold(plain) is plain


def test_folding_a_whole_text_equals_folding_it_line_by_line():
    lines = ["Ja\u200bnet’s duсks", "naïve café", "ｌａｙ 𝟏𝟔", "e\u0301 then \u0301 alone", "ﬁne", "Ελληνικά ok", "x"]
    text = "\n".join(lines * 3)
    assert fold_whole(text) == fold(text)
    plain = "\n".join(["café", "naïve"])
    assert fold_whole(plain) is plain


def test_inert_characters_fold_to_themselves_wherever_they_stand():
    table = inert()
    chosen = np.random.default_rng(7).choice(np.flatnonzero(table), 20_000)
    chars = [chr(c) for c in chosen.tolist()]
    for start in range(0, len(chars), 5):
        text = "e" + " ".join(chars[start : start + 5]) + "x" + "".join(chars[start : start + 5]) + "1"
        assert fold(text) == text
    # Combining marks, Hangul jamo, the second of a canonical pair, look-alikes, invisible and compatibility forms.
    for char in "\u0301\u1161\u11a8\u0b3e\u0430\u03bf\u200b\ufb01\uff41\u2024\u00b2\ud800":
        assert not table[ord(char)]


def _folded_line_by_line(data: bytes) -> bytes:
    out = []
    for line in data.split(b"\n"):
        text = line.decode("utf-8", "replace")
        folded = fold(text)
        out.append(folded.encode() if folded != text else line)
    return b"\n".join(out)


def test_pieces_are_folded_as_if_every_line_were():
    words = ["plain", "café", "’quoted’", "naïve", "Ж", "دل", "— dash", "duсk", "а", "e\u0301", "ﬁne", "Ja\u200bnet",
             "𝟏𝟔", "가\u11a8", "\u1100\u1161", "x\u0b47\u0b3e", "bad\xff", "cut\xc3", "ｌａｙ", "…"]
    rng = np.random.default_rng(3)
    for _ in range(300):
        lines = [" ".join(rng.choice(words, rng.integers(0, 6))) for _ in range(rng.integers(1, 8))]
        data = "\n".join(lines).encode("utf-8", "surrogateescape")
        data = data.replace("\xff".encode(), b"\xff").replace("\xc3".encode(), b"\xc3")
        assert decode._folded(data) == _folded_line_by_line(data)


def test_suspect_escapes_are_those_of_letters_and_of_characters_folding_may_change():
    table = inert()
    rng = np.random.default_rng(11)
    forms = {"u": ("\\u{:04x}", 16), "U": ("\\U{:08X}", 16), "x": ("\\x{:02x}", 16), "octal": ("\\{:03o}", 8),
             "percent": ("%{:02X}", 16), "decimal": ("&#{};", 10)}
    codes = np.concatenate([rng.integers(0, 0x10000, 3000), rng.integers(0, 0x100, 3000),
                            rng.integers(0x10000, 0x110000, 300), [0x430, 0xFB01, 0xD835, 0xE9, 0x2019, 0x41, 0x1D41A]])
    parts = []
    for code in codes.tolist():
        form, _ = forms[rng.choice(list(forms))]
        escape = form.format(code)
        parts.append(rng.choice([escape, escape[:-1], "\\" + escape, "x" + escape, "é " + escape, escape + "7"]))
    data = " ".join(parts).encode() + b"\\u04 \\x4 %4"

    def suspect(kind: str, digits: str) -> bool:
        code = int(digits, forms[kind][1])
        if code < 0x80:
            return chr(code).isalnum()
        return kind in ("u", "U") and code <= 0x10FFFF and (code >= 0x10000 or not table[code])

    patterns = {"u": rb"\\u([0-9a-fA-F]{4})", "U": rb"\\U([0-9a-fA-F]{8})", "x": rb"\\x([0-9a-fA-F]{2})",
                "octal": rb"\\([0-3][0-7]{2})", "percent": rb"%([0-9a-fA-F]{2})"}
    expected = {m.start() for kind, pattern in patterns.items() for m in re.finditer(pattern, data)
                if suspect(kind, m.group(1).decode())} | {m.start() for m in re.finditer(rb"&#", data)}
    assert decode._suspect_escapes(np.frombuffer(data, np.uint8)).tolist() == sorted(expected)
    assert len(expected) > 1000


def test_text_escaped_letter_by_letter_is_read_as_text():
    text = 'Janet’s ducks lay 16 eggs "per" day\\n'
    for form in ("\\u{:04x}", "\\U{:08x}", "\\x{:02x}", "\\{:03o}", "%{:02X}", "&#{};", "&#x{:x}"):
        escaped = "".join(form.format(ord(c)) if c.isascii() and c.isalnum() else c for c in text)
        assert decode._folded(escaped.encode()) == text.encode()
    kept = rb"line\u000a \x0a \xc3\xa9 \ud835 \u0020 &#10; &#60; &amp; &#99999999; %20 %e2%80 \012 \1"
    assert decode._folded(kept + rb" \u0041 &#x4A;&#1072;") == kept + b" A Ja"
    assert decode._folded(rb'"\U0001d41a\U0001d41b" \ud835\udc1a') == b'"ab" a'  # mathematical bold letters


def test_text_is_read_in_pieces_cut_after_line_breaks(monkeypatch):
    monkeypatch.setattr(decode, "CHUNK", 64)
    monkeypatch.setattr(decode, "LONG_LINE", 256)
    rng = np.random.default_rng(2)
    for _ in range(300):
        lines = [b"x" * int(n) for n in rng.choice([0, 5, 40, 63, 64, 65, 200, 700], rng.integers(1, 30))]
        data = b"\n".join(lines) + rng.choice([b"", b"\n"])
        pieces = list(decode._text_pieces(io.BytesIO(data).read))
        assert b"".join(p for p, _ in pieces) == data
        for number, (piece, line) in enumerate(pieces):
            assert line == 1 + b"".join(p for p, _ in pieces[:number]).count(b"\n")
            last = number == len(pieces) - 1
            assert piece.endswith(b"\n") or last or len(piece) >= 256  # cut after a line break or in a long line
            assert len(piece) < 256 + 2 * 64


def _non_ascii_lines(data: bytes) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for line in data.split(b"\n"):
        if not line.isascii():
            bounds.append((start, start + len(line)))
        start += len(line) + 1
    return bounds


def test_lines_around_few_or_many_offsets_are_the_lines_holding_them():
    lines = [b"plain ascii", b"caf\xc3\xa9 here", b"", b"x" * 500, b"na\xc3\xafve and \xc3\xa9", b"end \xc3\xa9"]
    sparse = b"\n".join(lines * 40)
    dense = sparse.replace(b"x" * 500, b"x")
    for data, few in ((sparse, True), (dense, False)):
        offsets = np.flatnonzero(np.frombuffer(data, np.uint8) >= 0x80)
        assert (len(offsets) * 64 < len(data)) == few  # around the offsets, or from all line breaks
        assert decode._lines_of(data, offsets) == _non_ascii_lines(data)
    assert decode._lines_of(sparse, np.zeros(0, np.int64)) == []


def _runs_one_byte_at_a_time(data: bytes) -> list[tuple[str, bytes]]:
    """What _encoded_runs is meant to give, the slow way: maximal runs of the base64 alphabet (URL-safe and padding
    included) of MIN_RUN bytes or more that hold an aligned block of MIN_RUN / 2 standard-alphabet bytes."""
    inside = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=")
    standard = inside - set(b"-_=")
    block, runs, start = decode.MIN_RUN // 2, [], None
    for at in range(len(data) + 1):
        if at < len(data) and data[at] in inside:
            start = at if start is None else start
            continue
        if start is not None and at - start >= decode.MIN_RUN:
            first = -(-start // block) * block
            if any(all(c in standard for c in data[b : b + block]) for b in range(first, at - block + 1, block)):
                run = data[start:at]
                runs.append(("hex" if all(c in b"0123456789abcdefABCDEF" for c in run) else "base64", run))
        start = None
    return runs


def test_encoded_runs_are_found_as_defined():
    import base64
    import random

    rng = random.Random(3)
    parts = [b" ", b"\n", b"snake_case_name", b"-", b"_", b"=", "é".encode(), b"deadbeef" * 7, b"A" * 30]
    for _ in range(200):
        data = b"".join(rng.choice(parts) if rng.random() < 0.7 else base64.b64encode(rng.randbytes(rng.randint(1, 90)))
                        for _ in range(rng.randint(1, 40)))
        assert list(decode._encoded_runs(data)) == _runs_one_byte_at_a_time(data)


def test_walk_covers_every_agent_folder_and_no_link(tmp_path, shared_data):
    run = tmp_path / "run"
    for name in ("task", "home", "tmp", "data", "eval", "logs", "service", "agent_data"):
        (run / name).mkdir(parents=True)
    (run / "tmp" / "a.txt").write_text("x")
    (run / "home" / ".cache" / "huggingface").mkdir(parents=True)
    (run / "home" / ".cache" / "huggingface" / "b.txt").write_text("x")
    (run / "task" / "node_modules" / "p").mkdir(parents=True)
    (run / "task" / "node_modules" / "p" / "c.txt").write_text("x")
    (run / "data" / "test.jsonl").write_text("staged by the harness")
    (run / "service" / "log.json").write_text("the evaluation service's log of the test set")
    (run / "task" / "link.jsonl").symlink_to(shared_data / "gsm8k" / "test.jsonl")
    found = {f.rel: f.kind for f in files.walk(run, [])}
    assert found == {"home/.cache/huggingface/b.txt": "cache", "task/node_modules/p/c.txt": "workspace",
                     "tmp/a.txt": "workspace"}


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PTB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_index_is_built_once_and_validated_by_hash(private_cache, shared_data):
    aime = get_benchmark("aime2025")
    built = []

    def build():
        built.append(1)
        return contamination.build_index([aime])

    first = index_cache.load_or_build([aime], contamination.SETTINGS, build)
    again = index_cache.load_or_build([aime], contamination.SETTINGS, build)
    assert len(built) == 1
    assert isinstance(again.hashes.sorted.base, np.memmap)  # a plain array over the mapped file, not a copy
    problem = dict(first.items[4].segments)["problem"]
    assert [h.item for h in again.scan(problem.encode())] == ["5"]
    assert again.sizes == {"aime2025": 30}

    (folder,) = index_cache.folder().iterdir()
    with (folder / "owner.npy").open("r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        handle.write(b"\xff" * 8)
    rebuilt = index_cache.load_or_build([aime], contamination.SETTINGS, build)
    assert len(built) == 2
    assert [h.item for h in rebuilt.scan(problem.encode())] == ["5"]
    # other settings are another index
    index_cache.load_or_build([aime], contamination.SETTINGS | {"n": 6}, build)
    assert len(built) == 3 and len(list(index_cache.folder().iterdir())) == 2
