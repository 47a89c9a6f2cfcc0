"""Regenerate the LP++ golden files by running the official FereshteShakeri/FewShot-CLIP-Strong-Baseline code.

Usage (from the repository root)::

    python tests/golden/lp_plus_plus/make_golden.py /path/to/FewShot-CLIP-Strong-Baseline [OUT_DIR]

It copies the checkout to a temporary folder, applies ``lpp_golden.patch`` (CPU, tiny CLIP, fp32 one-hot, no
random augmentation, workers 0), writes the tiny DTD and runs the official ``main.main()`` in a subprocess with
``--dataset_config configs/dtd.yaml --opts root_path <root> shots 2 tasks 2 finetune False`` (method
``LinearProbe_P2`` = LP++, 300 epochs, from ``configs/base.yaml``). Around the official code it only records: it
wraps ``LinearProbe_P2.forward`` (its inputs), the ``nn.Linear`` the method builds (forward hooks: weights at the
first forward, inputs and outputs), ``Variable`` (the alpha vector) and ``F.cross_entropy`` (losses), calling the
originals unchanged. Not a test module; the test suite never imports it.
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
COMMIT = "f81054f995b060f8348d20e7306e15889b70c786"
SHOTS, TASKS = 2, 2


def worker(repo: Path, data_root: Path, out: Path) -> None:
    import torch

    sys.path.insert(0, str(repo))
    os.chdir(repo)
    import main as M  # noqa: E402  (official)

    from methods import linear_probe_p2 as P  # noqa: E402  (official)

    tasks: list[dict] = []
    orig_forward = P.LinearProbe_P2.forward

    def forward(self, train_loader, val_loader, test_features, test_labels, text_weights, model, classnames):
        rec = {"text_weights": text_weights.clone(), "test_features": test_features.clone(),
               "test_labels": test_labels.clone(), "losses": [], "calls": [], "alpha": []}
        tasks.append(rec)
        loss, acc = orig_forward(self, train_loader, val_loader, test_features, test_labels, text_weights, model,
                                 classnames)
        rec["lr_alpha"] = float(self.lr_alpha)
        rec["acc_test"] = float(acc)
        return loss, acc

    P.LinearProbe_P2.forward = forward
    nn, F, Variable = P.nn, P.F, P.Variable

    class NNProxy:
        def __getattr__(self, name):
            return getattr(nn, name)

        @staticmethod
        def Linear(*a, **k):
            lin = nn.Linear(*a, **k)
            rec = tasks[-1]

            def hook(mod, inp, outp):
                if not rec["calls"]:
                    rec["W0"], rec["b0"] = mod.weight.detach().clone(), mod.bias.detach().clone()
                rec["calls"].append((inp[0].detach().clone(), outp.detach().clone()))
            lin.register_forward_hook(hook)
            rec["classifier"] = lin
            return lin

    class FProxy:
        def __getattr__(self, name):
            return getattr(F, name)

        @staticmethod
        def cross_entropy(logits, labels, *a, **k):
            loss = F.cross_entropy(logits, labels, *a, **k)
            rec = tasks[-1]
            rec["losses"].append(loss.item())
            rec["train_labels"] = labels.clone()
            rec.setdefault("train_logits", []).append(logits.detach().clone())
            rec["alpha"].append(rec["alpha_vec"].detach().clone())
            return loss

    def variable(t, **k):
        v = Variable(t, **k)
        tasks[-1]["alpha_vec"] = v
        tasks[-1]["alpha0"] = t.detach().clone()
        return v

    P.nn, P.F, P.Variable = NNProxy(), FProxy(), variable
    def recording(fname):
        original = getattr(P, fname)

        def wrapped(*a, **k):
            value = original(*a, **k)
            tasks[-1][fname] = float(value)
            return value

        return wrapped

    for fname in ("calculate_lr_w", "calculate_init_alpha", "calculate_lr_alpha"):
        setattr(P, fname, recording(fname))
    sys.argv = ["main.py", "--base_config", "configs/base.yaml", "--dataset_config", "configs/dtd.yaml", "--opts",
                "root_path", str(data_root), "shots", str(SHOTS), "tasks", str(TASKS), "finetune", "False",
                "output_dir", str(out / "_results")]
    built = M.build_dataset

    def build_dataset(*a, **k):
        ds = built(*a, **k)
        gen = ds.generate_fewshot_dataset_

        def fewshot(num_shots, split):
            data = gen(num_shots, split)
            tasks_draws.append([os.path.relpath(d.impath, data_root) for d in data])
            return data
        ds.generate_fewshot_dataset_ = fewshot
        meta["classnames"], meta["template"] = ds.classnames, ds.template
        meta["test_impaths"] = [os.path.relpath(d.impath, data_root) for d in ds.test]
        return ds

    tasks_draws: list = []
    meta: dict = {}
    M.build_dataset = build_dataset
    M.main()
    shutil.rmtree(out / "_results", ignore_errors=True)

    result, summary = {"tasks": []}, {"argv": ["--dataset_config", "configs/dtd.yaml", "--opts", "root_path",
                                               "<root_path>", "shots", str(SHOTS), "tasks", str(TASKS), "finetune",
                                               "False"], **meta, "tasks": []}
    for i, rec in enumerate(tasks):
        n_epochs = len(rec["losses"])
        train_in = rec["calls"][0][0]
        val_in = rec["calls"][1][0]
        epochs_val = [c for c in rec["calls"] if c[0].shape == val_in.shape and torch.equal(c[0], val_in)]
        test_calls = [c for c in rec["calls"] if c[0].shape == rec["test_features"].shape
                      and torch.equal(c[0], rec["test_features"])]
        tw = rec["text_weights"]
        # the val logits of epoch e use alpha after that epoch's update, i.e. the alpha seen by the next epoch's loss
        alpha_after = rec["alpha"][1:] + [rec["alpha_vec"].detach()]
        val_logits = [c[1] + alpha_after[e] * (val_in @ tw) for e, c in enumerate(epochs_val)]
        keep = [0, 1, 9, 10, 19, 20, n_epochs - 1]
        result["tasks"].append({
            "text_weights": tw, "train_features": train_in, "train_labels": rec["train_labels"],
            "val_features": val_in, "test_features": rec["test_features"], "test_labels": rec["test_labels"],
            "W0": rec["W0"], "b0": rec["b0"], "alpha0": rec["alpha0"],
            "train_logits_at": {e: rec["train_logits"][e] for e in keep},
            "alpha_per_epoch": torch.cat(rec["alpha"]),
            "W_final": rec["classifier"].weight.detach().clone(), "b_final": rec["classifier"].bias.detach().clone(),
            "alpha_final": rec["alpha_vec"].detach().clone(),
            "last_test_vision_logits": test_calls[-1][1],
        })
        summary["tasks"].append({
            "task": i + 1, "seed": i + 1,
            "train_impaths": tasks_draws[2 * i], "val_impaths": tasks_draws[2 * i + 1],
            "losses": rec["losses"], "lr_alpha": rec["lr_alpha"], "lr_w": rec["calculate_lr_w"],
            "init_alpha_mean": rec["calculate_init_alpha"],
            "val_pred_per_epoch": [v.argmax(1).tolist() for v in val_logits],
            "n_test_evaluations": len(test_calls), "acc_test": rec["acc_test"],
        })
    torch.save(result, out / "lpp.pt")
    (out / "lpp.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")


def main(official: Path, out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.golden.common import GOLDEN_CLIP, write_tiny_dtd

    work = Path(tempfile.mkdtemp(prefix="lpp_golden_"))
    repo = work / "LPpp"
    shutil.copytree(official, repo)
    subprocess.run(["patch", "-p1", "-i", str(HERE / "lpp_golden.patch")], cwd=repo, check=True)
    data_root = work / "data"
    write_tiny_dtd(data_root)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOLDEN_CLIP=str(GOLDEN_CLIP), CUDA_VISIBLE_DEVICES="")
    with open(out / "lpp_stdout.txt", "w") as log:
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(repo), str(data_root),
                        str(out)], env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
    shutil.rmtree(work)


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve() if len(sys.argv) > 2 else HERE)
