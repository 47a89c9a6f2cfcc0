"""Tiny fixture folders in the official layouts of FGVCAircraft and the ImageNet family (no split JSON)."""

from __future__ import annotations

from pathlib import Path

from data_fixtures import class_color, write_image

# classnames.txt lines as CoOp ships them (CLIP's cleaned names), in wnid order.
IMAGENET_CLASSNAMES = [
    ("n01440764", "tench"),
    ("n01443537", "goldfish"),
    ("n01484850", "great white shark"),
    ("n01491361", "tiger shark"),
    ("n01494475", "hammerhead shark"),
]
AIRCRAFT_VARIANTS = ["707-320", "727-200", "Cessna 172"]
AIRCRAFT_COUNTS = {"train": 3, "val": 2, "test": 2}


def write_classnames(folder: Path) -> None:
    """``classnames.txt``: ``<wnid> <name words...>`` per line."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classnames.txt").write_text("".join(f"{w} {n}\n" for w, n in IMAGENET_CLASSNAMES))


def build_fgvc_aircraft(root: Path) -> Path:
    """``fgvc_aircraft/images/<id>.jpg`` with ``variants.txt`` and ``images_variant_{train,val,test}.txt``."""
    folder = Path(root) / "fgvc_aircraft"
    image_id = 1025794
    lists: dict[str, list[str]] = {name: [] for name in AIRCRAFT_COUNTS}
    for split, count in AIRCRAFT_COUNTS.items():
        for i in range(count):
            for label, variant in enumerate(AIRCRAFT_VARIANTS):
                write_image(folder / "images" / f"{image_id:07d}.jpg", color=class_color(label, i))
                lists[split].append(f"{image_id:07d} {variant}")
                image_id += 1
    (folder / "variants.txt").write_text("".join(f"{v}\n" for v in AIRCRAFT_VARIANTS))
    for split, lines in lists.items():
        (folder / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return Path(root)


def build_imagenet(root: Path, n_train: int = 3, n_val: int = 2) -> Path:
    """``imagenet/images/{train,val}/<wnid>/*.JPEG`` and ``imagenet/classnames.txt`` (first 4 classes)."""
    folder = Path(root) / "imagenet"
    write_classnames(folder)
    # Written in reverse wnid order so that a reader relying on creation order would get it wrong.
    for label, (wnid, _) in reversed(list(enumerate(IMAGENET_CLASSNAMES[:4]))):
        for i in reversed(range(n_train)):
            write_image(folder / "images" / "train" / wnid / f"{wnid}_{10026 + i}.JPEG", color=class_color(label, i))
        for i in range(n_val):
            name = f"ILSVRC2012_val_{293 + 1000 * label + i:08d}.JPEG"
            write_image(folder / "images" / "val" / wnid / name, color=class_color(label, i))
    return Path(root)


def build_imagenetv2(root: Path, per_class: int = 2) -> Path:
    """``imagenetv2/imagenetv2-matched-frequency-format-val/<label>/<hash>.jpeg`` with ``classnames.txt``."""
    folder = Path(root) / "imagenetv2"
    write_classnames(folder)
    for label in range(len(IMAGENET_CLASSNAMES)):
        for i in range(per_class):
            name = f"{(label * 7919 + i * 104729) % 10**8:08x}.jpeg"
            write_image(folder / "imagenetv2-matched-frequency-format-val" / str(label) / name,
                        color=class_color(label, i))
    return Path(root)


def build_imagenet_sketch(root: Path, per_class: int = 2) -> Path:
    """``imagenet-sketch/images/<wnid>/sketch_<n>.JPEG`` with ``classnames.txt``."""
    folder = Path(root) / "imagenet-sketch"
    write_classnames(folder)
    for label, (wnid, _) in enumerate(IMAGENET_CLASSNAMES):
        for i in range(per_class):
            write_image(folder / "images" / wnid / f"sketch_{i}.JPEG", color=class_color(label, i))
    return Path(root)


def _build_subset(root: Path, folder_name: str, image_dir: str, wnids: list[str], per_class: int) -> Path:
    folder = Path(root) / folder_name
    write_classnames(folder)
    (folder / image_dir).mkdir(parents=True)
    (folder / image_dir / "README.txt").write_text("200 ImageNet classes\n")
    for label, wnid in enumerate(wnids):
        for i in range(per_class):
            write_image(folder / image_dir / wnid / f"art_{i}.jpg", color=class_color(label, i))
    return Path(root)


def build_imagenet_a(root: Path, per_class: int = 2) -> Path:
    """``imagenet-adversarial/imagenet-a/<wnid>/*.jpg`` (a subset of the classes) + README.txt + classnames.txt."""
    return _build_subset(root, "imagenet-adversarial", "imagenet-a", ["n01491361", "n01443537"], per_class)


def build_imagenet_r(root: Path, per_class: int = 2) -> Path:
    """``imagenet-rendition/imagenet-r/<wnid>/*.jpg`` (a subset of the classes) + README.txt + classnames.txt."""
    return _build_subset(root, "imagenet-rendition", "imagenet-r", ["n01494475", "n01440764", "n01484850"], per_class)
