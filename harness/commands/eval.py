"""``harness eval``: evaluate one method on one dataset split, print accuracy and macro-F1, append records."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import add_include_argument, argtypes
from harness.config import parse_set_options

DEFAULT_OUT = Path("runs") / "eval"


def add_backbone_arguments(parser: argparse.ArgumentParser) -> None:
    """The backbone options shared by the verbs that load a model."""
    group = parser.add_argument_group("backbone")
    group.add_argument(
        "--model", default="embedded",
        help="'embedded' (default), a CLIP weights file (OpenAI .pt, open_clip .pt/.pth/.bin, .safetensors), "
        "a backbone folder, or an open_clip model name such as ViT-B-16",
    )
    group.add_argument("--pretrained", default=None, help="open_clip pretrained tag (e.g. openai) or weights file")
    group.add_argument("--model-config", default=None, help="open_clip config name of a state dict file")
    group.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    group.add_argument(
        "--precision", default=None, choices=("auto", "fp32", "bf16", "fp16", "amp"),
        help="auto = fp32 on CPU, amp on CUDA; fp16 = the official pure-fp16 CLIP (default: the method's config)",
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``eval`` verb."""
    parser = subparsers.add_parser("eval", help="evaluate a method on a dataset split (accuracy, macro-F1)")
    parser.add_argument("--method", default=None, help="method or preset name (harness ls methods)")
    parser.add_argument("--dataset", required=True, help="dataset name (harness ls datasets)")
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding the dataset folders")
    parser.add_argument("--subsample", default="all", choices=("all", "base", "new"))
    parser.add_argument("--split", default="test", choices=("test", "val"))
    parser.add_argument("--shots", type=argtypes.shots, default=None, help="few-shot K of the task (train side only)")
    parser.add_argument("--seed", type=argtypes.seed, default=None, help="seed of the few-shot sampling")
    add_backbone_arguments(parser)
    parser.add_argument("--weights", type=Path, default=None, help="trained prompts (run checkpoint or official file)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--batch-size", type=argtypes.positive_int, default=None,
                        help="images per batch (default: test_batch_size)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"records go to OUT/records.jsonl (default {DEFAULT_OUT})"
    )
    parser.add_argument("--save-predictions", type=Path, default=None, metavar="FILE",
                        help="write one JSON line per image: image, label, pred, logits")
    add_include_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the metrics, append the records and optionally save the predictions."""
    from harness.engine.eval_run import EvalJob, run_eval, write_predictions
    from harness.plugins import load_includes
    from harness.results.records import RECORDS_FILE, append_records

    load_includes(args.includes)
    if args.weights is not None:
        from harness.engine.integrity import check_weights_file

        check_weights_file(args.weights)
    job = EvalJob(
        dataset=args.dataset, method=args.method, data_root=args.data_root, subsample=args.subsample,
        split=args.split, shots=args.shots, seed=args.seed, model=args.model, pretrained=args.pretrained,
        model_config=args.model_config, device=args.device, precision=args.precision, weights=args.weights,
        overrides=parse_set_options(args.set), batch_size=args.batch_size,
    )
    outcome = run_eval(job)
    result = outcome.result
    records_path = args.out / RECORDS_FILE
    append_records(records_path, outcome.records)
    if args.save_predictions is not None:
        write_predictions(args.save_predictions, result)
    print(f"{outcome.method} on {outcome.dataset} ({args.subsample}, {outcome.split}): {result.n_images} images")
    print(f"* accuracy: {result.accuracy:.2f}%")
    print(f"* macro_f1: {result.macro_f1:.2f}%")
    print(f"records appended to {records_path}")
    if args.save_predictions is not None:
        print(f"predictions written to {args.save_predictions}")
    return 0
