"""The TorchScript reader returns exactly ``torch.jit.load(...).state_dict()`` without running the archive."""

from __future__ import annotations

import warnings
import zipfile

import torch
from clip_files import make_openai_clip, save_openai_torchscript

from harness.models.files import read_state_dict
from harness.models.torchscript import is_torchscript_archive, read_torchscript_state_dict


def test_reader_equals_jit_state_dict(tmp_path):
    path = save_openai_torchscript(make_openai_clip(seed=1), tmp_path / "ViT-T.pt")
    with zipfile.ZipFile(path) as archive:
        assert is_torchscript_archive(archive)
        state = read_torchscript_state_dict(path, archive)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = torch.jit.load(str(path)).state_dict()  # our own test file: safe to run here
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype, key
        assert torch.equal(state[key], value), key
    # OpenAI's metadata entries come through as tensors, and the weights keep OpenAI's dtype mix.
    assert int(state["input_resolution"]) == 32 and int(state["vocab_size"]) == 49408
    assert state["visual.conv1.weight"].dtype == torch.float16
    assert state["ln_final.weight"].dtype == torch.float32


def test_plain_torch_save_zip_is_not_taken_for_torchscript(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"a": torch.arange(3)}, path)
    with zipfile.ZipFile(path) as archive:
        assert not is_torchscript_archive(archive)
    state, kind = read_state_dict(path)
    assert kind == "torch" and torch.equal(state["a"], torch.arange(3))


def test_mangled_class_declared_in_the_unmangled_file(tmp_path):
    """Some exporters keep a mangled class (``mod.___torch_mangle_N.Name``) in ``mod.py``; both layouts read."""
    path = save_openai_torchscript(make_openai_clip(seed=1), tmp_path / "ViT-T.pt")
    moved = tmp_path / "moved.pt"
    with zipfile.ZipFile(path) as source:
        names = source.namelist()
        mangled = [n for n in names if "/___torch_mangle_" in n and n.endswith(".py")]
        assert mangled
        by_parent: dict[str, str] = {}
        for name in mangled:
            parent = name.rsplit("/", 1)[0] + ".py"
            by_parent[parent] = by_parent.get(parent, "") + "\n" + source.read(name).decode()
        with zipfile.ZipFile(moved, "w") as target:
            for item in source.infolist():
                if item.filename in mangled:
                    continue
                data = source.read(item.filename)
                if item.filename in by_parent:
                    data = data + by_parent.pop(item.filename).encode()
                target.writestr(item, data)
            for parent, text in by_parent.items():  # modules that only had mangled classes
                target.writestr(parent, text.encode())
    expected, _ = read_state_dict(path)
    state, kind = read_state_dict(moved)
    assert kind == "torchscript" and list(state) == list(expected)
