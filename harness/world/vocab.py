"""The vocabulary of the embedded world: attribute values, their names, rendering styles and captions.

Everything the renderer can draw and every word the tiny CLIP is pretrained on is listed here, so the
renderer, the pretraining captions and the dataset definitions cannot drift apart. Attribute values are
indices into these tuples; words are what captions and class names say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Ten shapes form the source dataset's vocabulary; the last four appear only in pretraining and in the
# targets that stand in for datasets with classes ImageNet lacks.
SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "heart", "diamond", "ring", "moon", "arrow",
    "house", "drop", "bar", "bolt",
)
SOURCE_SHAPES: tuple[str, ...] = SHAPES[:10]

# Saturated, well separated colours (backgrounds are muted, so no object colour hides in them).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 50),
    "blue": (35, 70, 215),
    "yellow": (240, 220, 40),
    "orange": (245, 135, 25),
    "purple": (130, 45, 175),
    "pink": (250, 135, 195),
    "brown": (115, 70, 30),
    "white": (248, 248, 248),
    "black": (18, 18, 18),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

SIZES: tuple[str, ...] = ("small", "large")

TEXTURES: tuple[str, ...] = ("solid", "striped", "spotted", "grid", "wavy", "checked")

# Rendering styles and how pretraining captions name them. The downstream templates say "a photo of",
# so a style the captions name differently is a phrasing mismatch that learned context can recover.
STYLES: tuple[str, ...] = ("photo", "sketch", "grainy", "blurry", "negative")
STYLE_PREFIX: dict[str, str] = {
    "photo": "a photo of a",
    "sketch": "a sketch of a",
    "grainy": "a grainy photo of a",
    "blurry": "a blurry photo of a",
    "negative": "a negative of a",
}

NO_TEXTURE = -1  # sketches are drawn on blank paper


@dataclass(frozen=True)
class Scene:
    """What one image shows: indices into SHAPES, COLOUR_NAMES, SIZES, TEXTURES (or NO_TEXTURE), STYLES."""

    shape: int
    colour: int
    size: int
    texture: int
    style: int


def caption(scene: Scene, *, name_shape: bool, name_colour: bool, name_size: bool, name_texture: bool) -> str:
    """A caption naming the scene's style and the chosen attributes, e.g. "a negative of a red star".

    Args:
        scene: the scene described.
        name_shape: name the shape (else the word "shape" stands in for it).
        name_colour: name the colour.
        name_size: name the size.
        name_texture: name the background texture (ignored for scenes without one).
    """
    words = [STYLE_PREFIX[STYLES[scene.style]]]
    if name_size:
        words.append(SIZES[scene.size])
    if name_colour:
        words.append(COLOUR_NAMES[scene.colour])
    words.append(SHAPES[scene.shape] if name_shape else "shape")
    if name_texture and scene.texture != NO_TEXTURE:
        words.append(f"on a {TEXTURES[scene.texture]} background")
    return " ".join(words)


def class_words() -> list[str]:
    """Every word that names a class in some embedded dataset."""
    return [*SHAPES, *COLOUR_NAMES, *SIZES, *TEXTURES]


def check_tokenization(encode: object, words: Sequence[str] | None = None) -> list[str]:
    """Problems with how a tokenizer splits the class words (empty list when there are none).

    A class word must not tokenise into pieces that are themselves another class word (the trap of
    "checkered", whose last piece is the colour "red").

    Args:
        encode: ``SimpleTokenizer.encode``-like callable mapping a string to token ids.
        words: the words to check (default: ``class_words()``).
    """
    words = list(words) if words is not None else class_words()
    single = {w: encode(w) for w in words}
    problems = []
    for word, ids in single.items():
        for other, other_ids in single.items():
            if other != word and len(other_ids) == 1 and other_ids[0] in ids:
                problems.append(f"{word!r} tokenises into pieces containing the class word {other!r}")
    return problems
