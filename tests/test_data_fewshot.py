"""Few-shot sampling reproduces the official selection; the JSON index is written once, reused, checked."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import pytest
from data.builders import FIXTURES
from data_fixtures import build_dtd_fixture

from harness.data import Datum, prepare_task_data, sample_few_shot, sample_train_val
from harness.data.fewshot import fewshot_index_path
from harness.errors import DataError

DTD4 = ("banded", "blotchy", "braided", "bubbly")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def items(labels: list[int]) -> list[Datum]:
    return [Datum(f"img{i}.jpg", label, f"c{label}") for i, label in enumerate(labels)]


def test_groups_in_order_of_first_appearance_and_small_classes_keep_all() -> None:
    data = items([2, 0, 2, 1, 0, 2, 0])
    picked = sample_few_shot(data, 2, random.Random(0))
    assert [d.label for d in picked] == [2, 2, 0, 0, 1]  # class 1 has one item: kept, no repeats
    assert picked[4].impath == "img3.jpg"
    # the same draws, by hand: one rng.sample per class, classes in order 2, 0, 1
    rng = random.Random(0)
    expected = rng.sample([data[0], data[2], data[5]], 2) + rng.sample([data[1], data[4], data[6]], 2) + [data[3]]
    assert picked == expected


def test_train_then_val_from_one_generator_equals_the_official_global_random() -> None:
    train, val = items([0] * 6 + [1] * 6), items([0] * 5 + [1] * 5)
    ours_train, ours_val = sample_train_val(train, val, 16 // 4, seed=1)
    state = random.getstate()
    try:  # the official code: random.seed(SEED), then generate_fewshot_dataset(train), then (val, min(K, 4))
        random.seed(1)
        official_train = [x for g in (train[:6], train[6:]) for x in random.sample(g, 4)]
        official_val = [x for g in (val[:5], val[5:]) for x in random.sample(g, 4)]
    finally:
        random.setstate(state)
    assert ours_train == official_train and ours_val == official_val


def test_shots_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        sample_few_shot(items([0]), 0, random.Random(0))


def test_dtd_selection_matches_hand_derived_files(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path / "data")  # 4 classes, 4 train / 2 val / 3 test per class
    task = prepare_task_data("dtd", root, shots=2, seed=1)
    rng = random.Random(1)
    want_train = [p for c in DTD4 for p in rng.sample([f"{c}/{c}_{i:04d}.jpg" for i in range(1, 5)], 2)]
    want_val = [p for c in DTD4 for p in rng.sample([f"{c}/{c}_{i:04d}.jpg" for i in (5, 6)], 2)]
    assert [d.impath for d in task.train] == want_train
    assert [d.impath for d in task.val] == want_val
    assert want_train[:4] == [
        "banded/banded_0002.jpg", "banded/banded_0003.jpg", "blotchy/blotchy_0001.jpg", "blotchy/blotchy_0002.jpg"
    ]
    assert len(task.test) == 12  # test is never sampled


def test_index_is_written_with_relative_paths_and_reused(tmp_path: Path, isolated_cache: Path) -> None:
    root = build_dtd_fixture(tmp_path / "data")
    task = prepare_task_data("dtd", root, shots=1, seed=2)
    assert task.fewshot_index == (isolated_cache / "fewshot" / "dtd" / f"split_{task.split_sha256[:16]}" /
                                  "shot_1-seed_2.json")
    record = json.loads(task.fewshot_index.read_text())
    assert record["split_sha256"] == task.split_sha256 and record["shots"] == 1 and record["seed"] == 2
    assert record["train"] == [d.impath for d in task.train] and len(record["val"]) == 4
    assert all(not Path(p).is_absolute() and not p.startswith(str(tmp_path)) for p in record["train"] + record["val"])
    # Reuse: the selection comes from the file, not from sampling again.
    record["train"] = ["banded/banded_0004.jpg", "blotchy/blotchy_0004.jpg", "braided/braided_0004.jpg",
                       "bubbly/bubbly_0004.jpg"]
    task.fewshot_index.write_text(json.dumps(record))
    again = prepare_task_data("dtd", root, shots=1, seed=2)
    assert [d.impath for d in again.train] == record["train"]


def test_index_of_another_split_file_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path / "data")
    path = prepare_task_data("dtd", root, shots=1, seed=1).fewshot_index
    record = json.loads(path.read_text())
    record["split_sha256"] = "0" * 64
    path.write_text(json.dumps(record))
    with pytest.warns(UserWarning, match="sampling again"):
        task = prepare_task_data("dtd", root, shots=1, seed=1)
    assert json.loads(path.read_text())["split_sha256"] == task.split_sha256


def test_index_naming_an_image_outside_the_split_is_an_error(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path / "data")
    path = prepare_task_data("dtd", root, shots=1, seed=1).fewshot_index
    record = json.loads(path.read_text())
    record["train"][0] = "banded/not_there.jpg"
    path.write_text(json.dumps(record))
    with pytest.raises(DataError, match=r"shot_1-seed_1\.json.*banded/not_there\.jpg"):
        prepare_task_data("dtd", root, shots=1, seed=1)


def test_index_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = build_dtd_fixture(tmp_path / "data")

    def broken_dump(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("harness.data.splitio.json.dump", broken_dump)
    with pytest.raises(RuntimeError):
        prepare_task_data("dtd", root, shots=1, seed=1)
    folder = fewshot_index_path("dtd", 1, 1).parent
    assert [p for p in folder.rglob("*") if p.is_file()] == []  # neither the index nor a temporary file


def test_shots_without_seed_is_an_error(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path / "data")
    with pytest.raises(DataError, match="needs an explicit seed"):
        prepare_task_data("dtd", root, shots=4)


def test_seed_zero_is_a_real_seed(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path / "data")
    task = prepare_task_data("dtd", root, shots=1, seed=0)
    assert task.fewshot_index.name == "shot_1-seed_0.json"


def test_imagenet_samples_train_only_and_val_is_test(tmp_path: Path) -> None:
    root = FIXTURES["imagenet"][0](tmp_path / "data")
    task = prepare_task_data("imagenet", root, shots=2, seed=1)
    assert len(task.train) == 8 and task.val == task.test and len(task.test) == 8
    assert json.loads(task.fewshot_index.read_text())["val"] is None


def test_base_and_new_runs_share_the_few_shot_selection(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path / "data")
    full = prepare_task_data("dtd", root, shots=2, seed=1)
    base = prepare_task_data("dtd", root, shots=2, seed=1, subsample="base")
    new = prepare_task_data("dtd", root, shots=2, seed=1, subsample="new")
    assert base.fewshot_index == new.fewshot_index == full.fewshot_index
    assert base.classnames == ["banded", "blotchy"] and new.classnames == ["braided", "bubbly"]
    assert [d.impath for d in base.train] == [d.impath for d in full.train[:4]]
    assert [d.impath for d in new.train] == [d.impath for d in full.train[4:]]
    assert [d.label for d in new.train] == [0, 0, 1, 1]
    assert len(new.test) == 6 and {d.label for d in new.test} == {0, 1}
    assert {d.classname for d in new.val} == {"braided", "bubbly"}


def test_sampling_leaves_the_global_random_state_alone(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path / "data")
    random.seed(123)
    before = random.getstate()
    prepare_task_data("dtd", root, shots=2, seed=1)
    sample_few_shot(items([0, 0, 1]), 1, random.Random(5))
    assert random.getstate() == before


def test_same_dataset_under_two_data_roots_keeps_two_indexes(tmp_path: Path) -> None:
    first_root = build_dtd_fixture(tmp_path / "one")
    second_root = build_dtd_fixture(tmp_path / "two", per_split=(3, 2, 3))  # another split file
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither replaces the other's index ("sampling again" warning)
        first = prepare_task_data("dtd", first_root, shots=2, seed=1)
        second = prepare_task_data("dtd", second_root, shots=2, seed=1)
        again = prepare_task_data("dtd", first_root, shots=2, seed=1)
    assert first.split_sha256 != second.split_sha256
    assert first.fewshot_index != second.fewshot_index
    assert first.fewshot_index.is_file() and second.fewshot_index.is_file()
    assert first.fewshot_index.parent.name == f"split_{first.split_sha256[:16]}"
    assert [d.impath for d in again.train] == [d.impath for d in first.train]
    assert json.loads(first.fewshot_index.read_text())["split_sha256"] == first.split_sha256


def test_index_at_the_old_path_is_still_read_when_drawn_from_the_same_split(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path / "data")
    sha = prepare_task_data("dtd", root).split_sha256
    chosen = ["banded/banded_0004.jpg", "blotchy/blotchy_0004.jpg", "braided/braided_0004.jpg",
              "bubbly/bubbly_0004.jpg"]
    legacy = fewshot_index_path("dtd", 1, 5)
    legacy.parent.mkdir(parents=True, exist_ok=True)
    val = ["banded/banded_0005.jpg", "blotchy/blotchy_0005.jpg", "braided/braided_0005.jpg", "bubbly/bubbly_0005.jpg"]
    legacy.write_text(json.dumps({"version": 1, "split_sha256": sha, "train": chosen, "val": val}))
    task = prepare_task_data("dtd", root, shots=1, seed=5)
    assert [d.impath for d in task.train] == chosen  # the recorded selection, not a new draw
    assert task.fewshot_index == fewshot_index_path("dtd", 1, 5, sha)
    assert json.loads(task.fewshot_index.read_text())["train"] == chosen

    other = fewshot_index_path("dtd", 1, 6)
    other.write_text(json.dumps({"version": 1, "split_sha256": "0" * 64, "train": chosen, "val": val}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # another root's old index is left alone, without a warning
        task = prepare_task_data("dtd", root, shots=1, seed=6)
    assert task.fewshot_index != other and json.loads(other.read_text())["split_sha256"] == "0" * 64
