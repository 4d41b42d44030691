import json

import torch
from safetensors.torch import save_file

from posttrainbench.workspace.collect import collect


def _model(folder, **config):
    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(2, 2)}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", **config}))
    (folder / "tokenizer.json").write_text("{}")
    return folder


def sparse_safetensors(path, floats: int) -> None:
    """A valid safetensors file of one all-zero tensor whose data is a hole: a few KB on disk."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [floats], "data_offsets": [0, 4 * floats]}}).encode()
    with open(path, "wb") as handle:
        handle.write(len(header).to_bytes(8, "little") + header)
        handle.truncate(8 + len(header) + 4 * floats)


def _base(tmp_path):
    base = _model(tmp_path / "base")
    (base / "tokenizer_config.json").write_text("{}")
    return base


def test_vetted_copy_keeps_only_weights_config_and_tokenizer(tmp_path):
    sub = _model(tmp_path / "final_model")
    (sub / "generation_config.json").write_text('{"temperature": 0.01}')
    (sub / "modeling_evil.py").write_text("import os")
    (sub / "training_args.bin").write_bytes(b"\x80\x04")
    result = collect(sub, tmp_path / "vetted", _base(tmp_path))
    assert result.status == "ok" and not result.tokenizer_from_base
    assert sorted(p.name for p in (tmp_path / "vetted").iterdir()) == ["config.json", "model.safetensors",
                                                                        "tokenizer.json"]


def test_missing_tokenizer_comes_from_the_base_model(tmp_path):
    sub = _model(tmp_path / "final_model")
    (sub / "tokenizer.json").unlink()
    result = collect(sub, tmp_path / "vetted", _base(tmp_path))
    assert result.status == "ok" and result.tokenizer_from_base
    assert (tmp_path / "vetted" / "tokenizer_config.json").is_file()


def test_missing_model(tmp_path):
    result = collect(tmp_path / "final_model", tmp_path / "vetted", _base(tmp_path))
    assert result.status == "missing" and not (tmp_path / "vetted").exists()


def test_rejections(tmp_path):
    base = _base(tmp_path)
    cases = {}

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    (pickled / "config.json").write_text("{}")
    cases["pickled"] = (pickled, "no .safetensors weights (found pickled weights pytorch_model.bin")

    remote = _model(tmp_path / "remote", auto_map={"AutoModelForCausalLM": "x.Y"})
    cases["remote"] = (remote, "needs remote code")

    linked = _model(tmp_path / "linked")
    (linked / "extra.safetensors").symlink_to(base / "model.safetensors")
    cases["linked"] = (linked, "symbolic link")

    corrupt = _model(tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    cases["corrupt"] = (corrupt, "not a readable safetensors file")

    noconfig = _model(tmp_path / "noconfig")
    (noconfig / "config.json").unlink()
    cases["noconfig"] = (noconfig, "no config.json")

    sharded = _model(tmp_path / "sharded")
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model.safetensors", "v": "model-00002-of-00002.safetensors"}}))
    cases["sharded"] = (sharded, "missing shards: model-00002-of-00002.safetensors")

    for name, (folder, expected) in cases.items():
        result = collect(folder, tmp_path / f"vetted-{name}", base)
        assert result.status == "rejected", name
        assert expected in result.reason, (name, result.reason)
        assert not (tmp_path / f"vetted-{name}").exists()


def test_final_model_that_is_a_link_to_a_host_folder_is_rejected(tmp_path):
    host_model = _model(tmp_path / "host_model")
    task = tmp_path / "task"
    task.mkdir()
    (task / "final_model").symlink_to(host_model)
    result = collect(task / "final_model", tmp_path / "vetted", _base(tmp_path))
    assert result.status == "rejected" and result.reason == "final_model is a symbolic link"
    assert not (tmp_path / "vetted").exists()


def test_sparse_weights_stay_sparse_in_the_copy(tmp_path):
    sub = _model(tmp_path / "final_model")
    sparse_safetensors(sub / "model.safetensors", 1 << 26)
    result = collect(sub, tmp_path / "vetted", _base(tmp_path))
    copy = tmp_path / "vetted" / "model.safetensors"
    assert result.status == "ok" and copy.stat().st_size > 1 << 28 and copy.stat().st_blocks * 512 < 1 << 20, result


def test_a_folder_swapped_for_a_link_below_the_root_is_refused(tmp_path):
    # The evaluation service names a checkpoint, then copies it: a parent folder the agent replaces by a link to
    # a host folder in between must not be followed.
    task = tmp_path / "task"
    _model(tmp_path / "host" / "ckpt")
    task.mkdir()
    (task / "runs").symlink_to(tmp_path / "host")
    result = collect(task / "runs" / "ckpt", tmp_path / "vetted", _base(tmp_path), root=task)
    assert result.status == "rejected" and not (tmp_path / "vetted").exists()
