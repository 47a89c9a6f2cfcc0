"""Regenerate the ProGrad golden files by running the official ProGrad code (BeierZhu/Prompt-align) on CPU in fp32.

Usage::

    python tests/golden/prograd/make_golden.py OFFICIAL_CHECKOUT [--out DIR] [--epochs N] [--workdir DIR]

OFFICIAL_CHECKOUT is the root of a BeierZhu/Prompt-align checkout (it holds ``ProGrad.public/`` and
``Dassl.ProGrad.pytorch/``);
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

OFFICIAL_REPO = "https://github.com/BeierZhu/Prompt-align"
CODE_DIR = "ProGrad.public"
CONFIG_FILE = "configs/trainers/ProGrad/rn50_ep100.yaml"
DATASET_CONFIG = "configs/datasets/dtd.yaml"
SEED = 1
LAMBDA = 1.0


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
    """The official base2new_train_prograd.sh opts, then the golden overrides (see README)."""
    return [
        # scripts/base2new_train_prograd.sh
        "LOSS.LAMBDA",
        str(LAMBDA),
        "TRAINER.COOP.N_CTX",
        "16",
        "TRAINER.COOP.CSC",
        "False",
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
        sys.path.insert(0, str(official / CODE_DIR))
        os.chdir(official / CODE_DIR)
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
            trainer="ProGrad",
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
        impaths, labels, logits, teacher = [], [], [], []
        with torch.no_grad():
            for batch in trainer.test_loader:
                inputs, label = trainer.parse_batch_test(batch)
                output = trainer.model_inference(inputs)
                impaths += [self.relpath(p) for p in batch["impath"]]
                labels += label.tolist()
                logits += output.float().tolist()
                teacher += trainer.zs_clip(inputs).float().tolist()  # the official zero-shot teacher
        model = trainer.model
        acc = sum(int(max(range(len(r)), key=r.__getitem__) == y) for r, y in zip(logits, labels)) / len(labels)
        return {
            "classnames": list(trainer.dm.dataset.classnames),
            "impaths": impaths,
            "labels": labels,
            "logits": logits,
            "accuracy": acc,
            "logit_scale_exp": float(model.logit_scale.exp()),
            "teacher_logits": teacher,
            "teacher_text_features": trainer.zs_clip.text_features.float().tolist(),
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
    parser.add_argument("checkout", type=Path, help="root of a BeierZhu/Prompt-align checkout")
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
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="prograd_golden_"))).resolve()
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
    ctx = model.prompt_learner.ctx
    optim = trainer.optim

    def student_hook(_module, _inputs, output):
        if model.training:
            captured["logits"] = output.detach().clone()

    def teacher_hook(_module, _inputs, output):
        if model.training:
            captured["teacher_logits"] = output.detach().clone()

    model.register_forward_hook(student_hook)
    trainer.zs_clip.register_forward_hook(teacher_hook)
    original_parse = trainer.parse_batch_train
    original_fb = trainer.forward_backward
    original_zero_grad = optim.zero_grad
    original_step = optim.step

    # The official prograd_backward_and_update (DPG trainer.py:311-350) calls zero_grad twice per step: first
    # before the KD backward, then after cloning the KD gradient; the gradient present at the second call is
    # the KD gradient. At optimizer.step the gradient is the (possibly projected) CE gradient that is applied.
    def zero_grad(*a, **k):
        captured.setdefault("grads_at_zero_grad", []).append(None if ctx.grad is None else ctx.grad.detach().clone())
        return original_zero_grad(*a, **k)

    def step(*a, **k):
        captured["applied_grad"] = ctx.grad.detach().clone()
        captured["ctx_before_step"] = ctx.detach().clone()
        return original_step(*a, **k)

    optim.zero_grad = zero_grad
    optim.step = step
    # A tensor hook on ctx sees each backward's gradient as it is computed: the KD one, then the raw CE one
    # (before the official projection).
    ctx.register_hook(lambda grad: captured.setdefault("backward_grads", []).append(grad.detach().clone()))

    def parse_batch_train(batch):
        captured["impaths"] = [off.relpath(p) for p in batch["impath"]]
        image, label = original_parse(batch)
        captured["labels"] = label.tolist()
        return image, label

    def forward_backward(batch):
        captured["grads_at_zero_grad"] = []
        captured["backward_grads"] = []
        lr = trainer.get_current_lr()
        summary = original_fb(batch)
        kd_grad = captured["grads_at_zero_grad"][1]
        applied = captured["applied_grad"]
        assert len(captured["backward_grads"]) == 2 and torch.equal(captured["backward_grads"][0], kd_grad)
        ce_grad = captured["backward_grads"][1]

        def cos_of(a, b):
            return float((a.flatten() @ b.flatten()) / (a.norm() * b.norm()))

        step_record = {
            "epoch": trainer.epoch + 1,
            "batch": trainer.batch_idx + 1,
            "lr": lr,
            "xe_loss": summary["xe_loss"],
            "kl_loss": summary["kl_loss"],
            "acc": summary["acc"],
            "kd_grad_norm": float(kd_grad.norm()),
            "ce_grad_norm": float(ce_grad.norm()),
            "applied_grad_norm": float(applied.norm()),
            "cos_ce_kd": cos_of(ce_grad, kd_grad),
            "projected": not torch.equal(applied, ce_grad),
            "cos_applied_kd": cos_of(applied, kd_grad),
            "batch_impaths": captured["impaths"],
            "batch_labels": captured["labels"],
            "lr_after_step": trainer.get_current_lr(),
        }
        if not steps:
            step_record["first_step_tensors"] = {
                "student_logits": captured["logits"].tolist(),
                "teacher_logits": captured["teacher_logits"].tolist(),
                "ctx_before": captured["ctx_before_step"].tolist(),
                "kd_grad": kd_grad.tolist(),
                "ce_grad": ce_grad.tolist(),
                "applied_grad": applied.tolist(),
                "ctx_after": ctx.detach().tolist(),
            }
        steps.append(step_record)
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
        "method": "ProGrad",
        "official": {
            "repo": OFFICIAL_REPO,
            "commit": commit,
            "trainer": "ProGrad.public/trainers/prograd.py",
            "gradient_rule": "Dassl.ProGrad.pytorch/dassl/engine/trainer.py prograd_backward_and_update",
            "config_file": CONFIG_FILE,
            "patch": "official.patch",
        },
        "setting": {
            "seed": SEED,
            "dataset": "DescribableTextures (tests/golden/common.py write_tiny_dtd)",
            "opts": opts_for("base", args.epochs),
            "epochs": args.epochs,
            "lambda": LAMBDA,
            "precision": "fp32 (TRAINER.COOP.PREC fp32; the official teacher is fp32 anyway)",
        },
        "checkpoints": {
            "init": {"path": "init/prompt_learner/model.pth.tar-0"},
            "trained": {"path": f"trained/prompt_learner/model.pth.tar-{args.epochs}"},
        },
        "train": {
            "classnames": train_classnames,
            "train_split": [{"impath": p, "label": y} for p, y in train_items],
            "steps": steps,
            "epoch_xe_losses": [s["xe_loss"] for s in steps],
            "epoch_kl_losses": [s["kl_loss"] for s in steps],
            "epoch_lrs": [s["lr"] for s in steps],
            "first_step_terms": {
                "xe_loss": first["xe_loss"],
                "kl_loss": first["kl_loss"],
                "lambda": LAMBDA,
                "cos_ce_kd": first["cos_ce_kd"],
                "projected": first["projected"],
                "cos_applied_kd": first["cos_applied_kd"],
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
