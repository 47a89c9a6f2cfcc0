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

from harness.commands import add_include_argument, argtypes
from harness.commands.eval import add_backbone_arguments
from harness.config import SELECTIONS, parse_set_options

DEFAULT_OUT = Path("runs") / "train"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``train`` verb."""
    parser = subparsers.add_parser(
        "train", help="train a method on one dataset; resumes an interrupted run",
        description="Train with the official recipe (SGD, warm-up + cosine, the preset's batch size and epochs) "
                    "and save the prompt learner into the run folder.")
    name = parser.add_mutually_exclusive_group(required=True)
    name.add_argument("--method", help="method name (harness ls methods), starting from its defaults")
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
    parser.add_argument("--init", type=Path, default=None, metavar="FILE",
                        help="start from these weights (ours or the method's official checkpoint) instead of a fresh "
                             "initialisation; the optimiser and schedule start at epoch 1")
    parser.add_argument("--no-test", action="store_true", help="do not evaluate the test split after training")
    parser.add_argument("--selection", choices=SELECTIONS, default=None,
                        help="model selection: last, val (few-shot validation split) or none (fixed values); "
                             "the default is the preset's (same as --set selection=...)")
    add_include_argument(parser)
    parser.set_defaults(func=run)


def print_epoch(update: Any) -> None:
    """One line per finished epoch: mean loss and batch accuracy over the epoch, and its learning rate."""
    if update.epoch_done:
        print(f"epoch [{update.epoch}/{update.max_epoch}] batches {update.steps} loss {update.loss_avg:.4f} "
              f"acc {update.acc_avg:.2f} lr {update.lr:.4e}", flush=True)


def read_init_state(path: Path, backbone: Any, method_name: str) -> dict[str, Any]:
    """The learned state in ``--init FILE`` (ours or an official checkpoint of ``method_name``)."""
    from harness.errors import ConfigError
    from harness.methods.checkpoints import load_weights

    loaded, config = load_weights(path, backbone, method=method_name)
    if config.method != method_name:
        raise ConfigError(f"--init {path}: holds a {config.method} model, not {method_name}")
    return loaded.learned_state()


def run(args: argparse.Namespace) -> int:
    """Train (or resume), print progress per epoch, then evaluate the test split unless ``--no-test``."""
    from harness.engine.pipeline import (
        RecordContext,
        build_for_task,
        cached_backbone,
        evaluate_to_records,
        load_task,
        require_trainable,
        resolve_method_config,
    )
    from harness.engine.train import train_method
    from harness.plugins import load_includes

    load_includes(args.includes)
    name = args.preset or args.method
    sets = parse_set_options(args.sets)
    if args.selection is not None:
        sets["selection"] = args.selection
    config = resolve_method_config(name, precision=args.precision, overrides=sets,
                                   shots=args.shots, dataset=args.dataset)
    require_trainable(config)
    task = load_task(args.dataset, args.data_root, shots=args.shots, seed=args.seed, subsample=args.subsample)
    backbone = cached_backbone(args.model, args.pretrained, args.device, config.precision, args.model_config)
    method, config = build_for_task(config, backbone, task)
    init_state = read_init_state(args.init, backbone, config.method) if args.init is not None else None
    run_dir = args.out or DEFAULT_OUT / name / f"{task.dataset}_{args.subsample}_{args.shots}shots" / f"seed{args.seed}"
    print(f"training {name} ({config.method}) on {task.dataset} ({args.subsample}, {len(task.classnames)} classes, "
          f"{len(task.train)} images, {args.shots} shots, seed {args.seed}) for {config.max_epoch} epochs "
          f"at batch {config.batch_size}, precision {backbone.precision}, into {run_dir}"
          + (f", starting from {args.init}" if args.init is not None else ""), flush=True)
    result = train_method(method, backbone, task, config, run_dir, args.seed, progress=print_epoch,
                          run_info={"preset": name, "dataset": task.dataset, "subsample": args.subsample,
                                    "shots": args.shots, "split_sha256": task.split_sha256,
                                    "init": str(args.init) if args.init is not None else None},
                          init_state=init_state)
    if result.notice:
        print(result.notice)
    if result.already_done:
        print(f"already trained: {result.weights}")
    elif result.resumed_from_epoch:
        print(f"resumed after epoch {result.resumed_from_epoch}")
    print(f"weights saved to {result.weights}")
    if not args.no_test:
        context = RecordContext(protocol="train", method=config.method, preset=name, subsample=args.subsample,
                                shots=args.shots, seed=args.seed)
        outcome, _ = evaluate_to_records(method, backbone, task, config, "test", context)
        print(f"test ({task.dataset}, {args.subsample}): {outcome.n_images} images")
        print(f"* accuracy: {outcome.accuracy:.2f}%")
        print(f"* macro_f1: {outcome.macro_f1:.2f}%")
    return 0
