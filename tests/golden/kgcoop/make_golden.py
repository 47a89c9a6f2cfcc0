"""Regenerate the KgCoOp golden files by running the official KgCoOp code (htyao89/KgCoOp) on CPU in fp32.

Usage::

    python tests/golden/kgcoop/make_golden.py OFFICIAL_CHECKOUT [--out DIR] [--epochs N] [--workdir DIR]

OFFICIAL_CHECKOUT is the root of an htyao89/KgCoOp checkout (it holds ``KgCoOp/`` and ``Dassl.ProGrad.pytorch/``);
it is copied to a scratch folder, ``official.patch`` (beside this script) is applied to the copy with
``patch -p1``, the tiny DTD-layout dataset of ``tests/golden/common.py`` is written, and the official trainer
runs in this process. Nothing here re-implements the method: the model, the loss, the optimiser, the schedule,
the data pipeline, checkpoint writing and inference are the official code's; this script only builds the
config, calls the official trainer, and records what it produced.

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

OFFICIAL_REPO = "https://github.com/htyao89/KgCoOp"
CONFIG_FILE = "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml"
DATASET_CONFIG = "configs/datasets/dtd.yaml"
SEED = 1
W = 8.0


def prepare_official(checkout: Path, workdir: Path) -> Path:
    """Copy the checkout and apply the golden patch; returns the patched copy."""
    dest = workdir / "official"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(checkout, dest, ignore=shutil.ignore_patterns(".git", "output", "__pycache__"))
    with open(HERE / "official.patch", "rb") as patch:
        subprocess.run(["patch", "-p1", "--no-backup-if-mismatch", "-d", str(dest)], stdin=patch, check=True)
    return dest


def git_commit(checkout: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:  # an archive without .git: the caller records the commit by hand
        return "unknown (not a git checkout)"


def opts_for(subset: str, epochs: int) -> list[str]:
    """The official base2new_train.sh opts, then the golden overrides (see README)."""
    return [
        # scripts/base2new_train.sh (NUM_SHOTS 16 there; 4 here, the tiny split has 8 per class)
        "TRAINER.COOP.N_CTX",
        "4",
        "TRAINER.COOP.CSC",
        "False",
        "TRAINER.COOP.W",
        str(W),
        "TRAINER.COOP.CLASS_TOKEN_POSITION",
        "end",
        "DATASET.NUM_SHOTS",
        "4",
        "DATASET.SUBSAMPLE_CLASSES",
        subset,
        # golden overrides: CPU fp32, 32 px, no random augmentation, no workers, a short schedule
        "TRAINER.COOP.PREC",
        "fp32",
        "INPUT.SIZE",
        "(32, 32)",
        "INPUT.TRANSFORMS",
        "['normalize']",
        "DATALOADER.NUM_WORKERS",
        "0",
        "OPTIM.MAX_EPOCH",
        str(epochs),
    ]


class Official:
    """Drives the patched official code in-process (train.py's setup_cfg and Dassl's build_trainer)."""

    def __init__(self, official: Path, data_root: Path, runs: Path, epochs: int):
        sys.path.insert(0, str(official / "Dassl.ProGrad.pytorch"))
        sys.path.insert(0, str(official / "KgCoOp"))
        os.chdir(official / "KgCoOp")
        import torch

        torch.set_num_threads(1)
        import train as official_train  # the official train.py (registers datasets and trainers)
        from dassl.engine import build_trainer
        from dassl.utils import set_random_seed

        self.torch = torch
        self.train_mod = official_train
        self.build_trainer = build_trainer
        self.set_random_seed = set_random_seed
        self.official = official
        self.data_root = data_root
        self.runs = runs
        self.epochs = epochs

    def cfg(self, subset: str, output_dir: Path):
        args = Namespace(
            root=str(self.data_root),
            output_dir=str(output_dir),
            resume="",
            seed=SEED,
            source_domains=None,
            target_domains=None,
            transforms=None,
            trainer="KgCoOp",
            backbone=str(GOLDEN_CLIP),
            head="",
            dataset_config_file=DATASET_CONFIG,
            config_file=CONFIG_FILE,
            opts=opts_for(subset, self.epochs),
        )
        return self.train_mod.setup_cfg(args)

    def trainer(self, subset: str, output_dir: Path):
        """train.py main() up to build_trainer: seed, then build (dataset, model, optimiser)."""
        cfg = self.cfg(subset, output_dir)
        self.set_random_seed(cfg.SEED)
        return cfg, self.build_trainer(cfg)

    def relpath(self, impath: str) -> str:
        return Path(impath).resolve().relative_to(self.data_root.resolve()).as_posix()

    def evaluate(self, ckpt_dir: Path, epoch: int, subset: str) -> dict:
        """train.py --eval-only: build, load_model(dir, epoch), then the test loop (logits kept)."""
        torch = self.torch
        _, trainer = self.trainer(subset, self.runs / f"eval_{ckpt_dir.name}_{subset}")
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
        model = trainer.model
        handcrafted = model.ori_embedding.float()
        acc = sum(int(max(range(len(r)), key=r.__getitem__) == y) for r, y in zip(logits, labels)) / len(labels)
        return {
            "classnames": list(trainer.dm.dataset.classnames),
            "impaths": impaths,
            "labels": labels,
            "logits": logits,
            "accuracy": acc,
            "logit_scale_exp": float(model.logit_scale.exp()),
            "handcrafted_text_features": (handcrafted / handcrafted.norm(dim=-1, keepdim=True)).tolist(),
        }


def state_summary(path: Path) -> dict:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {
        "file": path.as_posix(),
        "top_level_keys": sorted(ckpt.keys()),
        "epoch": ckpt["epoch"],
        "state_dict": {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in ckpt["state_dict"].items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="root of an htyao89/KgCoOp checkout")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--commit", default=None, help="the checkout's commit, when it is not a git checkout")
    parser.add_argument(
        "--order-seed",
        type=int,
        default=None,
        help="re-seed torch just before train() (changes only the sampler's order within the one "
        "batch); used to check that the run does not depend on the random stream",
    )
    args = parser.parse_args()

    checkout = args.checkout.resolve()
    out = args.out.resolve()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="kgcoop_golden_"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    commit = args.commit or git_commit(checkout)
    official_dir = prepare_official(checkout, workdir)
    data_root = workdir / "data"
    if data_root.exists():
        shutil.rmtree(data_root)
    write_tiny_dtd(data_root)
    runs = workdir / "runs"
    if runs.exists():
        shutil.rmtree(runs)
    off = Official(official_dir, data_root, runs, args.epochs)
    torch = off.torch
    import torch.nn.functional as F

    # 1. init: the learnable state right after the official model is built with seed 1 (base classes)
    init_run = runs / "init"
    cfg, trainer = off.trainer("base", init_run)
    trainer.save_model(-1, str(init_run))  # Dassl save_model: <dir>/prompt_learner/model.pth.tar-0
    config_dump = cfg.dump()

    # 2. training from exactly that init: fresh build (seed 1), load the init checkpoint, official train()
    train_run = runs / "train"
    _, trainer = off.trainer("base", train_run)
    trainer.load_model(str(init_run), epoch=0)
    steps: list[dict] = []
    captured: dict = {}
    model = trainer.model

    def hook(_module, _inputs, output):
        if model.training:
            captured["logits"], captured["score"] = output[0].detach().clone(), output[1].detach().clone()

    model.register_forward_hook(hook)
    original_parse = trainer.parse_batch_train
    original_fb = trainer.forward_backward
    ctx = model.prompt_learner.ctx
    optim = trainer.optim
    original_step = optim.step

    def step(*a, **k):  # reads the gradient the official update applies (Dassl model_update)
        captured["grad"] = ctx.grad.detach().clone()
        captured["ctx_before_step"] = ctx.detach().clone()
        return original_step(*a, **k)

    optim.step = step

    def parse_batch_train(batch):
        captured["impaths"] = [off.relpath(p) for p in batch["impath"]]
        image, label = original_parse(batch)
        captured["labels"] = label.tolist()
        return image, label

    def forward_backward(batch):
        lr = trainer.get_current_lr()
        summary = original_fb(batch)
        logits, score = captured["logits"], captured["score"]
        ce = F.cross_entropy(logits, torch.tensor(captured["labels"])).item()
        record = {
            "epoch": trainer.epoch + 1,
            "batch": trainer.batch_idx + 1,
            "lr": lr,
            "loss": summary["loss"],
            "acc": summary["acc"],
            "ce": ce,
            "kg_score": score.item(),
            "w": W,
            "grad_norm": float(captured["grad"].norm()),
            "batch_impaths": captured["impaths"],
            "batch_labels": captured["labels"],
            "lr_after_step": trainer.get_current_lr(),
        }
        if not steps:
            record["first_step_tensors"] = {
                "logits": logits.tolist(),
                "ctx_before": captured["ctx_before_step"].tolist(),
                "grad": captured["grad"].tolist(),
                "ctx_after": ctx.detach().tolist(),
            }
        steps.append(record)
        return summary

    trainer.parse_batch_train = parse_batch_train
    trainer.forward_backward = forward_backward
    if args.order_seed is not None:
        torch.manual_seed(args.order_seed)
    trainer.train()
    train_classnames = list(trainer.dm.dataset.classnames)
    train_items = [(off.relpath(d.impath), d.label) for d in trainer.dm.dataset.train_x]

    # 3. logits of the init and trained checkpoints on the base, new and all-class test splits
    evals = {}
    for name, ckpt_dir, epoch in (("init", init_run, 0), ("trained", train_run, args.epochs)):
        evals[name] = {subset: off.evaluate(ckpt_dir, epoch, subset) for subset in ("base", "new", "all")}

    # 4. write the golden files
    for name, run_dir, epoch in (("init", init_run, 0), ("trained", train_run, args.epochs)):
        dest = out / name / "prompt_learner"
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        shutil.copy2(run_dir / "prompt_learner" / f"model.pth.tar-{epoch}", dest / f"model.pth.tar-{epoch}")
        shutil.copy2(run_dir / "prompt_learner" / "checkpoint", dest / "checkpoint")
    # the scratch folder's path is replaced, so that regenerations give the same file
    (out / "official_config.yaml").write_text(config_dump.replace(str(workdir), "<workdir>"), encoding="utf-8")
    first = steps[0]
    result = {
        "method": "KgCoOp",
        "official": {
            "repo": OFFICIAL_REPO,
            "commit": commit,
            "trainer": "KgCoOp/trainers/kgcoop.py",
            "config_file": CONFIG_FILE,
            "patch": "official.patch",
        },
        "setting": {
            "seed": SEED,
            "dataset": "DescribableTextures (tests/golden/common.py write_tiny_dtd)",
            "opts": opts_for("base", args.epochs),
            "epochs": args.epochs,
            "w": W,
            "precision": "fp32 (TRAINER.COOP.PREC fp32; hand-crafted features fp32 by patch)",
        },
        "checkpoints": {
            "init": {"path": "init/prompt_learner/model.pth.tar-0"},
            "trained": {"path": f"trained/prompt_learner/model.pth.tar-{args.epochs}"},
        },
        "train": {
            "classnames": train_classnames,
            "train_split": [{"impath": p, "label": y} for p, y in train_items],
            "steps": steps,
            "epoch_losses": [s["loss"] for s in steps],
            "epoch_lrs": [s["lr"] for s in steps],
            "first_step_terms": {
                "ce": first["ce"],
                "kg_score": first["kg_score"],
                "w": W,
                "w_times_kg_score": W * first["kg_score"],
                "total_loss": first["loss"],
            },
        },
        "eval": evals,
    }
    for name in ("init", "trained"):
        entry = result["checkpoints"][name]
        entry.update(state_summary(out / entry["path"]) | {"file": entry["path"]})
    (out / "logits.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
