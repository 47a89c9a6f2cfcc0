"""Bad backbone inputs get a clear CheckpointError saying what to do, and no file ever runs code."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from clip_files import make_openai_clip, openai_state_dict, save_openai_torchscript, write_backbone_folder

from harness.errors import CheckpointError, HarnessError
from harness.models import load_backbone
from harness.paths import REPO_DIR


class _RunsCode:
    """Unpickling this object runs ``open(marker, "w")`` (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"weights file not found; pass an existing file"):
        load_backbone(str(tmp_path / "ViT-B-16.pt"), device="cpu")


def test_corrupt_file(tmp_path):
    path = tmp_path / "clip.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match=r"clip\.pt: not a readable weights file \(expected a torch.save"):
        load_backbone(str(path), device="cpu")


def test_truncated_torch_file(tmp_path):
    path = tmp_path / "clip.pt"
    torch.save(openai_state_dict(make_openai_clip()), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"clip\.pt: not a readable weights file"):
        load_backbone(str(path), device="cpu")


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"visual.proj": torch.zeros(2, 2), "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: .*would run code"):
        load_backbone(str(path), device="cpu")
    assert not marker.exists()


def test_torchscript_archive_with_code_in_its_pickle_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    path = save_openai_torchscript(make_openai_clip(), tmp_path / "clip.pt")
    rewritten = tmp_path / "evil.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(rewritten, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps(_RunsCode(marker), protocol=2)
            target.writestr(item, data)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: the TorchScript archive's data.pkl references"):
        load_backbone(str(rewritten), device="cpu")
    assert not marker.exists()


def test_state_dict_with_wrong_keys_names_them(tmp_path):
    state = openai_state_dict(make_openai_clip())
    del state["ln_final.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "clip.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing: ln_final\.bias; unexpected: extra\.weight"):
        load_backbone(str(path), device="cpu")


def test_not_a_clip_state_dict(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match=r"key 'ln_final.weight' not found; expected a CLIP state dict"):
        load_backbone(str(path), device="cpu")


def test_incomplete_folder(tmp_path):
    folder = write_backbone_folder(tmp_path / "clip")
    (folder / "preprocess.json").unlink()
    with pytest.raises(CheckpointError, match=r"not a backbone folder: missing preprocess.json"):
        load_backbone(str(folder), device="cpu")


def test_embedded_asset_missing(tmp_path, monkeypatch):
    from harness.models import sources

    monkeypatch.setattr(sources, "EMBEDDED_DIR", tmp_path / "embedded_clip")
    with pytest.raises(CheckpointError, match=r"the embedded tiny CLIP is not in this installation"):
        load_backbone("embedded", device="cpu")


def test_unknown_model_name_suggests_close_ones():
    with pytest.raises(CheckpointError, match=r"unknown open_clip model config 'ViT-B-61'.*Did you mean"):
        load_backbone("ViT-B-61", pretrained="openai", device="cpu")


def test_open_clip_name_needs_a_tag():
    with pytest.raises(CheckpointError, match=r"ViT-B-16 needs --pretrained: one of .*openai"):
        load_backbone("ViT-B-16", device="cpu")


def test_unknown_tag_lists_known_tags():
    with pytest.raises(CheckpointError, match=r"unknown pretrained tag 'nope' .* known tags: .*openai"):
        load_backbone("ViT-B/16", pretrained="nope", device="cpu")


def test_bad_precision_and_device():
    with pytest.raises(HarnessError, match=r"--precision 'fp8'"):
        load_backbone("embedded", device="cpu", precision="fp8")
    with pytest.raises(HarnessError, match=r"--device 'tpu'"):
        load_backbone("embedded", device="tpu")


@pytest.mark.slow
def test_uncached_pretrained_tag_offline_says_what_to_do(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "PYTHONPATH": str(REPO_DIR),
    }
    code = "from harness.models import load_backbone; load_backbone('ViT-B-32', pretrained='openai', device='cpu')"
    completed = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode != 0
    assert "CheckpointError: cannot fetch open_clip weights ViT-B-32 / openai" in completed.stderr
    assert "download them on a machine with internet" in completed.stderr
    assert "--pretrained /path/to/weights" in completed.stderr


def test_options_that_do_not_apply(tmp_path):
    with pytest.raises(HarnessError, match="do not apply to --model embedded"):
        load_backbone("embedded", pretrained="openai", device="cpu")
    folder = write_backbone_folder(tmp_path / "clip")
    with pytest.raises(HarnessError, match="--pretrained applies to open_clip model names"):
        load_backbone(str(folder), pretrained="openai", device="cpu")
    with pytest.raises(HarnessError, match="--model-config applies to weights files"):
        load_backbone("ViT-B-16", model_config="ViT-B-16", device="cpu")
