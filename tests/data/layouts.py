"""Tiny fixture folders in the exact official layouts of the nine split-JSON datasets.

Each builder writes the original annotation files (folders, txt lists, ``.mat`` files) AND the
``split_zhou_*.json`` file, as the real downloads hold them, and returns the data root. The split JSON
puts, per class, the first ``per_class[0]`` images in train, the next ``per_class[1]`` in val and the
rest in test. ``EXPECTED_CLASSNAMES`` holds, written by hand from the spec, the class names (indexed by
label) the official reader derives for these fixtures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from data_fixtures import build_dtd_fixture, class_color, write_image
from scipy.io import savemat

Split = dict[str, list[list[object]]]
PER_CLASS = (3, 2, 2)

EXPECTED_CLASSNAMES = {
    "caltech101": ["face", "leopard", "motorbike", "accordion", "airplane"],
    "oxford_pets": ["abyssinian", "american_bulldog", "american_pit_bull_terrier"],
    "stanford_cars": ["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Tesla Model S Sedan"],
    "oxford_flowers": ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"],
    "food101": ["apple_pie", "baby_back_ribs", "baklava"],
    "sun397": ["abbey", "airplane_cabin", "outdoor apartment_building"],
    "dtd": ["banded", "blotchy", "braided", "bubbly"],
    "eurosat": ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land"],
    "ucf101": ["Apply_Eye_Makeup", "Apply_Lipstick", "Blow_Dry_Hair"],
}


def _assign(split: Split, per_class: tuple[int, int, int], index: int, entry: list[object]) -> None:
    """Put the ``index``-th image of a class into train, val or test by position."""
    name = "train" if index < per_class[0] else "val" if index < per_class[0] + per_class[1] else "test"
    split[name].append(entry)


def _write_split(path: Path, split: Split) -> None:
    path.write_text(json.dumps(split, indent=4))


def _empty() -> Split:
    return {"train": [], "val": [], "test": []}


def build_folder_dataset(root: Path, folder: str, image_dir: str, split_name: str,
                         classes: list[tuple[str, str]], per_class: tuple[int, int, int] = PER_CLASS,
                         extra_folders: tuple[str, ...] = (), name_of: Callable[[str, int], str] | None = None,
                         with_split: bool = True) -> Path:
    """A ``<folder>/<image_dir>/<category>/<image>`` dataset; ``classes`` = (folder name, class name) by label."""
    images = Path(root) / folder / image_dir
    split = _empty()
    name_of = name_of or (lambda category, i: f"image_{i + 1:04d}.jpg")
    for label, (category, classname) in enumerate(classes):
        for i in range(sum(per_class)):
            relpath = f"{category}/{name_of(category, i)}"
            write_image(images / relpath, color=class_color(label, i))
            _assign(split, per_class, i, [relpath, label, classname])
    for category in extra_folders:  # present on disk, ignored by the reader
        write_image(images / category / "image_0001.jpg")
    if with_split:
        _write_split(Path(root) / folder / split_name, split)
    return Path(root)


def build_caltech101(root: Path, with_split: bool = True) -> Path:
    """``caltech-101/101_ObjectCategories/<cat>/image_NNNN.jpg`` incl. BACKGROUND_Google and Faces_easy."""
    folders = ["Faces", "Leopards", "Motorbikes", "accordion", "airplanes"]  # sorted, case-sensitive
    classes = list(zip(folders, EXPECTED_CLASSNAMES["caltech101"]))
    return build_folder_dataset(root, "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", classes,
                                extra_folders=("BACKGROUND_Google", "Faces_easy"), with_split=with_split)


def build_food101(root: Path, with_split: bool = True) -> Path:
    """``food-101/images/<class>/<id>.jpg``."""
    classes = [(c, c) for c in EXPECTED_CLASSNAMES["food101"]]
    return build_folder_dataset(root, "food-101", "images", "split_zhou_Food101.json", classes,
                                name_of=lambda c, i: f"{1005649 + 7 * i}.jpg", with_split=with_split)


def build_eurosat(root: Path, with_split: bool = True) -> Path:
    """``eurosat/2750/<Class>/<Class>_<n>.jpg``; the split JSON holds the renamed class names."""
    classes = list(zip(["AnnualCrop", "Forest", "HerbaceousVegetation"], EXPECTED_CLASSNAMES["eurosat"]))
    return build_folder_dataset(root, "eurosat", "2750", "split_zhou_EuroSAT.json", classes,
                                name_of=lambda c, i: f"{c}_{i + 1}.jpg", with_split=with_split)


def build_dtd(root: Path, with_split: bool = True) -> Path:
    """``dtd/images/<category>/<category>_NNNN.jpg`` (4 classes, 4/2/3 per class)."""
    build_dtd_fixture(root, n_classes=4, per_split=(4, 2, 3), image_size=8)
    if not with_split:
        (Path(root) / "dtd" / "split_zhou_DescribableTextures.json").unlink()
    return Path(root)


def build_oxford_pets(root: Path, with_split: bool = True) -> Path:
    """``oxford_pets/images/<Breed>_<n>.jpg`` with ``annotations/{trainval,test}.txt``."""
    breeds = [("Abyssinian", 1, 1), ("american_bulldog", 2, 1), ("american_pit_bull_terrier", 2, 2)]
    folder = Path(root) / "oxford_pets"
    split, trainval, test = _empty(), [], []
    for label, (breed, species, breed_id) in enumerate(breeds):
        for i in range(sum(PER_CLASS)):
            stem = f"{breed}_{100 + i}"
            write_image(folder / "images" / f"{stem}.jpg", color=class_color(label, i))
            (trainval if i < PER_CLASS[0] + PER_CLASS[1] else test).append(f"{stem} {label + 1} {species} {breed_id}")
            _assign(split, PER_CLASS, i, [f"{stem}.jpg", label, EXPECTED_CLASSNAMES["oxford_pets"][label]])
    (folder / "annotations").mkdir()
    (folder / "annotations" / "trainval.txt").write_text("\n".join(trainval) + "\n")
    (folder / "annotations" / "test.txt").write_text("\n".join(test) + "\n")
    if with_split:
        _write_split(folder / "split_zhou_OxfordPets.json", split)
    return Path(root)


def _cars_annotations(entries: list[tuple[str, int]]) -> dict[str, np.ndarray]:
    """A ``cars_*_annos.mat`` struct array (bbox_x1..y2, class (1-based), fname), as the devkit has it."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    annotations = np.zeros((1, len(entries)), dtype=[(f, "O") for f in fields])
    for i, (fname, label) in enumerate(entries):
        for key in fields[:4]:
            annotations[0, i][key] = np.array([[1]], dtype=np.uint8)
        annotations[0, i]["class"] = np.array([[label + 1]], dtype=np.uint8)
        annotations[0, i]["fname"] = np.array([fname])
    return {"annotations": annotations}


def build_stanford_cars(root: Path, with_split: bool = True) -> Path:
    """``stanford_cars/{cars_train,cars_test}/NNNNN.jpg`` with the devkit ``.mat`` files; paths relative to it."""
    folder = Path(root) / "stanford_cars"
    meta = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Tesla Model S Sedan 2012"]
    split, train_annos, test_annos = _empty(), [], []
    for label in range(len(meta)):
        for i in range(sum(PER_CLASS)):
            in_test = i >= PER_CLASS[0] + PER_CLASS[1]
            annos = test_annos if in_test else train_annos
            fname = f"{len(annos) + 1:05d}.jpg"
            annos.append((fname, label))
            relpath = f"{'cars_test' if in_test else 'cars_train'}/{fname}"
            write_image(folder / relpath, color=class_color(label, i))
            _assign(split, PER_CLASS, i, [relpath, label, EXPECTED_CLASSNAMES["stanford_cars"][label]])
    (folder / "devkit").mkdir()
    names = np.empty((1, len(meta)), dtype=object)
    for i, name in enumerate(meta):
        names[0, i] = np.array([name])
    savemat(folder / "devkit" / "cars_meta.mat", {"class_names": names})
    savemat(folder / "devkit" / "cars_train_annos.mat", _cars_annotations(train_annos))
    savemat(folder / "cars_test_annos_withlabels.mat", _cars_annotations(test_annos))
    if with_split:
        _write_split(folder / "split_zhou_StanfordCars.json", split)
    return Path(root)


def build_oxford_flowers(root: Path, with_split: bool = True) -> Path:
    """``oxford_flowers/jpg/image_NNNNN.jpg`` with ``imagelabels.mat`` (1-based) and ``cat_to_name.json``."""
    folder = Path(root) / "oxford_flowers"
    n_classes, total = 3, sum(PER_CLASS)
    labels = [(i % n_classes) + 1 for i in range(n_classes * total)]  # classes interleaved, as on disk
    split, seen = _empty(), [0] * n_classes
    for i, label in enumerate(labels):
        name = f"image_{i + 1:05d}.jpg"
        write_image(folder / "jpg" / name, color=class_color(label - 1, i))
        _assign(split, PER_CLASS, seen[label - 1], [name, label - 1, EXPECTED_CLASSNAMES["oxford_flowers"][label - 1]])
        seen[label - 1] += 1
    savemat(folder / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    names = {str(i + 1): n for i, n in enumerate(EXPECTED_CLASSNAMES["oxford_flowers"])}
    (folder / "cat_to_name.json").write_text(json.dumps(names))
    if with_split:
        _write_split(folder / "split_zhou_OxfordFlowers.json", split)
    return Path(root)


def build_sun397(root: Path, with_split: bool = True) -> Path:
    """``sun397/SUN397/<l>/<cat>[/<sub>]/sun_*.jpg`` with ``ClassName.txt``, ``Training_01.txt``, ``Testing_01.txt``."""
    folder = Path(root) / "sun397"
    categories = ["a/abbey", "a/airplane_cabin", "a/apartment_building/outdoor"]
    split, training, testing = _empty(), [], []
    for label, category in enumerate(categories):
        for i in range(sum(PER_CLASS)):
            relpath = f"{category}/sun_{'abcdefg'[label]}{i:05d}.jpg"
            write_image(folder / "SUN397" / relpath, color=class_color(label, i))
            (training if i < PER_CLASS[0] + PER_CLASS[1] else testing).append(f"/{relpath}")
            _assign(split, PER_CLASS, i, [relpath, label, EXPECTED_CLASSNAMES["sun397"][label]])
    (folder / "ClassName.txt").write_text("".join(f"/{c}\n" for c in categories))
    (folder / "Training_01.txt").write_text("\n".join(training) + "\n")
    (folder / "Testing_01.txt").write_text("\n".join(testing) + "\n")
    if with_split:
        _write_split(folder / "split_zhou_SUN397.json", split)
    return Path(root)


def build_ucf101(root: Path, with_split: bool = True) -> Path:
    """``ucf101/UCF-101-midframes/<Action_Words>/v_<Action>_gNN_cNN.jpg`` with ``ucfTrainTestlist/*.txt``."""
    folder = Path(root) / "ucf101"
    actions = ["ApplyEyeMakeup", "ApplyLipstick", "BlowDryHair"]
    split, trainlist, testlist = _empty(), [], []
    for label, action in enumerate(actions):
        words = EXPECTED_CLASSNAMES["ucf101"][label]
        for i in range(sum(PER_CLASS)):
            video = f"v_{action}_g{i + 8:02d}_c01"
            write_image(folder / "UCF-101-midframes" / words / f"{video}.jpg", color=class_color(label, i))
            if i < PER_CLASS[0] + PER_CLASS[1]:
                trainlist.append(f"{action}/{video}.avi {label + 1}")
            else:
                testlist.append(f"{action}/{video}.avi")
            _assign(split, PER_CLASS, i, [f"{words}/{video}.jpg", label, words])
    lists = folder / "ucfTrainTestlist"
    lists.mkdir()
    # The real lists use Windows line endings.
    (lists / "classInd.txt").write_bytes("".join(f"{i + 1} {a}\r\n" for i, a in enumerate(actions)).encode())
    (lists / "trainlist01.txt").write_bytes(("\r\n".join(trainlist) + "\r\n").encode())
    (lists / "testlist01.txt").write_bytes(("\r\n".join(testlist) + "\r\n").encode())
    if with_split:
        _write_split(folder / "split_zhou_UCF101.json", split)
    return Path(root)
