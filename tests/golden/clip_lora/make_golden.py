"""Regenerate the CLIP-LoRA golden files by running the official MaxZanella/CLIP-LoRA code.

Usage (from the repository root)::

    python tests/golden/clip_lora/make_golden.py /path/to/CLIP-LoRA [OUT_DIR]

It copies the checkout to a temporary folder, applies ``clip_lora_golden.patch`` there (CPU, the tiny CLIP, no
random augmentation, fixed train order, workers 0), writes the tiny DTD (symlinked as ``DTD/``, the folder name
CLIP-LoRA's reader wants) and runs the official ``main.main()`` in a fresh subprocess per variant, with the
official command-line arguments. Around the official code this script only *records*: it wraps
``main.build_dataset``, ``lora.apply_lora``, ``lora.cls_acc`` and ``lora.F.cross_entropy`` (calling the originals
unchanged) and registers optimiser-step hooks. Two interventions, both written down in the README:

- after ``apply_lora`` the LoRA state is saved with the official ``save_lora`` (the init files) or, for the later
  variants, loaded from those files with the official ``load_lora``;
- variant ``main``: ``--dropout_rate 0.25`` (the default code path of ``LinearLoRA.forward``) with every LoRA
  dropout's ``p`` set to 0 after ``apply_lora``, so that no dropout is drawn (deterministic).

Not a test module (no ``test_`` prefix); the test suite never imports it.
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

COMMIT = "358f0d7361f59e66c0b2d0b672a3dafb143a759b"
SHOTS, N_ITERS, BATCH = 4, 2, 24  # 500 x K iterations in the paper; here 2 x 4 = 8 iterations, full-batch (6 x 4)
LR = 2e-3
VARIANTS = {
    # name: (dropout_rate argument, force LoRA dropout p to 0 after apply_lora, record dropout masks)
    "main": (0.25, True, False),
    "dropout0": (0.0, False, False),
    "dropout_step1": (0.25, False, True),
}


def official_argv(variant: str, data_root: Path, save_root: Path) -> list[str]:
    dropout = VARIANTS[variant][0]
    return ["main.py", "--root_path", str(data_root), "--dataset", "dtd", "--seed", "1",
            "--shots", str(SHOTS), "--n_iters", str(N_ITERS), "--batch_size", str(BATCH),
            "--backbone", "ViT-B/16", "--lr", str(LR), "--position", "all", "--encoder", "both",
            "--params", "q", "k", "v", "--r", "2", "--alpha", "1", "--dropout_rate", str(dropout),
            "--save_path", str(save_root), "--filename", "lora_weights"]


def worker(variant: str, repo: Path, data_root: Path, out: Path, init_root: Path) -> None:
    """Run the official main() once, recording; writes ``out/<variant>.pt`` and the trained LoRA files."""
    import numpy as np
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    sys.path.insert(0, str(repo))
    os.chdir(repo)
    import lora as L  # noqa: E402  (official)
    import main as M  # noqa: E402  (official)
    from loralib import layers as LL  # noqa: E402
    from loralib.utils import load_lora, save_lora  # noqa: E402

    _, force_p0, record_masks = VARIANTS[variant]
    rec: dict = {"cls_acc": [], "losses": [], "lrs": [], "masks": {}}
    state: dict = {"step": 0}

    build = M.build_dataset

    def build_dataset(*a, **k):
        ds = build(*a, **k)
        rec["dataset"] = ds
        return ds

    M.build_dataset = build_dataset

    apply = L.apply_lora

    def apply_lora(args, clip_model):
        layers = apply(args, clip_model)
        if force_p0:
            for m in clip_model.modules():
                if isinstance(m, LL.LinearLoRA):
                    m.dropout.p = 0.0
        trained_root = args.save_path
        args.save_path = str(init_root)
        if (init_root / "vitb16").exists():
            load_lora(args, layers)  # official loader: start from the recorded init
        else:
            save_lora(args, layers)  # official format
        args.save_path = trained_root
        rec["model"] = clip_model
        if record_masks:
            for name, m in clip_model.named_modules():
                if isinstance(m, torch.nn.Dropout):
                    def hook(mod, inp, outp, name=name):
                        if mod.training and state["step"] == 0:
                            assert name not in rec["masks"]
                            rec["masks"][name] = outp.detach() != 0
                    m.register_forward_hook(hook)
        return layers

    L.apply_lora = apply_lora

    cls_acc = L.cls_acc

    def rec_cls_acc(output, target, topk=1):
        acc = cls_acc(output, target, topk)
        rec["cls_acc"].append((output.detach().clone(), target.detach().clone(), acc))
        return acc

    L.cls_acc = rec_cls_acc

    F = L.F

    class FProxy:
        def __getattr__(self, name):
            return getattr(F, name)

        @staticmethod
        def cross_entropy(*a, **k):
            loss = F.cross_entropy(*a, **k)
            rec["losses"].append(loss.item())
            return loss

    L.F = FProxy()

    def lora_named(model):
        return [(n, p) for n, p in model.named_parameters() if "lora_" in n]

    def pre_hook(opt, args, kwargs):
        rec["lrs"].append(opt.param_groups[0]["lr"])
        if state["step"] == 0:
            rec["grads_step1"] = {n: p.grad.detach().clone() for n, p in lora_named(rec["model"])}

    def post_hook(opt, args, kwargs):
        if state["step"] == 0:
            rec["params_step1"] = {n: p.detach().clone() for n, p in lora_named(rec["model"])}
        state["step"] += 1

    register_optimizer_step_pre_hook(pre_hook)
    register_optimizer_step_post_hook(post_hook)

    trained_root = out / "trained" if variant == "main" else Path(tempfile.mkdtemp())
    sys.argv = official_argv(variant, data_root, trained_root)
    M.main()

    ds = rec["dataset"]
    calls = rec["cls_acc"]
    total = SHOTS * N_ITERS
    assert len(calls) == 1 + total + 1, len(calls)  # zero-shot, each iteration, final test evaluation
    zs, train, final = calls[0], calls[1:1 + total], calls[-1]
    assert len(torch.load(next(trained_root.rglob("lora_weights.pt")))["weights"]) == 8  # official save_lora ran
    result = {
        "zero_shot_test_logits": zs[0], "test_labels": zs[1],
        "train_logits": torch.stack([c[0] for c in train]), "train_labels": train[0][1],
        "final_test_cosine": final[0],
        "grads_step1": rec["grads_step1"], "params_step1": rec["params_step1"],
        "trained_lora_state": {n: p.detach().clone() for n, p in rec["model"].named_parameters() if "lora_" in n},
    }
    if variant == "dropout0":  # step-1 gradients equal main's (B = 0 at step 1)
        del result["grads_step1"], result["params_step1"]
    if variant == "dropout_step1":  # only step 1 is reproducible (later masks are not recorded)
        result = {"train_logits_step1": result["train_logits"][0], "train_labels": result["train_labels"],
                  "grads_step1": result["grads_step1"], "params_step1": result["params_step1"]}
    if record_masks:
        result["dropout_masks_step1"] = {n: torch.from_numpy(np.packbits(m.numpy().reshape(-1)))
                                        for n, m in rec["masks"].items()}
        result["dropout_mask_shapes"] = {n: list(m.shape) for n, m in rec["masks"].items()}
    torch.save(result, out / f"{variant}.pt")
    meta = {
        "variant": variant, "argv": official_argv(variant, Path("<root_path>"), Path("<save_path>"))[1:],
        "classnames": ds.classnames, "template": ds.template,
        "train_impaths": [os.path.relpath(d.impath, data_root) for d in ds.train_x],
        "train_labels": [d.label for d in ds.train_x],
        "val_impaths_drawn_unused": [os.path.relpath(d.impath, data_root) for d in ds.val],
        "test_impaths": [os.path.relpath(d.impath, data_root) for d in ds.test],
        "test_labels": [d.label for d in ds.test],
        "losses": rec["losses"], "lrs_used_per_step": rec["lrs"],
        "train_acc_per_step": [c[2] for c in train],
        "zero_shot_test_acc": zs[2], "final_test_acc": final[2],
        "lora_param_names": list(rec["grads_step1"].keys()),
    }
    (out / f"{variant}.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def main(official: Path, out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.golden.common import GOLDEN_CLIP, write_tiny_dtd

    work = Path(tempfile.mkdtemp(prefix="clip_lora_golden_"))
    repo = work / "CLIP-LoRA"
    shutil.copytree(official, repo)
    subprocess.run(["patch", "-p1", "-i", str(HERE / "clip_lora_golden.patch")], cwd=repo, check=True)
    data_root = work / "data"
    write_tiny_dtd(data_root)
    (data_root / "DTD").symlink_to("dtd")
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("init", "trained"):
        shutil.rmtree(out / sub, ignore_errors=True)
    env = dict(os.environ, GOLDEN_CLIP=str(GOLDEN_CLIP), CUDA_VISIBLE_DEVICES="")
    for variant in VARIANTS:  # "main" first: it writes init/ that the others load
        with open(out / f"{variant}_stdout.txt", "w") as log:
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", variant, str(repo),
                            str(data_root), str(out), str(out / "init")], env=env, check=True,
                           stdout=log, stderr=subprocess.STDOUT)
    shutil.rmtree(work)


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        worker(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]), Path(sys.argv[6]))
    else:
        main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve() if len(sys.argv) > 2 else HERE)
