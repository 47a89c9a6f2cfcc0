"""The renderer of the embedded world: one 32-pixel RGB image per ``Scene``, drawn with numpy and PIL.

Images are drawn at twice the output size and box-downsampled (anti-aliasing), then a style is applied.
Every random choice (position, rotation, colour jitter, texture phase, noise) comes from the
``numpy.random.Generator`` passed in, so an image is a pure function of its scene and its generator's seed.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from harness.world.vocab import COLOUR_NAMES, COLOURS, NO_TEXTURE, SHAPES, SIZES, STYLES, TEXTURES, Scene

IMAGE_SIZE = 32
_CANVAS = 2 * IMAGE_SIZE
_RADIUS = {"small": (9.0, 12.0), "large": (17.0, 22.0)}  # on the supersampled canvas
# Downstream datasets are object-centric like the real benchmarks (pretraining places objects anywhere):
# the published train transform's random crops (scale 0.08-1) then keep the object far more often.
_CENTRE_JITTER = 4.0
_YY, _XX = np.mgrid[0:_CANVAS, 0:_CANVAS].astype(np.float32)


def _star(points: int, inner: float) -> list[tuple[float, float]]:
    return [
        ((1.0 if k % 2 == 0 else inner) * math.sin(math.pi * k / points),
         -(1.0 if k % 2 == 0 else inner) * math.cos(math.pi * k / points))
        for k in range(2 * points)
    ]


def _heart() -> list[tuple[float, float]]:
    ts = np.linspace(0, 2 * math.pi, 40, endpoint=False)
    xs = 16 * np.sin(ts) ** 3 / 17
    ys = -(13 * np.cos(ts) - 5 * np.cos(2 * ts) - 2 * np.cos(3 * ts) - np.cos(4 * ts)) / 17 - 0.1
    return list(zip(xs.tolist(), ys.tolist()))


def _drop() -> list[tuple[float, float]]:
    ts = np.linspace(0, 2 * math.pi, 40, endpoint=False)
    return list(zip((0.8 * np.sin(ts) * np.sin(ts / 2)).tolist(), (-np.cos(ts)).tolist()))


# Unit outlines (radius about 1, "up" is -y); ring, circle and moon are drawn from ellipses instead.
_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.72, -0.72), (0.72, -0.72), (0.72, 0.72), (-0.72, 0.72)],
    "triangle": [(0.0, -1.0), (0.87, 0.5), (-0.87, 0.5)],
    "star": _star(5, 0.42),
    "cross": [(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3), (0.3, 1), (-0.3, 1),
              (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)],
    "heart": _heart(),
    "diamond": [(0.0, -1.0), (0.58, 0.0), (0.0, 1.0), (-0.58, 0.0)],
    "arrow": [(0.0, -1.0), (0.75, -0.2), (0.28, -0.2), (0.28, 1.0), (-0.28, 1.0), (-0.28, -0.2), (-0.75, -0.2)],
    "house": [(0.0, -1.0), (0.8, -0.25), (0.8, 0.85), (-0.8, 0.85), (-0.8, -0.25)],
    "drop": _drop(),
    "bar": [(-1.0, -0.28), (1.0, -0.28), (1.0, 0.28), (-1.0, 0.28)],
    "bolt": [(0.15, -1.0), (0.6, -1.0), (0.2, -0.15), (0.55, -0.15), (-0.35, 1.0), (-0.05, 0.1),
             (-0.45, 0.1)],
}


def shape_mask(shape: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Coverage mask (float32 in [0, 1], canvas size) of a shape centred at (cx, cy)."""
    mask = Image.new("L", (_CANVAS, _CANVAS), 0)
    draw = ImageDraw.Draw(mask)
    if shape in ("circle", "ring", "moon"):
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
        if shape == "ring":
            inner = 0.55 * radius
            draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
        elif shape == "moon":
            ox, oy = cx + 0.55 * radius * math.cos(angle), cy + 0.55 * radius * math.sin(angle)
            draw.ellipse([ox - radius, oy - radius, ox + radius, oy + radius], fill=0)
    else:
        cos, sin = math.cos(angle), math.sin(angle)
        points = [(cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in _POLYGONS[shape]]
        draw.polygon(points, fill=255)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _muted_colour(rng: np.random.Generator, value: float) -> np.ndarray:
    hue = rng.uniform(0, 2 * math.pi)
    saturation = rng.uniform(0.05, 0.3)
    offsets = np.array([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    return (value * (1 - saturation + saturation * (0.5 + 0.5 * np.cos(hue - offsets))) * 255).astype(np.float32)


def texture_pattern(texture: str, rng: np.random.Generator) -> np.ndarray:
    """The two-tone pattern (float32 in [0, 1], canvas size) of a background texture."""
    theta = rng.uniform(0, math.pi)
    u = _XX * math.cos(theta) + _YY * math.sin(theta) + rng.uniform(0, 64)
    v = -_XX * math.sin(theta) + _YY * math.cos(theta) + rng.uniform(0, 64)
    period = rng.uniform(11.0, 16.0)
    if texture == "solid":
        return (0.3 * (u - u.min()) / (u.max() - u.min())).astype(np.float32)
    if texture == "striped":
        return (np.sin(2 * math.pi * u / period) > 0).astype(np.float32)
    if texture == "spotted":
        du = np.mod(u, period) - period / 2
        dv = np.mod(v, period) - period / 2
        return (du * du + dv * dv < (0.3 * period) ** 2).astype(np.float32)
    if texture == "grid":
        return ((np.mod(u, period) < 2.5) | (np.mod(v, period) < 2.5)).astype(np.float32)
    if texture == "wavy":
        return (np.sin(2 * math.pi * (u + 4.0 * np.sin(2 * math.pi * v / 18.0)) / period) > 0).astype(np.float32)
    if texture == "checked":
        return (np.mod(np.floor(u / period) + np.floor(v / period), 2)).astype(np.float32)
    raise ValueError(f"unknown texture {texture!r}; expected one of {TEXTURES}")


def _background(texture: int, rng: np.random.Generator) -> np.ndarray:
    value = rng.uniform(0.42, 0.68)
    first = _muted_colour(rng, value)
    second = _muted_colour(rng, float(np.clip(value + rng.choice([-1, 1]) * rng.uniform(0.15, 0.25), 0.2, 0.9)))
    pattern = texture_pattern(TEXTURES[texture], rng)[..., None]
    return first * (1 - pattern) + second * pattern


def _place(scene: Scene, rng: np.random.Generator, centred: bool) -> tuple[np.ndarray, np.ndarray]:
    """The object's coverage mask and its (jittered, lit) colour image."""
    low, high = _RADIUS[SIZES[scene.size]]
    radius = rng.uniform(low, high)
    margin = radius + 1.0
    if centred:
        cx, cy = _CANVAS / 2 + rng.uniform(-_CENTRE_JITTER, _CENTRE_JITTER, size=2)
    else:
        cx, cy = rng.uniform(margin, _CANVAS - margin, size=2)
    mask = shape_mask(SHAPES[scene.shape], cx, cy, radius, rng.uniform(0, 2 * math.pi))
    base = np.array(COLOURS[COLOUR_NAMES[scene.colour]], dtype=np.float32) + rng.uniform(-12, 12, size=3)
    gx, gy = rng.uniform(-1, 1, size=2) * (0.12 / radius)
    light = (1.0 + (_XX - cx) * gx + (_YY - cy) * gy).astype(np.float32)
    return mask, np.clip(base * light[..., None], 0, 255)


def _downsample(canvas: np.ndarray) -> np.ndarray:
    return 0.25 * (canvas[0::2, 0::2] + canvas[1::2, 0::2] + canvas[0::2, 1::2] + canvas[1::2, 1::2])


def _sketch(mask: np.ndarray, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # A colouring-book drawing: dark pencil outline, light wash of the object's colour on paper.
    pil = Image.fromarray((mask * 255).astype(np.uint8))
    edge = (np.asarray(pil.filter(ImageFilter.MaxFilter(3)), dtype=np.float32)
            - np.asarray(pil.filter(ImageFilter.MinFilter(3)), dtype=np.float32)) / 255.0
    paper = np.full((_CANVAS, _CANVAS, 3), rng.uniform(215, 240), dtype=np.float32)
    washed = paper * (1 - 0.6 * mask[..., None]) + colour * 0.6 * mask[..., None]
    pencil = rng.uniform(20, 60)
    return washed * (1 - edge[..., None]) + pencil * edge[..., None]


def render(scene: Scene, rng: np.random.Generator, centred: bool = False) -> np.ndarray:
    """Render one scene as a ``(32, 32, 3)`` uint8 RGB array.

    Args:
        scene: attribute indices (see ``harness.world.vocab``).
        rng: the image's own generator; the image depends on nothing else.
        centred: object near the centre (object-centric datasets, as the real ones) instead of anywhere.
    """
    style = STYLES[scene.style]
    mask, colour = _place(scene, rng, centred)
    if style == "sketch":
        canvas = _sketch(mask, colour, rng)
    else:
        if scene.texture == NO_TEXTURE:
            raise ValueError(f"style {style!r} needs a background texture")
        canvas = _background(scene.texture, rng) * (1 - mask[..., None]) + colour * mask[..., None]
    image = _downsample(canvas)
    if style == "grainy":
        image = image + rng.normal(0.0, rng.uniform(28, 42), size=image.shape)
    elif style == "blurry":
        pil = Image.fromarray(np.clip(image, 0, 255).round().astype(np.uint8))
        image = np.asarray(pil.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 1.5))), dtype=np.float32)
    else:
        image = image + rng.normal(0.0, 3.0, size=image.shape)
    if style == "negative":
        image = 255.0 - image
    return np.clip(image, 0, 255).round().astype(np.uint8)


def stream_id(name: str) -> int:
    """A stable 64-bit id for a named stream of images (a dataset, or pretraining)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def image_rng(world_seed: int, stream: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``stream``: streams never share seeds, so no image is reused."""
    return np.random.default_rng(np.random.SeedSequence([world_seed, stream_id(stream), index]))
