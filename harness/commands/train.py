"""``harness train``: train CoOp/CoCoOp on one task and save the prompt learner into a run folder.

The run folder holds ``prompt_learner/model.pth.tar-<E>`` (with a ``checkpoint`` pointer file, as Dassl),
``prompt_learner/last.pt`` (the per-epoch resume state: rerunning the same command resumes an
interrupted training) and ``config.json``. ``harness eval --weights RUN_FOLDER`` evaluates it on any
dataset and subsample. After training, the test split of the same task is evaluated (as the official
trainer does with the last-epoch model) unless ``--no-test``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.commands import argtypes
from harness.commands.eval import add_backbone_arguments
from harness.config import parse_set_options

DEFAULT_OUT = Path("runs") / "train"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``train`` verb."""
    parser = subparsers.add_parser(
        "train", help="train a prompt learner (CoOp, CoCoOp) on one dataset; resumes an interrupted run",
        description="Train with the official recipe (SGD, warm-up + cosine, the preset's batch size and epochs) "
                    "and save the prompt learner into the run folder.")
    name = parser.add_mutually_exclusive_group(required=True)
    name.add_argument("--method", help="method name (coop, cocoop), starting from the defaults")
    name.add_argument("--preset", help="a preset in methods/ (coop_fewshot, coop_base2new, cocoop, ...)")
    parser.add_argument("--dataset", required=True, help="dataset name (harness ls datasets)")
    parser.add_argument("--data-root", type=Path, default=None, help="folder of the real datasets (default: embedded)")
    parser.add_argument("--subsample", default="all", choices=("all", "base", "new"))
    parser.add_argument("--shots", type=argtypes.shots, default=16,
                        help="training images per class (default 16; -1: every image)")
    parser.add_argument("--seed", type=argtypes.seed, default=1,
                        help="seed of the few-shot sampling and training (default 1)")
    add_backbone_arguments(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"run folder (default {DEFAULT_OUT}/<preset>/<dataset>_<subsample>_<K>shots/seed<S>)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a method config key (repeatable), e.g. --set max_epoch=5")
    parser.add_argument("--no-test", action="store_true", help="do not evaluate the test split after training")
    parser.set_defaults(func=run)


def resolve_train_config(name: str, precision: str | None, sets: dict[str, Any], shots: int, dataset: str) -> Any:
    """Preset (or method) < ``--precision`` < ``--set``; epochs from the preset unless ``max_epoch`` is set."""
    from harness.methods import for_shots, resolve_config

    layers = []
    if precision is not None:
        layers.append(({"precision": precision}, "--precision"))
    if sets:
        layers.append((sets, "--set"))
    config = resolve_config(name, *layers)
    return config if "max_epoch" in sets else for_shots(config, shots, dataset)


def print_epoch(update: Any) -> None:
    """One line per finished epoch: mean loss and batch accuracy over the epoch, and its learning rate."""
    if update.epoch_done:
        print(f"epoch [{update.epoch}/{update.max_epoch}] batches {update.steps} loss {update.loss_avg:.4f} "
              f"acc {update.acc_avg:.2f} lr {update.lr:.4e}", flush=True)


def run(args: argparse.Namespace) -> int:
    """Train (or resume), print progress per epoch, then evaluate the test split unless ``--no-test``."""
    from harness.data import prepare_task_data
    from harness.engine import evaluate, train_method
    from harness.errors import ConfigError
    from harness.methods import build_method
    from harness.models import load_backbone
    from harness.registries import METHODS, load_builtins

    load_builtins()
    name = args.preset or args.method
    config = resolve_train_config(name, args.precision, parse_set_options(args.sets), args.shots, args.dataset)
    if not METHODS.get(config.method).trainable:
        raise ConfigError(f"method {config.method!r} has nothing to train; use harness eval")
    task = prepare_task_data(args.dataset, args.data_root, shots=args.shots, seed=args.seed, subsample=args.subsample)
    backbone = load_backbone(args.model, args.pretrained, args.device, config.precision, model_config=args.model_config)
    method = build_method(config.method, backbone, config, task.classnames, task.template)
    run_dir = args.out or DEFAULT_OUT / name / f"{task.dataset}_{args.subsample}_{args.shots}shots" / f"seed{args.seed}"
    print(f"training {name} ({config.method}) on {task.dataset} ({args.subsample}, {len(task.classnames)} classes, "
          f"{len(task.train)} images, {args.shots} shots, seed {args.seed}) for {config.max_epoch} epochs "
          f"at batch {config.batch_size}, precision {backbone.precision}, into {run_dir}", flush=True)
    result = train_method(method, backbone, task, config, run_dir, args.seed, progress=print_epoch,
                          run_info={"preset": name, "dataset": task.dataset, "subsample": args.subsample,
                                    "shots": args.shots, "split_sha256": task.split_sha256})
    if result.notice:
        print(result.notice)
    if result.already_done:
        print(f"already trained: {result.weights}")
    elif result.resumed_from_epoch:
        print(f"resumed after epoch {result.resumed_from_epoch}")
    print(f"weights saved to {result.weights}")
    if not args.no_test:
        outcome = evaluate(method, backbone, task, split="test", batch_size=config.test_batch_size)
        print(f"test ({task.dataset}, {args.subsample}): {outcome.n_images} images")
        print(f"* accuracy: {outcome.accuracy:.2f}%")
        print(f"* macro_f1: {outcome.macro_f1:.2f}%")
    return 0
