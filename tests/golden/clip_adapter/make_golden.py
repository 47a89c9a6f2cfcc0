"""Regenerate the CLIP-Adapter golden files by running the official code (gaopengcuhk/CLIP-Adapter) on CPU in fp32.

Usage::

    python tests/golden/clip_adapter/make_golden.py CLIP_ADAPTER COOP DASSL [--out DIR] [--epochs N] [--workdir DIR]

CLIP_ADAPTER, COOP and DASSL are checkouts of gaopengcuhk/CLIP-Adapter, KaiyangZhou/CoOp and
KaiyangZhou/Dassl.pytorch. The official CLIP-Adapter release is one Dassl trainer file whose README says: put
``clip_adapter.py`` under CoOp's ``./trainers``, add the import, and run CoOp's command. This script does exactly
that in a scratch folder (a copy of CoOp, Dassl as ``Dassl.pytorch/`` inside it, ``trainers/clip_adapter.py``),
applies ``official.patch`` (beside this script; it also adds the import line to ``train.py``) with ``patch -p1``,
writes the tiny DTD-layout dataset of ``tests/golden/common.py`` and drives CoOp's ``train.py`` setup and Dassl's
trainer in this process. Nothing here re-implements the method: model, loss, optimiser, schedule, data pipeline,
checkpoints and inference are the official code's; this script builds the config, calls the official trainer and
records what it produced.

Two trainings, each from its saved seed-1 init: ``all`` (the few-shot protocol the official code was made for: 6
classes, 4 shots, seed 1) and ``base`` (``DATASET.SUBSAMPLE_CLASSES base``: 3 classes; logits on base and new test).

Not a test (no ``test_`` prefix) and never imported by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from argparse import Namespace
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from tests.golden.common import GOLDEN_CLIP, write_tiny_dtd  # noqa: E402

REPOS = {"clip_adapter": "https://github.com/gaopengcuhk/CLIP-Adapter", "coop": "https://github.com/KaiyangZhou/CoOp",
         "dassl": "https://github.com/KaiyangZhou/Dassl.pytorch"}
CONFIG_FILE = "configs/trainers/CoOp/rn50.yaml"  # CoOp's basic RN50 yaml (no CLIP-Adapter config was released)
DATASET_CONFIG = "configs/datasets/dtd.yaml"
SEED = 1
SHOTS = 4


def assemble(clip_adapter: Path, coop: Path, dassl: Path, workdir: Path) -> Path:
    dest = workdir / "official"
    if dest.exists():
        shutil.rmtree(dest)
    ignore = shutil.ignore_patterns(".git", "output", "__pycache__")
    shutil.copytree(coop, dest, ignore=ignore)
    shutil.copytree(dassl, dest / "Dassl.pytorch", ignore=ignore)
    shutil.copy(clip_adapter / "clip_adapter.py", dest / "trainers" / "clip_adapter.py")
    with open(HERE / "official.patch", "rb") as patch:
        subprocess.run(["patch", "-p1", "--no-backup-if-mismatch", "-d", str(dest)], stdin=patch, check=True)
    return dest


def git_commit(checkout: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return "unknown (not a git checkout)"


def dumps(obj, indent: int = 0) -> str:
    """JSON with dicts indented and numeric lists (and rows of matrices) on one line each."""
    pad = " " * indent
    if isinstance(obj, dict):
        items = [f'{pad} {json.dumps(k)}: {dumps(v, indent + 1).lstrip()}' for k, v in obj.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and all(isinstance(x, list) for x in obj):
        rows = [pad + " " + json.dumps(x, separators=(",", ":")) for x in obj]
        return pad + "[\n" + ",\n".join(rows) + "\n" + pad + "]"
    return pad + json.dumps(obj, separators=(",", ":"))


def opts_for(subset: str, epochs: int) -> list[str]:
    """Golden overrides of CoOp's rn50.yaml (see README)."""
    return [
        "DATASET.NUM_SHOTS", str(SHOTS), "DATASET.SUBSAMPLE_CLASSES", subset,
        "INPUT.SIZE", "(32, 32)", "INPUT.TRANSFORMS", "['normalize']",
        "DATALOADER.NUM_WORKERS", "0", "OPTIM.MAX_EPOCH", str(epochs),
    ]


class Official:
    """Drives the patched official code in-process (CoOp train.py's setup_cfg and Dassl's build_trainer)."""

    def __init__(self, official: Path, data_root: Path, runs: Path, epochs: int):
        sys.path.insert(0, str(official / "Dassl.pytorch"))
        sys.path.insert(0, str(official))
        os.chdir(official)
        import torch

        torch.set_num_threads(1)
        import train as official_train  # CoOp's train.py (registers the datasets and, patched, CLIP_Adapter)
        from dassl.engine import build_trainer
        from dassl.utils import set_random_seed

        self.torch = torch
        self.train_mod = official_train
        self.build_trainer = build_trainer
        self.set_random_seed = set_random_seed
        self.data_root = data_root
        self.runs = runs
        self.epochs = epochs

    def trainer(self, subset: str, output_dir: Path):
        """train.py main() up to build_trainer: seed, then build (dataset, model, optimiser)."""
        args = Namespace(
            root=str(self.data_root), output_dir=str(output_dir), resume="", seed=SEED, source_domains=None,
            target_domains=None, transforms=None, trainer="CLIP_Adapter", backbone=str(GOLDEN_CLIP), head="",
            dataset_config_file=DATASET_CONFIG, config_file=CONFIG_FILE, opts=opts_for(subset, self.epochs),
        )
        cfg = self.train_mod.setup_cfg(args)
        self.set_random_seed(cfg.SEED)
        return cfg, self.build_trainer(cfg)

    def relpath(self, impath: str) -> str:
        return Path(impath).resolve().relative_to((self.data_root / "dtd" / "images").resolve()).as_posix()

    def evaluate(self, ckpt_dir: Path, epoch: int, subset: str) -> dict:
        """train.py --eval-only --load-epoch: build, load_model(dir, epoch), the test loop (logits kept)."""
        torch = self.torch
        _, trainer = self.trainer(subset, self.runs / f"eval_{ckpt_dir.name}_{epoch}_{subset}")
        trainer.load_model(str(ckpt_dir), epoch=epoch)
        trainer.set_model_mode("eval")
        impaths, labels, logits = [], [], []
        with torch.no_grad():
            for batch in trainer.test_loader:
                inputs, label = trainer.parse_batch_test(batch)
                output = trainer.model_inference(inputs)
                impaths += [self.relpath(p) for p in batch["impath"]]
                labels += label.tolist()
                logits += output.float().tolist()
            text = trainer.model.text_encoder()
            text = text / text.norm(dim=-1, keepdim=True)
        acc = sum(int(max(range(len(r)), key=r.__getitem__) == y) for r, y in zip(logits, labels)) / len(labels)
        return {"classnames": list(trainer.dm.dataset.classnames), "impaths": impaths, "labels": labels,
                "logits": logits, "accuracy": acc, "logit_scale_exp": float(trainer.model.logit_scale.exp()),
                "text_features_normalised": text.float().tolist()}

    def train(self, subset: str, init_dir: Path, output_dir: Path) -> dict:
        """A fresh seed-1 build, the init checkpoint loaded, then the official trainer.train()."""
        torch = self.torch
        _, trainer = self.trainer(subset, output_dir)
        trainer.load_model(str(init_dir), epoch=0)
        steps: list[dict] = []
        captured: dict = {}
        model = trainer.model

        def hook(_module, _inputs, output):
            if model.training:
                captured["logits"] = output.detach().clone()

        model.register_forward_hook(hook)
        original_parse = trainer.parse_batch_train
        original_fb = trainer.forward_backward

        def parse_batch_train(batch):
            captured["impaths"] = [self.relpath(p) for p in batch["impath"]]
            return original_parse(batch)

        def forward_backward(batch):
            lr = trainer.get_current_lr()
            summary = original_fb(batch)
            steps.append({"epoch": trainer.epoch, "batch": trainer.batch_idx, "lr_used": lr,
                          "loss": summary["loss"], "acc": summary["acc"],
                          "lr_after_step_and_update_lr": trainer.get_current_lr(),
                          "batch_impaths": captured["impaths"],
                          "train_logits": captured["logits"].float().tolist()})
            return summary

        trainer.parse_batch_train = parse_batch_train
        trainer.forward_backward = forward_backward
        trainer.train()  # Dassl: epochs, save model.pth.tar-<N> at the end, then test() on the last-epoch model
        return {"steps": steps}


def state_summary(path: Path) -> dict:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {"file": path.as_posix(), "top_level_keys": sorted(ckpt.keys()), "epoch": ckpt["epoch"],
            "state_dict": {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in ckpt["state_dict"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip_adapter", type=Path)
    parser.add_argument("coop", type=Path)
    parser.add_argument("dassl", type=Path)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--commits", nargs=3, default=None, help="commits of the three checkouts when not git")
    args = parser.parse_args()

    checkouts = [p.resolve() for p in (args.clip_adapter, args.coop, args.dassl)]
    commits = args.commits or [git_commit(p) for p in checkouts]
    out = args.out.resolve()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="clip_adapter_golden_"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    official = assemble(*checkouts, workdir)
    data_root = workdir / "data"
    if data_root.exists():
        shutil.rmtree(data_root)
    write_tiny_dtd(data_root)
    runs = workdir / "runs"
    if runs.exists():
        shutil.rmtree(runs)
    off = Official(official, data_root, runs, args.epochs)

    result: dict = {"official_repos": {name: {"url": REPOS[name], "commit": c} for name, c in zip(REPOS, commits)},
                    "config_file": CONFIG_FILE, "dataset_config_file": DATASET_CONFIG, "seed": SEED,
                    "opts": {}, "runs": {}}
    for subset in ("all", "base"):
        init_run = runs / f"init_{subset}"
        cfg, trainer = off.trainer(subset, init_run)
        trainer.save_model(-1, str(init_run))  # Dassl save_model: <dir>/clip_adapter/model.pth.tar-0
        if subset == "all":
            result["config_dump"] = (cfg.dump().replace(str(GOLDEN_CLIP), "tests/golden/golden_clip.pt")
                                     .replace(str(data_root), "<tiny DTD root>").replace(str(runs), "<runs>"))
        result["opts"][subset] = opts_for(subset, args.epochs)
        train_run = runs / f"train_{subset}"
        record = off.train(subset, init_run, train_run)
        eval_subsets = ["all"] if subset == "all" else ["base", "new"]
        record["init_logits"] = {s: off.evaluate(init_run, 0, s) for s in eval_subsets}
        record["trained_logits"] = {s: off.evaluate(train_run, args.epochs, s) for s in eval_subsets}
        for kind, run, epoch in (("init", init_run, 0), ("trained", train_run, args.epochs)):
            dest = out / kind / subset / "clip_adapter"
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(run / "clip_adapter" / f"model.pth.tar-{epoch}", dest / f"model.pth.tar-{epoch}")
            record[f"{kind}_checkpoint"] = state_summary(dest / f"model.pth.tar-{epoch}")
            record[f"{kind}_checkpoint"]["file"] = f"{kind}/{subset}/clip_adapter/model.pth.tar-{epoch}"
        result["runs"][subset] = record
    (out / "golden.json").write_text(dumps(result) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
