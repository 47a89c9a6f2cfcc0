"""Contrastive pretraining of the embedded tiny CLIP on captioned images of the world.

Images are rendered on the fly from the ``pretrain`` seed stream, which no downstream dataset uses, so the
model never sees a downstream image. Captions always name the rendering style ("a sketch of a", "a negative
of a") and a random subset of the attributes. Because captions are partial, several captions in a batch can
be true of one image: the loss counts every consistent caption as a positive (multi-positive InfoNCE), so
true matches are never pushed apart. Half the batches draw from few colours, shapes and textures, giving
hard negatives.

Run: ``python -m harness.world.pretrain --out DIR --minutes 60 --seed 0`` (annealed over the wall time; the
learning rate of every step is recorded in ``meta.json``, and ``--replay meta.json`` repeats the run exactly).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from harness.world.render import image_rng, render
from harness.world.tiny_clip import CLIP_MEAN, CLIP_STD, build_model, export_asset, make_tokenizer, write_bpe_file
from harness.world.vocab import COLOUR_NAMES, NO_TEXTURE, SHAPES, SIZES, STYLES, TEXTURES, Scene, caption

STYLE_WEIGHTS = np.array([0.4, 0.15, 0.15, 0.15, 0.15])  # photo, sketch, grainy, blurry, negative
NAME_PROBABILITY = {"shape": 0.85, "colour": 0.8, "size": 0.4, "texture": 0.35}
ATTRIBUTES = ("shape", "colour", "size", "texture")


def sample_scenes(rng: np.random.Generator, count: int) -> list[Scene]:
    """Scenes for one batch; half the batches use few colours, shapes and textures (hard negatives)."""
    colours, shapes, textures = np.arange(len(COLOUR_NAMES)), np.arange(len(SHAPES)), np.arange(len(TEXTURES))
    if rng.random() < 0.5:
        colours = rng.choice(colours, 3, replace=False)
        shapes = rng.choice(shapes, 4, replace=False)
        textures = rng.choice(textures, 3, replace=False)
    styles = rng.choice(len(STYLES), size=count, p=STYLE_WEIGHTS)
    return [
        Scene(
            shape=int(rng.choice(shapes)),
            colour=int(rng.choice(colours)),
            size=int(rng.integers(len(SIZES))),
            texture=NO_TEXTURE if STYLES[style] == "sketch" else int(rng.choice(textures)),
            style=int(style),
        )
        for style in styles
    ]


def make_batch(seed: int, step: int, batch_size: int, tokenizer) -> dict[str, torch.Tensor]:
    """Images, tokenised captions, and the (image, caption) consistency matrix of one training step."""
    rng = image_rng(seed, "pretrain", step)
    scenes = sample_scenes(rng, batch_size)
    named = {a: rng.random(batch_size) < p for a, p in NAME_PROBABILITY.items()}
    texts = [
        caption(s, name_shape=named["shape"][i], name_colour=named["colour"][i], name_size=named["size"][i],
                name_texture=named["texture"][i])
        for i, s in enumerate(scenes)
    ]
    named["texture"] &= np.array([s.texture != NO_TEXTURE for s in scenes])
    images = np.stack([render(s, rng) for s in scenes]).astype(np.float32) / 255.0
    images = (images - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    values = {a: np.array([getattr(s, a) for s in scenes]) for a in ("shape", "colour", "size", "texture", "style")}
    consistent = values["style"][:, None] == values["style"][None, :]
    for attribute in ATTRIBUTES:
        same = values[attribute][:, None] == values[attribute][None, :]
        consistent &= same | ~named[attribute][None, :]
    return {
        "images": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        "tokens": tokenizer(texts),
        "positives": torch.from_numpy(consistent),
    }


class BatchStream(torch.utils.data.IterableDataset):
    """Batches for steps ``start, start+1, ...``; each a pure function of (seed, step)."""

    def __init__(self, seed: int, start: int, steps: int, batch_size: int, bpe_path: Path) -> None:
        self.seed, self.start, self.steps, self.batch_size, self.bpe_path = seed, start, steps, batch_size, bpe_path

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        tokenizer = make_tokenizer(self.bpe_path)
        for step in range(self.start, self.steps):
            yield make_batch(self.seed, step, self.batch_size, tokenizer)


def multi_positive_loss(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where every consistent (image, caption) pair is a positive.

    Args:
        logits: ``(B, B)`` image-by-caption similarities times the logit scale.
        positives: ``(B, B)`` bool, true where caption j is true of image i (the diagonal always is).
    """
    masked = logits.masked_fill(~positives, float("-inf"))
    image_to_text = torch.logsumexp(logits, 1) - torch.logsumexp(masked, 1)
    text_to_image = torch.logsumexp(logits, 0) - torch.logsumexp(masked, 0)
    return 0.5 * (image_to_text.mean() + text_to_image.mean())


def learning_rate(progress: float, step: int, peak: float, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to zero as ``progress`` goes from 0 to 1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * min(1.0, progress)))


class Schedule:
    """The learning rate per step.

    By step count (``--steps``), by wall time (``--minutes``: the run is annealed when its time is up however
    loaded the machine is), or replayed from a finished run's record (``--replay``: that run, step for step).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.replayed = json.loads(Path(args.replay).read_text())["lr_per_step"] if args.replay else None
        self.total_steps = len(self.replayed) if self.replayed else args.steps

    def lr(self, step: int, elapsed: float, warmup_end: float) -> float | None:
        """The rate of ``step``, or None when the run is over."""
        if self.replayed is not None:
            return self.replayed[step] if step < len(self.replayed) else None
        if self.total_steps is not None:
            if step >= self.total_steps:
                return None
            return learning_rate(step / self.total_steps, step, self.args.lr, self.args.warmup)
        # Wall-time mode: the cosine starts after warmup and ends when the time is up.
        budget = 60 * self.args.minutes - warmup_end
        if elapsed >= 60 * self.args.minutes or budget <= 0:
            return None
        progress = (elapsed - warmup_end) / budget if step >= self.args.warmup else 0.0
        return None if progress >= 1.0 else learning_rate(progress, step, self.args.lr, self.args.warmup)


def _optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def _save(out: Path, model, optimizer, state: dict, bpe_path: Path, meta: dict) -> None:
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": state["step"],
               "elapsed": state["elapsed"], "lr_per_step": state["lrs"]}
    torch.save(payload, out / "checkpoint.tmp")
    (out / "checkpoint.tmp").replace(out / "checkpoint.pt")
    export_asset(model, bpe_path, out / "asset", meta)


def _resume(out: Path, model, optimizer) -> dict:
    if not (out / "checkpoint.pt").exists():
        return {"step": 0, "elapsed": 0.0, "lrs": [], "warmup_end": 0.0}
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return {"step": saved["step"], "elapsed": saved["elapsed"], "lrs": list(saved["lr_per_step"]), "warmup_end": 0.0}


def _step(model, optimizer, batch: dict[str, torch.Tensor], lr: float) -> tuple[float, float]:
    for group in optimizer.param_groups:
        group["lr"] = lr
    image_features, text_features, scale = model(batch["images"], batch["tokens"])[:3]
    loss = multi_positive_loss(scale * image_features @ text_features.T, batch["positives"])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return loss.item(), scale.item()


def train(args: argparse.Namespace) -> None:
    """Pretrain (resuming from ``args.out/checkpoint.pt`` if present) and export the asset folder."""
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bpe_path = write_bpe_file(out / "tokenizer_bpe.txt.gz")
    model = build_model(args.seed)
    optimizer = _optimizer(model, args.lr)
    state = _resume(out, model, optimizer)
    schedule = Schedule(args)
    last = schedule.total_steps if schedule.total_steps is not None else 10**9
    stream = BatchStream(args.seed, state["step"], last, args.batch_size, bpe_path)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=1, prefetch_factor=4)
    began = time.time() - state["elapsed"]
    state["warmup_end"] = state["elapsed"] if state["step"] >= args.warmup else 0.0
    log = open(out / "train_log.jsonl", "a")  # noqa: SIM115 - kept open for the whole run
    model.train()
    for batch in loader:
        state["elapsed"] = time.time() - began
        if state["step"] == args.warmup:
            state["warmup_end"] = state["elapsed"]
        lr = schedule.lr(state["step"], state["elapsed"], state["warmup_end"])
        if lr is None:
            break
        loss, scale = _step(model, optimizer, batch, lr)
        state["lrs"].append(lr)
        state["step"] += 1
        if state["step"] % 20 == 0:
            log.write(json.dumps({"step": state["step"], "loss": round(loss, 4), "scale": round(scale, 2),
                                  "lr": lr, "elapsed_s": round(time.time() - began, 1)}) + "\n")
            log.flush()
        if state["step"] % args.save_every == 0:
            _save(out, model, optimizer, state, bpe_path, _meta(args, state, finished=False))
    state["elapsed"] = time.time() - began
    _save(out, model, optimizer, state, bpe_path, _meta(args, state, finished=True))
    log.close()


def _meta(args: argparse.Namespace, state: dict, *, finished: bool) -> dict:
    return {
        "script": "harness/world/pretrain.py",
        "command": "python -m harness.world.pretrain " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "reproduce": f"python -m harness.world.pretrain --out DIR --seed {args.seed} --batch-size {args.batch_size} "
        "--replay META_JSON (replays this run's learning rate per step; META_JSON = this file)",
        "finished": finished,
        "seed": args.seed,
        "steps": state["step"],
        "batch_size": args.batch_size,
        "images_seen": state["step"] * args.batch_size,
        "wall_time_s": round(state["elapsed"], 1),
        "threads": args.threads,
        "data": "images rendered on the fly from the 'pretrain' seed stream (disjoint from every dataset)",
        "captions": "style prefix always named; shape/colour/size/texture named with probabilities "
        + json.dumps(NAME_PROBABILITY),
        "style_weights": dict(zip(STYLES, STYLE_WEIGHTS.tolist())),
        "loss": "multi-positive symmetric InfoNCE; half the batches restricted to 3 colours, 4 shapes, 3 textures",
        "optimizer": {"name": "AdamW", "peak_lr": args.lr, "warmup_steps": args.warmup, "weight_decay": 0.1,
                      "betas": [0.9, 0.98], "schedule": "linear warmup, then cosine to 0 over the remaining "
                      + ("steps" if args.steps or args.replay else f"wall time ({args.minutes} min)")},
        "lr_per_step": [float(f"{lr:.6g}") for lr in state["lrs"]],
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (checkpoint, log, asset/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="train this many steps (cosine over the steps)")
    parser.add_argument("--minutes", type=float, default=60.0,
                        help="without --steps/--replay: train for this much wall time (cosine over the time)")
    parser.add_argument("--replay", default=None, help="meta.json of a finished run: replay its lr per step")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=2)
    train(parser.parse_args(argv))


if __name__ == "__main__":
    main()
