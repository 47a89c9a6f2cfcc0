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
