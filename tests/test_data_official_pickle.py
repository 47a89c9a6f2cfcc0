"""Official ``split_fewshot/shot_K-seed_S.pkl`` files: read without running code, recorded as our index."""

from __future__ import annotations

import json
import os
import pickle
import sys
import types
from pathlib import Path

import pytest
from data.builders import FIXTURES
from data_fixtures import build_dtd_fixture

from harness.cli import main
from harness.data import load_card, prepare_task_data
from harness.data.official_pickle import import_official_fewshot, load_official_pickle
from harness.errors import DataError


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def dassl_datum(monkeypatch: pytest.MonkeyPatch) -> type:
    """A class pickled under Dassl's name, as the official pickles reference it."""
    names = ["dassl", "dassl.data", "dassl.data.datasets", "dassl.data.datasets.base_dataset"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))

    class Datum:
        def __init__(self, impath: str, label: int, classname: str) -> None:
            self._impath, self._label, self._domain, self._classname = impath, label, 0, classname

    Datum.__module__ = names[-1]
    Datum.__qualname__ = "Datum"
    sys.modules[names[-1]].Datum = Datum  # type: ignore[attr-defined]
    return Datum


def write_official(path: Path, datum: type, image_dir: Path, train: list[tuple[str, int]],
                   val: list[tuple[str, int]] | None) -> Path:
    data = {"train": [datum(str(image_dir / p), label, "x") for p, label in train]}
    if val is not None:
        data["val"] = [datum(str(image_dir / p), label, "x") for p, label in val]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def test_official_selection_becomes_our_index(tmp_path: Path, dassl_datum: type) -> None:
    root = build_dtd_fixture(tmp_path / "data", n_classes=2)
    image_dir = (root / "dtd" / "images").resolve()
    train = [("banded/banded_0004.jpg", 0), ("blotchy/blotchy_0001.jpg", 1)]
    val = [("banded/banded_0006.jpg", 0), ("blotchy/blotchy_0005.jpg", 1)]
    write_official(root / "dtd" / "split_fewshot" / "shot_1-seed_1.pkl", dassl_datum, image_dir, train, val)
    index = import_official_fewshot(load_card("dtd"), root, 1, 1)
    record = json.loads(index.read_text())
    assert record["train"] == [p for p, _ in train] and record["val"] == [p for p, _ in val]
    task = prepare_task_data("dtd", root, shots=1, seed=1)  # reuses the imported selection
    assert [d.impath for d in task.train] == [p for p, _ in train]
    assert [d.impath for d in task.val] == [p for p, _ in val]


def test_imagenet_pickle_has_train_only(tmp_path: Path, dassl_datum: type, capsys: pytest.CaptureFixture[str]) -> None:
    root = FIXTURES["imagenet"][0](tmp_path / "data")
    pkl = write_official(tmp_path / "elsewhere.pkl", dassl_datum, Path("/old/machine/imagenet/images"),
                         [("train/n01440764/n01440764_10028.JPEG", 0)], None)
    args = ["data", "fewshot", "--data-root", str(root), "--dataset", "imagenet", "--shots", "1", "--seed", "2"]
    assert main([*args, "--from-official", str(pkl)]) == 0
    record = json.loads(Path(capsys.readouterr().out.strip()).read_text())
    assert record["train"] == ["train/n01440764/n01440764_10028.JPEG"] and record["val"] is None


def test_code_running_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"train": [Evil()]}))
    with pytest.raises(DataError, match=r"refused global (posix|os|nt)\.system"):
        load_official_pickle(path)
    assert not marker.exists()


def test_selection_not_in_the_split_is_refused(tmp_path: Path, dassl_datum: type) -> None:
    root = build_dtd_fixture(tmp_path / "data", n_classes=2)
    image_dir = root / "dtd" / "images"
    pkl = write_official(tmp_path / "a.pkl", dassl_datum, image_dir, [("banded/banded_0007.jpg", 0)], [])
    expected = r"train image 'banded/banded_0007\.jpg' \(label 0\) is not in dtd's train split"
    with pytest.raises(DataError, match=expected):
        import_official_fewshot(load_card("dtd"), root, 1, 1, pkl)
    pkl = write_official(tmp_path / "b.pkl", dassl_datum, Path("/data/eurosat/2750"), [("x/y.jpg", 0)], [])
    with pytest.raises(DataError, match="does not contain '/dtd/images/'; is this file for dtd"):
        import_official_fewshot(load_card("dtd"), root, 1, 1, pkl)


def test_missing_and_garbage_pickles(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="official few-shot file not found"):
        load_official_pickle(tmp_path / "none.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x05junk")
    with pytest.raises(DataError, match=r"cannot read official few-shot file .*junk\.pkl"):
        load_official_pickle(tmp_path / "junk.pkl")
