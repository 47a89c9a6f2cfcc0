"""Regenerate the CLAP (zero-shot-initialised linear probe + class-adaptive l2 constraint) golden files by
running the official jusiro/CLAP code.

Usage (from the repository root)::

    python tests/golden/clap/make_golden.py /path/to/CLAP /path/to/Dassl.pytorch [OUT_DIR]

It copies the checkout to a temporary folder, applies ``clap_golden.patch`` (the tiny golden CLIP instead of the
download, ``.cuda()`` removed), writes the tiny DTD and runs the official ``train.py`` main in a subprocess with
the arguments of ``scripts/adapt.sh`` (``--trainer ADAPTER --config-file configs/trainers/SGD_lr1e-1_B256_ep300.yaml
DATASET.NUM_SHOTS 2 TRAINER.ADAPTER.INIT ZS TRAINER.ADAPTER.CONSTRAINT l2``, seed 1) plus CPU settings given as
config options (``TRAINER.ADAPTER.PREC fp32``, ``INPUT.SIZE (32, 32)``, ``INPUT.TRANSFORMS ['normalize']``,
``DATALOADER.NUM_WORKERS 0``). Around the official trainer it only records: it wraps ``ADAPTER.forward_backward``,
``AdapterMethod.zero_shot_constraint``, ``F.cross_entropy`` (in the trainer module) and ``ADAPTER.after_train``
(calling the originals unchanged). Not a test module; the test suite never imports it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
COMMIT = "dbdf4095b3d824546474c725539b9f4efff3ca0e"
SHOTS = 2


def official_argv(data_root: str, output_dir: str) -> list[str]:
    return ["train.py", "--root", data_root, "--seed", "1", "--trainer", "ADAPTER",
            "--dataset-config-file", "configs/datasets/dtd.yaml",
            "--config-file", "configs/trainers/SGD_lr1e-1_B256_ep300.yaml", "--output-dir", output_dir,
            "--backbone", "ViT-B/16",
            "DATASET.NUM_SHOTS", str(SHOTS), "TRAINER.ADAPTER.INIT", "ZS", "TRAINER.ADAPTER.CONSTRAINT", "l2",
            "TRAINER.ADAPTER.PREC", "fp32", "INPUT.SIZE", "(32, 32)", "INPUT.TRANSFORMS", "['normalize']",
            "DATALOADER.NUM_WORKERS", "0"]


def worker(repo: Path, data_root: Path, out: Path) -> None:
    import runpy

    import torch

    sys.path.insert(0, str(repo))
    os.chdir(repo)
    import trainers.adapters as A  # noqa: E402  (official)

    rec: dict = {"steps": []}
    fb = A.ADAPTER.forward_backward

    def forward_backward(self, features, labels):
        step = {"prototypes_before": self.model.adapter.prototypes.detach().clone(),
                "lr": self.optim.param_groups[0]["lr"], "labels": labels.detach().clone()}
        rec["steps"].append(step)
        summary = fb(self, features, labels)
        step["loss"] = summary["loss"]
        step["acc_test"] = summary["acc_test"]
        return summary

    A.ADAPTER.forward_backward = forward_backward
    zc = A.AdapterMethod.zero_shot_constraint

    def zero_shot_constraint(self):
        value = zc(self)
        rec["steps"][-1]["loss_constraint"] = value.item()
        return value

    A.AdapterMethod.zero_shot_constraint = zero_shot_constraint
    F = A.F

    class FProxy:
        def __getattr__(self, name):
            return getattr(F, name)

        @staticmethod
        def cross_entropy(logits, labels, *a, **k):
            loss = F.cross_entropy(logits, labels, *a, **k)
            rec["steps"][-1]["loss_ce"] = loss.item()
            if len(rec["steps"]) in (1, 2, 300):
                rec["steps"][-1]["train_logits"] = logits.detach().clone()
            return loss

    A.F = FProxy()
    at = A.ADAPTER.after_train

    def after_train(self):
        ad = self.model.adapter
        rec["final"] = {
            "features_train": self.features_train.detach().clone(), "labels_train": self.labels_train.detach().clone(),
            "logits_zs_train": self.logits_zs.detach().clone(),
            "features_test": self.features_test.detach().clone(), "labels_test": self.labels_test.detach().clone(),
            "base_text_features": ad.base_text_features.detach().clone(),
            "lagrangian_multipliers": ad.alpha_constraint.detach().clone(),
            "prototypes_final": ad.prototypes.detach().clone(),
            "logit_scale": self.model.logit_scale.detach().clone(),
            "test_logits_final": self.model.forward_features(self.features_test.clone()).detach().clone(),
        }
        rec["impaths"] = {"train": [os.path.relpath(d.impath, data_root) for d in self.dm.dataset.train_x],
                          "test": [os.path.relpath(d.impath, data_root) for d in self.dm.dataset.test]}
        rec["classnames"] = self.dm.dataset.classnames
        return at(self)

    A.ADAPTER.after_train = after_train
    output_dir = out / "_output"
    sys.argv = official_argv(str(data_root), str(output_dir))
    runpy.run_path("train.py", run_name="__main__")

    ckpt = next(output_dir.rglob("model.pth.tar-300"))
    (out / "trained" / "adapter").mkdir(parents=True, exist_ok=True)
    shutil.copy(ckpt, out / "trained" / "adapter" / "model.pth.tar-300")
    shutil.rmtree(output_dir)
    steps = rec["steps"]
    result = dict(rec["final"])
    result["prototypes_init"] = steps[0]["prototypes_before"]
    result["train_logits_at_step"] = {i + 1: s["train_logits"] for i, s in enumerate(steps) if "train_logits" in s}
    result["prototypes_after_step1"] = steps[1]["prototypes_before"]
    torch.save(result, out / "clap.pt")
    meta = {"argv": official_argv("<root>", "<output_dir>")[1:], "classnames": rec["classnames"],
            "impaths": rec["impaths"],
            "per_step": [{k: s[k] for k in ("lr", "loss", "loss_ce", "loss_constraint", "acc_test")} for s in steps],
            "train_label_order_per_step_1": steps[0]["labels"].tolist()}
    (out / "clap.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def main(official: Path, dassl: Path, out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.golden.common import GOLDEN_CLIP, write_tiny_dtd

    work = Path(tempfile.mkdtemp(prefix="clap_golden_"))
    repo = work / "CLAP"
    shutil.copytree(official, repo)
    subprocess.run(["patch", "-p1", "-i", str(HERE / "clap_golden.patch")], cwd=repo, check=True)
    dassl_copy = work / "Dassl.pytorch"
    shutil.copytree(dassl, dassl_copy)
    subprocess.run(["patch", "-p1", "-i", str(HERE / "dassl_golden.patch")], cwd=dassl_copy, check=True)
    dassl = dassl_copy
    data_root = work / "data"
    write_tiny_dtd(data_root)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "trained", ignore_errors=True)
    env = dict(os.environ, GOLDEN_CLIP=str(GOLDEN_CLIP), CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=f"{dassl}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with open(out / "clap_stdout.txt", "w") as log:
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(repo), str(data_root),
                        str(out)], env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
    shutil.rmtree(work)


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve(),
             Path(sys.argv[3]).resolve() if len(sys.argv) > 3 else HERE)
