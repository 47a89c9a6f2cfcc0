"""Diagnostics of the embedded world: zero-shot accuracy and a few-shot linear probe.

Zero-shot accuracy per dataset (and per rendering style), and the 16-shot linear probe on the source's base
classes, which bounds what prompt learning can reach.

Run: ``python -m harness.diagnostics [--model embedded] [--probe-seeds 1 2 3] [--json OUT]``. It goes
through the harness's own data and backbone code (``prepare_task_data``, ``load_backbone``,
``split_features``), so it measures what ``harness eval`` measures.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness.world.datasets import SOURCE, WORLD_DATASETS, get_world_dataset
from harness.world.make import split_scenes
from harness.world.vocab import STYLE_PREFIX, STYLES

PROBE_DECAYS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


def text_classifier(backbone: Any, classnames: list[str], template: str) -> torch.Tensor:
    """L2-normalised text features ``(n_classes, embed_dim)`` of the template filled with each class name."""
    prompts = [template.format(name.replace("_", " ")) for name in classnames]
    with torch.no_grad():
        return backbone.encode_prompts(prompts)


def zero_shot(backbone: Any, name: str, subsample: str = "all") -> dict[str, Any]:
    """Zero-shot accuracy of the card's template on the test split, overall and per rendering style.

    Also reports, per style, the accuracy of the prompt that names the style as pretraining captions did
    ("a negative of a {}."): the headroom a learned context could recover.
    """
    from harness.data import prepare_task_data
    from harness.engine.evaluate import split_features

    task = prepare_task_data(name, None, subsample=subsample)
    features, labels = split_features(backbone, task, "test")
    weights = text_classifier(backbone, task.classnames, task.template)
    correct = (features @ weights.T).argmax(1) == labels
    styles = _test_styles(name, task)
    per_style: dict[str, list[float]] = defaultdict(list)
    for style in sorted(set(styles)):
        mask = torch.tensor([s == style for s in styles])
        phrased = text_classifier(backbone, task.classnames, task.template.replace("a photo of a", STYLE_PREFIX[style]))
        styled = (features[mask] @ phrased.T).argmax(1) == labels[mask]
        per_style[style] = [100 * correct[mask].float().mean().item(), 100 * styled.float().mean().item(),
                            int(mask.sum())]
    return {"dataset": name, "accuracy": 100 * correct.float().mean().item(), "n": len(labels),
            "chance": 100 / len(task.classnames), "per_style": dict(per_style)}


def _test_styles(name: str, task: Any) -> list[str]:
    dataset = get_world_dataset(name)
    by_path = {}
    for split, scenes in split_scenes(dataset).items():
        for index, scene in enumerate(scenes):
            label, number = divmod(index, dataset.per_class[("train", "val", "test").index(split)])
            by_path[f"{dataset.classnames[label]}/{split}_{number:03d}.png"] = STYLES[scene.style]
    return [by_path[item.impath] for item in task.test]


def fit_linear_probe(train: torch.Tensor, train_labels: torch.Tensor, decay: float, classes: int) -> torch.Tensor:
    """Multinomial logistic regression (L2 penalty ``decay``) on features; returns ``(dim + 1, classes)``."""
    torch.manual_seed(0)
    weights = torch.zeros(train.shape[1] + 1, classes, requires_grad=True)
    inputs = torch.cat([train, torch.ones(len(train), 1)], 1)
    optimizer = torch.optim.LBFGS([weights], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(inputs @ weights, train_labels) + decay * weights[:-1].pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach()


def _probe_accuracy(weights: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> float:
    logits = torch.cat([features, torch.ones(len(features), 1)], 1) @ weights
    return 100 * (logits.argmax(1) == labels).float().mean().item()


def linear_probe(backbone: Any, name: str, shots: int, seed: int, subsample: str = "base") -> dict[str, Any]:
    """A ``shots``-shot linear probe (penalty chosen on the few-shot val split) vs zero-shot, same test set."""
    from harness.data import prepare_task_data
    from harness.engine.evaluate import split_features

    task = prepare_task_data(name, None, shots=shots, seed=seed, subsample=subsample)
    (train, train_labels), (val, val_labels), (test, test_labels) = (
        split_features(backbone, task, split) for split in ("train", "val", "test")
    )
    classes = len(task.classnames)
    best = max(PROBE_DECAYS, key=lambda d: _probe_accuracy(fit_linear_probe(train, train_labels, d, classes),
                                                           val, val_labels))
    weights = fit_linear_probe(torch.cat([train, val]), torch.cat([train_labels, val_labels]), best, classes)
    zero = (test @ text_classifier(backbone, task.classnames, task.template).T).argmax(1) == test_labels
    return {"dataset": name, "subsample": subsample, "shots": shots, "seed": seed, "decay": best,
            "probe": _probe_accuracy(weights, test, test_labels), "zero_shot": 100 * zero.float().mean().item()}


def main(argv: list[str] | None = None) -> None:
    """Print zero-shot accuracy per embedded dataset and the source's base-class linear probe."""
    parser = argparse.ArgumentParser(description="Diagnostics of the embedded world and tiny CLIP.")
    parser.add_argument("--model", default="embedded", help="backbone (default: the shipped tiny CLIP)")
    parser.add_argument("--datasets", nargs="*", default=[d.name for d in WORLD_DATASETS])
    parser.add_argument("--probe-seeds", nargs="*", type=int, default=[1, 2, 3])
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    from harness.models import load_backbone

    torch.set_num_threads(2)
    backbone = load_backbone(args.model, device="cpu", precision="fp32")
    report: dict[str, Any] = {"model": args.model, "zero_shot": [], "probe": []}
    for name in args.datasets:
        row = zero_shot(backbone, name)
        report["zero_shot"].append(row)
        styles = "  ".join(f"{s} {a:.1f}->{b:.1f} (n={n})" for s, (a, b, n) in row["per_style"].items())
        print(f"{name:24s} zero-shot {row['accuracy']:5.1f} (chance {row['chance']:.1f})  {styles}", flush=True)
    for seed in args.probe_seeds:
        row = linear_probe(backbone, SOURCE.name, 16, seed)
        report["probe"].append(row)
        print(f"{SOURCE.name} base, seed {seed}: 16-shot linear probe {row['probe']:.1f} vs zero-shot "
              f"{row['zero_shot']:.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
