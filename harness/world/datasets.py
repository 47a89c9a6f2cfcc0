"""The embedded datasets: which classes each one has, how its images are rendered, and its split sizes.

They mirror the benchmark's structure: one large source dataset (ImageNet's role, 100 colour-shape
classes), target datasets whose class vocabularies differ (shapes, colours, textures, sizes, unseen
colour-shape pairs), and test-only renderings of the source in shifted domains (ImageNet-V2/-Sketch/-A/-R's
role). Class names use "_" between words, as folder-derived class names do in the real datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.world.vocab import COLOUR_NAMES, SHAPES, SIZES, SOURCE_SHAPES, STYLES, TEXTURES

ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": COLOUR_NAMES,
    "size": SIZES,
    "texture": TEXTURES,
}

# Image mixtures: the share of each rendering style. The downstream templates say "a photo of", while
# pretraining captions named every style, so the non-photo share -- above all "negative", which changes
# what the colour words look like -- is where learned context can help. Each target has its own "house
# style", as the real targets differ in domain (satellite images, textures, actions...).
SOURCE_MIX = {"photo": 0.3, "sketch": 0.1, "grainy": 0.05, "blurry": 0.05, "negative": 0.5}
SHAPES_MIX = {"photo": 0.5, "sketch": 0.2, "grainy": 0.15, "blurry": 0.15}
COLOURS_MIX = {"photo": 0.25, "grainy": 0.15, "negative": 0.6}
TEXTURES_MIX = {"photo": 0.5, "grainy": 0.25, "blurry": 0.25}
SIZES_MIX = {"photo": 0.4, "grainy": 0.3, "blurry": 0.3}
NOVEL_MIX = {"photo": 0.3, "sketch": 0.2, "negative": 0.5}


@dataclass(frozen=True)
class WorldDataset:
    """One embedded dataset.

    Attributes:
        name: registry name (also the card's file stem and the seed stream of its images).
        display_name: name in tables (CamelCase, as the papers write dataset names).
        role: ``source``, ``target`` or ``domain_shift``.
        class_attributes: the attributes a class fixes, e.g. ``("colour", "shape")``.
        classes: each class as a tuple of value names, in that order.
        template: the zero-shot prompt template of the dataset's card.
        styles: share of each rendering style.
        per_class: images per class in (train, val, test).
        free: allowed values of the attributes a class leaves free (default: every value).
        centred: objects near the image centre (object-centric, as the real datasets), not anywhere.
    """

    name: str
    display_name: str
    role: str
    class_attributes: tuple[str, ...]
    classes: tuple[tuple[str, ...], ...]
    template: str
    styles: dict[str, float]
    per_class: tuple[int, int, int]
    free: dict[str, tuple[str, ...]] = field(default_factory=dict)
    centred: bool = True

    @property
    def folder(self) -> str:
        """Folder under the world's root."""
        return self.name

    @property
    def split_file(self) -> str:
        """Split JSON file name, in the official ``split_zhou_<Name>.json`` pattern."""
        return f"split_zhou_{self.display_name}.json"

    @property
    def classnames(self) -> list[str]:
        """Class names indexed by label (sorted, as a sorted folder listing would give)."""
        return ["_".join(values) for values in self.classes]

    @property
    def test_only(self) -> bool:
        """Whether the dataset has only a test split (domain-shifted renderings)."""
        return self.per_class[0] == 0 and self.per_class[1] == 0


def _classes(*value_lists: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    combos: list[tuple[str, ...]] = [()]
    for values in value_lists:
        combos = [(*combo, value) for combo in combos for value in values]
    return tuple(sorted(combos, key="_".join))


def _source_like(name: str, display: str, styles: dict[str, float], test: int, **free: tuple[str, ...]):
    return WorldDataset(
        name=name, display_name=display, role="domain_shift", class_attributes=("colour", "shape"),
        classes=_classes(COLOUR_NAMES, SOURCE_SHAPES), template="a photo of a {}.", styles=styles,
        per_class=(0, 0, test), free=free,
    )


SOURCE = WorldDataset(
    name="world_objects", display_name="WorldObjects", role="source", class_attributes=("colour", "shape"),
    classes=_classes(COLOUR_NAMES, SOURCE_SHAPES), template="a photo of a {}.", styles=SOURCE_MIX,
    per_class=(20, 4, 10),
)

TARGETS = (
    WorldDataset(
        name="world_shapes", display_name="WorldShapes", role="target", class_attributes=("shape",),
        classes=_classes(SHAPES), template="a photo of a {}.", styles=SHAPES_MIX, per_class=(20, 4, 20),
    ),
    WorldDataset(
        name="world_colours", display_name="WorldColours", role="target", class_attributes=("colour",),
        classes=_classes(COLOUR_NAMES), template="a photo of a {} shape.", styles=COLOURS_MIX,
        per_class=(20, 4, 20),
    ),
    WorldDataset(
        name="world_textures", display_name="WorldTextures", role="target", class_attributes=("texture",),
        classes=_classes(TEXTURES), template="a photo of a shape on a {} background.",
        styles=TEXTURES_MIX, per_class=(20, 4, 30),
    ),
    WorldDataset(
        name="world_sizes", display_name="WorldSizes", role="target", class_attributes=("size", "shape"),
        classes=_classes(SIZES, ("arrow", "bar", "bolt", "drop", "heart", "house", "moon", "star")),
        template="a photo of a {}.", styles=SIZES_MIX, per_class=(20, 4, 20),
    ),
    WorldDataset(
        name="world_novel", display_name="WorldNovel", role="target", class_attributes=("colour", "shape"),
        classes=_classes(("blue", "pink", "red", "yellow"), ("bar", "bolt", "drop", "house")),
        template="a photo of a {}.", styles=NOVEL_MIX, per_class=(20, 4, 20),
    ),
)

DOMAIN_SHIFTS = (
    _source_like("world_objects_v2", "WorldObjectsV2", SOURCE_MIX, 8),
    _source_like("world_objects_sketch", "WorldObjectsSketch", {"sketch": 1.0}, 8),
    _source_like("world_objects_grainy", "WorldObjectsGrainy", {"grainy": 1.0}, 8, size=("small",)),
    _source_like("world_objects_blurry", "WorldObjectsBlurry", {"blurry": 1.0}, 8),
)

WORLD_DATASETS: tuple[WorldDataset, ...] = (SOURCE, *TARGETS, *DOMAIN_SHIFTS)


def get_world_dataset(name: str) -> WorldDataset:
    """The embedded dataset called ``name`` (``KeyError`` naming the known ones otherwise)."""
    for dataset in WORLD_DATASETS:
        if dataset.name == name:
            return dataset
    raise KeyError(f"no embedded dataset {name!r}; known: {', '.join(d.name for d in WORLD_DATASETS)}")


def check_definitions() -> None:
    """Assert the definitions are consistent (attribute values exist, style shares sum to one)."""
    for dataset in WORLD_DATASETS:
        for values in dataset.classes:
            for attribute, value in zip(dataset.class_attributes, values):
                assert value in ATTRIBUTE_VALUES[attribute], (dataset.name, attribute, value)
        assert abs(sum(dataset.styles.values()) - 1.0) < 1e-9, dataset.name
        assert set(dataset.styles) <= set(STYLES), dataset.name
