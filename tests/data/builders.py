"""One entry per dataset: its fixture builder and what the official reader yields on that fixture.

``FIXTURES[name]`` = ``(builder(root) -> root, class names indexed by label, (train, val, test) sizes)``,
the class names and sizes written by hand from the spec for the fixture each builder writes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from data import imagenet_layouts as inet
from data import layouts

Builder = Callable[[Path], Path]
NAMES = layouts.EXPECTED_CLASSNAMES

FIXTURES: dict[str, tuple[Builder, list[str], tuple[int, int, int]]] = {
    "caltech101": (layouts.build_caltech101, NAMES["caltech101"], (15, 10, 10)),
    "oxford_pets": (layouts.build_oxford_pets, NAMES["oxford_pets"], (9, 6, 6)),
    "stanford_cars": (layouts.build_stanford_cars, NAMES["stanford_cars"], (9, 6, 6)),
    "oxford_flowers": (layouts.build_oxford_flowers, NAMES["oxford_flowers"], (9, 6, 6)),
    "food101": (layouts.build_food101, NAMES["food101"], (9, 6, 6)),
    "fgvc_aircraft": (inet.build_fgvc_aircraft, inet.AIRCRAFT_VARIANTS, (9, 6, 6)),
    "sun397": (layouts.build_sun397, NAMES["sun397"], (9, 6, 6)),
    "dtd": (layouts.build_dtd, NAMES["dtd"], (16, 8, 12)),
    "eurosat": (layouts.build_eurosat, NAMES["eurosat"], (9, 6, 6)),
    "ucf101": (layouts.build_ucf101, NAMES["ucf101"], (9, 6, 6)),
    # ImageNet: val is the test set (official val folder).
    "imagenet": (inet.build_imagenet, ["tench", "goldfish", "great white shark", "tiger shark"], (12, 8, 8)),
    "imagenetv2": (inet.build_imagenetv2, [n for _, n in inet.IMAGENET_CLASSNAMES], (10, 0, 10)),
    "imagenet_sketch": (inet.build_imagenet_sketch, [n for _, n in inet.IMAGENET_CLASSNAMES], (10, 0, 10)),
    # A and R: labels follow the SORTED wnids of the subset present on disk.
    "imagenet_a": (inet.build_imagenet_a, ["goldfish", "tiger shark"], (4, 0, 4)),
    "imagenet_r": (inet.build_imagenet_r, ["tench", "great white shark", "hammerhead shark"], (6, 0, 6)),
}
