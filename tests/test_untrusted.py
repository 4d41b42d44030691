"""The boundary to agent-made files and names: no link followed, caps, holes kept, safe writes, clean display."""

import io
import os

import pytest
from rich.console import Console

from posttrainbench import untrusted
from posttrainbench.untrusted import Caps, Refused


def deep_tree(root, levels: int, name_length: int = 250) -> str:
    """Folders nested `levels` deep with long names (a path far past PATH_MAX), a file at the bottom; its rel."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    parts = []
    for level in range(levels):
        name = f"{level:03d}" + "d" * (name_length - 3)
        os.mkdir(name, dir_fd=fd)
        new = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd, parts = new, [*parts, name]
    out = os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(out, b"deep")
    os.close(out)
    os.close(fd)
    return "/".join([*parts, "bottom.txt"])


@pytest.fixture
def host(tmp_path):
    """A file outside the agent's folder that a link might aim at."""
    secret = tmp_path / "host" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("host data")
    return secret


def test_links_are_refused_at_every_component(tmp_path, host):
    agent = tmp_path / "agent"
    (agent / "real").mkdir(parents=True)
    (agent / "real" / "ok.txt").write_text("fine")
    (agent / "file_link").symlink_to(host)
    (agent / "dir_link").symlink_to(host.parent)
    assert untrusted.read_text(agent, "real/ok.txt") == "fine"
    for rel in ("file_link", "dir_link/secret.txt"):
        with pytest.raises(Refused, match="symbolic link"):
            untrusted.read_text(agent, rel)
    with pytest.raises(Refused, match="symbolic link"):
        untrusted.open_dir(agent, "dir_link")
    with pytest.raises(Refused, match=r"'\.\.'"):
        untrusted.read_text(agent, "real/../../host/secret.txt")
    for missing in ("missing", "x" * 300, "real/" + "y" * 5000):  # past NAME_MAX, past PATH_MAX
        with pytest.raises(FileNotFoundError):
            untrusted.read_text(agent, missing)
    assert not untrusted.is_file(agent, "file_link") and not untrusted.is_dir(agent, "dir_link")
    assert untrusted.is_file(agent, "real/ok.txt") and untrusted.is_dir(agent, "real")


def test_special_files_and_sizes_are_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo")  # opening it for reading would block a careless reader forever
    with pytest.raises(Refused, match="not a regular file"):
        untrusted.read_bytes(tmp_path, "fifo")
    (tmp_path / "big").write_bytes(b"x" * 100)
    with pytest.raises(Refused, match="larger than 10 bytes"):
        untrusted.read_bytes(tmp_path, "big", limit=10)


def test_hostile_json(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "nested.json").write_text("[" * 70 + "]" * 70)
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "number.json").write_text("1" * 10_000)
    (tmp_path / "ok.json").write_text('{"a": [1, {"b": null}]}')
    for name, problem in [("deep", "nested deeper"), ("nested", "nested deeper"), ("bad", "not valid JSON"),
                          ("number", "not valid JSON")]:
        with pytest.raises(Refused, match=problem):
            untrusted.read_json(tmp_path, f"{name}.json")
    assert untrusted.read_json(tmp_path, "ok.json") == {"a": [1, {"b": None}]}


def test_walk_reports_links_without_following_and_survives_path_max(tmp_path, host):
    agent = tmp_path / "agent"
    agent.mkdir()
    (agent / "a.txt").write_text("a")
    (agent / "to_host").symlink_to(host.parent)
    rel = deep_tree(agent, 20)
    assert len(str(agent / rel)) > os.pathconf("/", "PC_PATH_MAX")
    entries = {e.rel: e for e in untrusted.walk(agent)}
    assert entries["to_host"].kind == "link" and not any(r.startswith("to_host/") for r in entries)
    assert entries[rel].kind == "file" and entries[rel].depth == 21
    assert untrusted.read_text(agent, rel) == "deep"


def test_walk_caps(tmp_path):
    for i in range(10):
        (tmp_path / f"f{i}").write_bytes(b"x" * 10)
    deep_tree(tmp_path, 5, name_length=5)
    with pytest.raises(Refused, match="more than 5 files"):
        list(untrusted.walk(tmp_path, caps=Caps(files=5)))
    with pytest.raises(Refused, match="more than 50 bytes"):
        list(untrusted.walk(tmp_path, caps=Caps(bytes=50)))
    with pytest.raises(Refused, match="nested deeper than 3"):
        list(untrusted.walk(tmp_path, caps=Caps(depth=3)))
    noted = []
    entries = list(untrusted.walk(tmp_path, caps=Caps(depth=3), on_cap=noted.append))
    assert max(e.depth for e in entries) == 3 and len(noted) == 1
    pruned = list(untrusted.walk(tmp_path, prune=lambda e: e.kind == "dir"))
    assert max(e.depth for e in pruned) == 1


def test_copy_tree_refuses_links_and_the_folder_being_a_link(tmp_path, host):
    agent = tmp_path / "agent"
    (agent / "model").mkdir(parents=True)
    (agent / "model" / "w.bin").write_bytes(b"w")
    (agent / "linked_model").symlink_to(host.parent)
    with pytest.raises(Refused, match="symbolic link"):
        untrusted.copy_tree(agent, "linked_model", tmp_path / "copy1")
    (agent / "model" / "sub").mkdir()
    (agent / "model" / "sub" / "leak").symlink_to(host)
    with pytest.raises(Refused, match="symbolic link: sub/leak"):
        untrusted.copy_tree(agent, "model", tmp_path / "copy2")
    assert not (tmp_path / "copy2").exists()
    (agent / "model" / "sub" / "leak").unlink()
    copied = untrusted.copy_tree(agent, "model", tmp_path / "copy3", select=lambda e: e.kind == "file")
    assert [e.rel for e in copied] == ["w.bin"] and (tmp_path / "copy3" / "w.bin").read_bytes() == b"w"


def test_sparse_files_stay_sparse(tmp_path):
    sparse = tmp_path / "sparse.safetensors"
    with open(sparse, "wb") as handle:
        handle.write(b"head")
        handle.seek(1 << 30)
        handle.write(b"tail")
    copy = tmp_path / "copy.safetensors"
    assert untrusted.copy_file(tmp_path, sparse.name, copy) == (1 << 30) + 4
    assert copy.stat().st_size == (1 << 30) + 4 and copy.stat().st_blocks * 512 < 1 << 20
    with open(copy, "rb") as handle:
        assert handle.read(4) == b"head" and (handle.seek(1 << 30), handle.read())[1] == b"tail"
    with pytest.raises(Refused, match="larger than"):
        untrusted.copy_file(tmp_path, sparse.name, tmp_path / "capped", limit=1 << 20)


def test_write_file_replaces_planted_links(tmp_path, host):
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").symlink_to(host)
    (home / ".gemini").symlink_to(host.parent)
    (home / ".config").write_text("a file where a folder should be")
    untrusted.write_file(home, ".codex/config.toml", "codex")
    untrusted.write_file(home, ".gemini/settings.json", "gemini")
    untrusted.write_file(home, ".config/opencode/opencode.json", "opencode")
    assert host.read_text() == "host data" and sorted(p.name for p in host.parent.iterdir()) == ["secret.txt"]
    assert not (home / ".codex" / "config.toml").is_symlink()
    assert (home / ".codex" / "config.toml").read_text() == "codex"
    assert (home / ".gemini" / "settings.json").read_text() == "gemini" and not (home / ".gemini").is_symlink()
    assert (home / ".config" / "opencode" / "opencode.json").read_text() == "opencode"
    moved = [p.name for p in home.iterdir() if ".moved-by-ptb-" in p.name]
    assert len(moved) == 2  # the agent's link and file kept, under other names
    (home / "cfg").mkdir()
    untrusted.write_file(home, "cfg", b"x")
    assert (home / "cfg").read_bytes() == b"x"
    assert not [p for p in (home / ".codex").iterdir() if p.name.startswith(".config.toml.ptb-")]


def test_display_strips_terminal_control_and_markup():
    hostile = ("\x1b]0;owned title\x07\x1b[2J\x1b[32mintegrity passed\x1b[0m\r\x9b31m"
               "\u202egnp.exe\u202c [/bold] [red]x[/red] \udcff end\\")
    clean = untrusted.clean_text(hostile)
    assert "\x1b" not in clean and "\x9b" not in clean and "\u202e" not in clean and "\r" not in clean
    assert "owned title" not in clean and "integrity passed" in clean and "\udcff" not in clean
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, color_system=None).print(f"[dim]ptb[/] {untrusted.escape_text(hostile)}")
    assert "[/bold] [red]x[/red]" in buffer.getvalue() and "\x1b]" not in buffer.getvalue()
    assert untrusted.clean_text("a\nb") == "a b" and untrusted.clean_text("a\nb", newlines=True) == "a\nb"
    assert untrusted.clean_text("x" * 500, limit=10) == "x" * 9 + "…"


def test_holes_stay_holes_where_the_filesystem_hides_them(tmp_path, monkeypatch):
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as handle:
        handle.write(b"head")
        handle.truncate(256 << 20)
    monkeypatch.setattr(untrusted, "_data_ranges", lambda fd, size: [(0, size)])  # no SEEK_HOLE support
    untrusted.copy_file(tmp_path, "sparse", tmp_path / "copy")
    copy = tmp_path / "copy"
    assert copy.stat().st_size == 256 << 20 and copy.stat().st_blocks * 512 <= 2 << 20  # one block of data
    assert copy.read_bytes()[:4] == b"head"
