"""Regenerate the Tip-Adapter / Tip-Adapter-F golden files by running the official code (gaopengcuhk/Tip-Adapter).

Usage::

    python tests/golden/tip_adapter/make_golden.py OFFICIAL_CHECKOUT [--out DIR] [--workdir DIR] [--commit SHA]

OFFICIAL_CHECKOUT is the root of a gaopengcuhk/Tip-Adapter checkout (``main.py``, ``utils.py``, ``clip/``,
``datasets/``, ``configs/``). It is copied to a scratch folder, ``official.patch`` (beside this script) is applied
to the copy with ``patch -p1``, the tiny DTD-layout dataset of ``tests/golden/common.py`` is written, a yaml
config is written (the official ``configs/dtd.yaml`` with the golden overrides, see README), and the official
``main.main()`` runs in this process, twice:

1. ``golden_train_tfm: identity``: the cache and Tip-Adapter-F views are CLIP's test transform, so the cache and
   the Tip-Adapter-F run are deterministic; this run gives every file except ``augmented_views.pt``;
2. ``golden_train_tfm: rrc`` (the official RandomResizedCrop(scale 0.5-1) + flip, at 32 px), 3 augment epochs:
   only the raw features of each augmented pass and the keys the official ``build_cache_model`` made from them
   are kept (``augmented_views.pt``), to check the mean-of-raw-then-normalise arithmetic.

Nothing here re-implements the method: the features, the cache, the logits, the search, the optimiser and the
training loop are the official code's. This script only wraps the official functions to record their inputs and
outputs (``cls_acc`` sees every logit matrix the official code scores; ``search_hp`` gives the selected pair; a
recording subclass of ``torch.optim.AdamW`` sees the learning rate and the weights of every step) and calls the
official ``run_tip_adapter`` once more with the test features in the place of the val features, so that the
initial (beta, alpha) logits on test and a search on test (what the official ``main_imagenet.py`` does) are
recorded as well.

Not a test (no ``test_`` prefix) and never imported by the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from tests.golden.common import GOLDEN_CLIP, write_tiny_dtd  # noqa: E402

OFFICIAL_REPO = "https://github.com/gaopengcuhk/Tip-Adapter"
SHOTS = 4
TRAIN_EPOCH = 5
AUG_VIEWS_EPOCHS = 3

# configs/dtd.yaml at d0e2d6f, then the golden overrides (README explains each)
OFFICIAL_DTD_YAML = {
    "load_cache": False, "load_pre_feat": False, "search_hp": True,
    "search_scale": [13, 13], "search_step": [200, 20], "init_beta": 1, "init_alpha": 2,
    "dataset": "dtd", "shots": 16, "backbone": "RN50", "lr": 0.001, "augment_epoch": 10, "train_epoch": 20,
}


def golden_cfg(data_root: Path, mode: str) -> dict:
    cfg = dict(OFFICIAL_DTD_YAML)
    cfg.update({
        "root_path": str(data_root), "backbone": str(GOLDEN_CLIP), "shots": SHOTS,
        "augment_epoch": 1 if mode == "identity" else AUG_VIEWS_EPOCHS,
        "train_epoch": TRAIN_EPOCH if mode == "identity" else 1,
        "golden_train_tfm": mode,
    })
    return cfg


def prepare_official(checkout: Path, workdir: Path) -> Path:
    dest = workdir / "official"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(checkout, dest, ignore=shutil.ignore_patterns(".git", "caches", "__pycache__"))
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


def tolist(t):
    return t.detach().float().cpu().tolist()


class Recorder:
    """Wraps the official functions (by name, in the official modules) to record what they compute."""

    def __init__(self, official: Path):
        sys.path.insert(0, str(official))
        os.chdir(official)
        import torch

        torch.set_num_threads(1)
        import main as official_main  # the official main.py (imports clip, datasets, utils)
        import utils as official_utils

        self.torch = torch
        self.main = official_main
        self.utils = official_utils
        self.orig = {name: getattr(official_main, name) for name in (
            "build_cache_model", "pre_load_features", "clip_classifier", "run_tip_adapter", "run_tip_adapter_F",
            "search_hp", "cls_acc")}
        self.orig_utils_cls_acc = official_utils.cls_acc
        self.orig_clip_load = official_main.clip.load
        self.orig_adamw = torch.optim.AdamW
        self.orig_F = official_main.F

    def run(self, cfg: dict, cfg_path: Path) -> dict:
        torch, main, utils = self.torch, self.main, self.utils
        import yaml

        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        shutil.rmtree("caches", ignore_errors=True)
        rec: dict = {"phase": None, "calls": [], "searches": [], "encode_image": [], "steps": [], "losses": []}
        state = {"in_search": False, "grid": None}
        orig = self.orig

        def phase(name, fn):
            def wrapped(*args, **kwargs):
                previous, rec["phase"] = rec["phase"], name
                try:
                    return fn(*args, **kwargs)
                finally:
                    rec["phase"] = previous
            return wrapped

        def clip_load(*args, **kwargs):
            model, preprocess = self.orig_clip_load(*args, **kwargs)
            encode = model.encode_image

            def encode_image(images):
                out = encode(images)
                rec["encode_image"].append((rec["phase"], out.detach().clone()))
                return out

            model.encode_image = encode_image
            rec["clip_dtype"] = str(model.dtype)
            rec["logit_scale_exp_unused"] = float(model.logit_scale.detach().exp())
            return model, preprocess

        def cls_acc(output, target, topk=1):
            acc = orig["cls_acc"](output, target, topk)
            rec["calls"].append({"phase": rec["phase"], "logits": output.detach().clone(),
                                 "target": target.detach().clone(), "acc": acc})
            return acc

        def utils_cls_acc(output, target, topk=1):
            acc = self.orig_utils_cls_acc(output, target, topk)
            if state["in_search"]:
                state["grid"].append(acc)
            return acc

        def search_hp(cfg_, cache_keys, cache_values, features, labels, clip_weights, adapter=None):
            state["in_search"], state["grid"] = True, []
            try:
                best_beta, best_alpha = orig["search_hp"](cfg_, cache_keys, cache_values, features, labels,
                                                          clip_weights, adapter=adapter)
            finally:
                state["in_search"] = False
            rec["searches"].append({"phase": rec["phase"], "features": features, "labels": labels,
                                    "adapter_weight": None if adapter is None else adapter.weight.detach().clone(),
                                    "best_beta": best_beta, "best_alpha": best_alpha, "grid": state["grid"]})
            return best_beta, best_alpha

        def build_cache_model(*args, **kwargs):
            keys, values = phase("cache", orig["build_cache_model"])(*args, **kwargs)
            rec["cache_keys"], rec["cache_values"] = keys.detach().clone(), values.detach().clone()
            return keys, values

        def pre_load_features(cfg_, split, clip_model, loader):
            feats, labels = phase("features_" + split, orig["pre_load_features"])(cfg_, split, clip_model, loader)
            rec[split] = {"features": feats, "labels": labels,
                          "impaths": [item.impath for item in loader.dataset.data_source]}
            return feats, labels

        def clip_classifier(classnames, template, clip_model):
            weights = orig["clip_classifier"](classnames, template, clip_model)
            rec["classnames"], rec["template"], rec["clip_weights"] = list(classnames), list(template), weights
            return weights

        def run_tip_adapter(cfg_, keys, values, val_f, val_l, test_f, test_l, clip_weights):
            phase("tip", orig["run_tip_adapter"])(cfg_, keys, values, val_f, val_l, test_f, test_l, clip_weights)
            # not in the official main.py: the same official function with test in the place of val, for the
            # initial-(beta, alpha) test logits and a search on test (what the official main_imagenet.py does)
            phase("tip_test_as_val", orig["run_tip_adapter"])(cfg_, keys, values, test_f, test_l, test_f, test_l,
                                                               clip_weights)

        def run_tip_adapter_F(cfg_, *args):
            rec["train_impaths"] = [item.impath for item in args[-1].dataset.data_source]
            rec["train_labels"] = [item.label for item in args[-1].dataset.data_source]
            return phase("tip_F", orig["run_tip_adapter_F"])(cfg_, *args)

        class RecordingAdamW(self.orig_adamw):
            def __init__(self, params, *a, **k):
                params = list(params)
                super().__init__(params, *a, **k)
                rec["optimizer"] = {"class": "torch.optim.AdamW", "defaults": {
                    k_: (list(v) if isinstance(v, tuple) else v) for k_, v in self.defaults.items()
                    if isinstance(v, (int, float, bool, tuple, type(None)))}}
                rec["adapter_init"] = params[0].detach().clone()

            def step(self, *a, **k):
                lr = self.param_groups[0]["lr"]
                out = super().step(*a, **k)
                rec["steps"].append({"lr": lr, "weight": self.param_groups[0]["params"][0].detach().clone()})
                return out

        class FProxy:
            def __getattr__(self, name):
                return getattr(self_orig_F, name)

            @staticmethod
            def cross_entropy(logits, target, *a, **k):
                loss = self_orig_F.cross_entropy(logits, target, *a, **k)
                rec["losses"].append(float(loss))
                return loss

        self_orig_F = self.orig_F
        patches = [(main, n, v) for n, v in {
            "build_cache_model": build_cache_model, "pre_load_features": pre_load_features,
            "clip_classifier": clip_classifier, "run_tip_adapter": run_tip_adapter,
            "run_tip_adapter_F": run_tip_adapter_F, "search_hp": search_hp, "cls_acc": cls_acc,
            "F": FProxy()}.items()]
        patches += [(utils, "cls_acc", utils_cls_acc), (main.clip, "load", clip_load),
                    (torch.optim, "AdamW", RecordingAdamW)]
        saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
        for mod, name, value in patches:
            setattr(mod, name, value)
        stdout = io.StringIO()
        argv = sys.argv
        sys.argv = ["main.py", "--config", str(cfg_path)]
        try:
            with contextlib.redirect_stdout(stdout):
                main.main()
        finally:
            sys.argv = argv
            for mod, name, value in saved:
                setattr(mod, name, value)
        rec["stdout"] = stdout.getvalue()
        rec["cache_dir"] = Path("caches") / cfg["dataset"]
        return rec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="root of a gaopengcuhk/Tip-Adapter checkout")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--commit", default=None, help="the checkout's commit, when it is not a git checkout")
    args = parser.parse_args()

    checkout = args.checkout.resolve()
    out = args.out.resolve()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="tip_golden_"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    commit = args.commit or git_commit(checkout)
    official = prepare_official(checkout, workdir)
    data_root = workdir / "data"
    if data_root.exists():
        shutil.rmtree(data_root)
    write_tiny_dtd(data_root)
    recorder = Recorder(official)
    torch = recorder.torch

    def rel(p: str) -> str:
        return Path(p).resolve().relative_to((data_root / "dtd" / "images").resolve()).as_posix()

    # ---- run 1: deterministic views
    cfg = golden_cfg(data_root, "identity")
    rec = recorder.run(cfg, workdir / "golden_identity.yaml")
    cache_dir = official / rec["cache_dir"]
    for sub in ("init", "features", "trained"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for name in (f"keys_{SHOTS}shots.pt", f"values_{SHOTS}shots.pt"):
        shutil.copy(cache_dir / name, out / "init" / name)
    for name in ("val_f.pt", "val_l.pt", "test_f.pt", "test_l.pt"):
        shutil.copy(cache_dir / name, out / "features" / name)
    shutil.copy(cache_dir / f"best_F_{SHOTS}shots.pt", out / "trained" / f"best_F_{SHOTS}shots.pt")
    best_F = torch.load(cache_dir / f"best_F_{SHOTS}shots.pt", map_location="cpu", weights_only=False).detach()

    calls = rec["calls"]
    tip = [c for c in calls if c["phase"] == "tip"]
    tip_t = [c for c in calls if c["phase"] == "tip_test_as_val"]
    tipf = [c for c in calls if c["phase"] == "tip_F"]
    assert len(tip) == 4 and len(tip_t) == 4 and len(tipf) == 2 * TRAIN_EPOCH + 1, (len(tip), len(tip_t), len(tipf))
    searches = {s["phase"]: s for s in rec["searches"]}
    assert set(searches) == {"tip", "tip_test_as_val", "tip_F"}

    def split_of(features) -> str:
        for split in ("val", "test"):
            if features is rec[split]["features"]:
                return split
        return "?"

    def search_record(s: dict, beta_list_len: int = 200, alpha_list_len: int = 20) -> dict:
        n = len(s["labels"])
        correct = [round(acc * n / 100) for acc in s["grid"]]
        return {"selected_on_split": split_of(s["features"]), "best_beta": s["best_beta"],
                "best_alpha": s["best_alpha"], "n_images": n,
                "grid_correct_counts_beta_major": [correct[i * alpha_list_len:(i + 1) * alpha_list_len]
                                                   for i in range(beta_list_len)],
                "grid_note": "official cls_acc of every (beta, alpha) in search order (beta outer, alpha inner), "
                             "as numbers of correct images out of n_images"}

    steps, losses = rec["steps"], rec["losses"]
    assert len(steps) == TRAIN_EPOCH and len(losses) == TRAIN_EPOCH
    epoch_weights = [s["weight"] for s in steps]
    matches = [e for e, w in enumerate(epoch_weights) if torch.equal(w, best_F)]
    torch.save({"adapter_weight_init": rec["adapter_init"], "adapter_weight_after_epoch": torch.stack(epoch_weights),
                "note": "adapter.weight (NK x D) = cache_keys.t() at init; one optimiser step per epoch "
                        "(the whole 4-shot train split is one batch)"},
               out / "trained" / "adapter_per_epoch.pt")
    zs_val, tip_val_init, zs_test, tip_test_best = tip
    _, tip_test_init, _, tip_test_searched_on_test = tip_t
    per_epoch = []
    for e in range(TRAIN_EPOCH):
        train_call, test_call = tipf[2 * e], tipf[2 * e + 1]
        per_epoch.append({"epoch": e, "lr_used": steps[e]["lr"], "train_loss": losses[e],
                          "train_logits": tolist(train_call["logits"]), "train_acc": train_call["acc"],
                          "test_logits_init_beta_alpha": tolist(test_call["logits"]),
                          "test_acc_init_beta_alpha": test_call["acc"]})
    final_f = tipf[-1]
    result = {
        "official_repo": OFFICIAL_REPO, "official_commit": commit,
        "config": {k: v for k, v in cfg.items() if k not in ("root_path", "backbone")} | {
            "backbone": "tests/golden/golden_clip.pt", "root_path": "<tiny DTD root>"},
        "clip_dtype": rec["clip_dtype"], "logit_scale_used": 100.0,
        "classnames": rec["classnames"], "template": rec["template"],
        "clip_weights_D_by_C": tolist(rec["clip_weights"]),
        "train": {"impaths": [rel(p) for p in rec["train_impaths"]], "labels": rec["train_labels"],
                  "note": "the 4-shot draw (random.seed(1), random.sample per label in label order), in cache order"},
        "val": {"impaths": [rel(p) for p in rec["val"]["impaths"]], "labels": rec["val"]["labels"].tolist()},
        "test": {"impaths": [rel(p) for p in rec["test"]["impaths"]], "labels": rec["test"]["labels"].tolist()},
        "tip_adapter": {
            "init_beta": cfg["init_beta"], "init_alpha": cfg["init_alpha"],
            "val_zero_shot_logits": tolist(zs_val["logits"]), "val_zero_shot_acc": zs_val["acc"],
            "val_tip_logits_init": tolist(tip_val_init["logits"]), "val_tip_acc_init": tip_val_init["acc"],
            "test_zero_shot_logits": tolist(zs_test["logits"]), "test_zero_shot_acc": zs_test["acc"],
            "test_tip_logits_init": tolist(tip_test_init["logits"]), "test_tip_acc_init": tip_test_init["acc"],
            "search_official": search_record(searches["tip"]),
            "test_tip_logits_at_searched": tolist(tip_test_best["logits"]),
            "test_tip_acc_at_searched": tip_test_best["acc"],
            "search_on_test_not_in_main_py": search_record(searches["tip_test_as_val"]) | {
                "note": "the official run_tip_adapter called with test features as its val arguments: the search "
                        "main_imagenet.py runs (on test); main.py (10 datasets) does NOT do this",
                "test_tip_logits_at_searched": tolist(tip_test_searched_on_test["logits"])},
        },
        "tip_adapter_F": {
            "optimizer": rec["optimizer"], "scheduler": "CosineAnnealingLR(T_max=train_epoch*len(loader)), "
            "stepped every iteration", "iterations_per_epoch": 1,
            "epochs": per_epoch,
            "best_test_epoch_selected_by_official": matches[0] if matches else None,
            "best_test_epoch_note": "official main.py keeps the epoch whose TEST accuracy at the init (beta, alpha) "
                                    "is strictly best (first wins); trained/best_F_4shots.pt is that epoch's weight",
            "search_after_F": search_record(searches["tip_F"]),
            "test_logits_final": tolist(final_f["logits"]), "test_acc_final": final_f["acc"],
            "printed_final_acc_is_max_of_best_test_epoch_acc_and_final": True,
        },
        "official_stdout_tail": [line for line in rec["stdout"].splitlines() if line.strip()][-40:],
    }
    (out / "golden.json").write_text(dumps(result) + "\n", encoding="utf-8")

    # ---- run 2: the official random augmentation (32 px), per-pass raw features and the keys made from them
    cfg2 = golden_cfg(data_root, "rrc")
    rec2 = recorder.run(cfg2, workdir / "golden_rrc.yaml")
    passes = [f for ph, f in rec2["encode_image"] if ph == "cache"]
    assert len(passes) == AUG_VIEWS_EPOCHS
    torch.save({"raw_features_per_pass": torch.stack(passes), "cache_keys": rec2["cache_keys"],
                "cache_values": rec2["cache_values"],
                "train_impaths": [rel(p) for p in rec2["train_impaths"]],
                "augment_epoch": AUG_VIEWS_EPOCHS,
                "note": "official build_cache_model with the official train transform (RandomResizedCrop(32, scale "
                        "0.5-1, bicubic) + flip): raw (unnormalised) encode_image output of each pass; cache_keys "
                        "(D x NK) is what the official code made of them"},
               out / "augmented_views.pt")
    print(f"wrote {out} (commit {commit}); best test epoch {matches}")


if __name__ == "__main__":
    main()
