"""Drive the official MaPLe / IVLP / PromptSRC trainers on the golden tiny CLIP and tiny DTD (not a test).

Used by ``tests/golden/{maple,ivlp,promptsrc}/make_golden.py``; never imported by the test suite. It does not
re-implement any method: it copies an official checkout, applies the golden folder's ``official.patch``, writes
the tiny dataset, copies Dassl and applies ``dassl.patch``, and runs the official code (``train.py``'s ``setup_cfg`` and Dassl's ``build_trainer``,
``load_model``, ``train``, ``model_inference``) in a subprocess whose ``sys.path`` holds only the official
checkout and Dassl. The only in-process instrumentation is a wrapper around the trainer's ``forward_backward``
that records the loss summary it returns and the optimiser's learning rate (read-only).

Usage (from a golden folder's make_golden.py):
    python tests/golden/<method>/make_golden.py OFFICIAL_CHECKOUT DASSL_CHECKOUT [OUT_DIR]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent
REPO_ROOT = GOLDEN_DIR.parent.parent

# Per-method settings: official config file, registered model name, trainer, and the config overrides that make
# the official run CPU/fp32/tiny/deterministic (written in each README).
METHODS = {
    "maple": {
        "trainer": "MaPLe",
        "config": "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
        "model_name": "MultiModalPromptLearner",
        "opts": ["TRAINER.MAPLE.PREC", "fp32", "TRAINER.MAPLE.PROMPT_DEPTH", "3", "TRAINER.MAPLE.N_CTX", "2"],
    },
    "ivlp": {
        "trainer": "IVLP",
        "config": "configs/trainers/IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml",
        "model_name": "VLPromptLearner",
        "opts": ["TRAINER.IVLP.PREC", "fp32", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "3",
                 "TRAINER.IVLP.PROMPT_DEPTH_TEXT", "3", "TRAINER.IVLP.N_CTX_VISION", "2",
                 "TRAINER.IVLP.N_CTX_TEXT", "2"],
    },
    "promptsrc": {
        "trainer": "PromptSRC",
        "config": "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
        "model_name": "VLPromptLearner",
        "opts": ["TRAINER.PROMPTSRC.PREC", "fp32", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "3",
                 "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "3", "TRAINER.PROMPTSRC.N_CTX_VISION", "4",
                 "TRAINER.PROMPTSRC.N_CTX_TEXT", "4"],
    },
}

# Shared overrides: CPU, 32 px, no random augmentation, the whole 12-image train split (3 base classes x 4 shots)
# in one batch, no workers, seed 1.
COMMON_OPTS = [
    "USE_CUDA", "False",
    "INPUT.SIZE", "(32, 32)",
    "INPUT.TRANSFORMS", "['normalize']",
    "DATALOADER.TRAIN_X.BATCH_SIZE", "12",
    "DATALOADER.TEST.BATCH_SIZE", "100",
    "DATALOADER.NUM_WORKERS", "0",
    "DATASET.NUM_SHOTS", "4",
]


def keep_key(method: str, key: str) -> bool:
    """Which state_dict entries the golden checkpoints keep (the learnable ones, the prompt learner's buffers and
    logit_scale); the frozen tower weights equal golden_clip.pt and are left out to keep the files small."""
    if key.startswith("prompt_learner.ZS_image_encoder."):
        return False
    return key.startswith("prompt_learner.") or "VPT" in key or key == "logit_scale"


def make(method: str, checkout: Path, dassl: Path, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    patches = GOLDEN_DIR / method  # official.patch and dassl.patch live in the golden folder
    with tempfile.TemporaryDirectory(prefix=f"golden_{method}_") as tmp:
        tmp = Path(tmp)
        work = tmp / "official"
        shutil.copytree(checkout, work, ignore=shutil.ignore_patterns(".git", "__pycache__"))
        subprocess.run(["patch", "-p1", "-d", str(work), "-i", str(patches / "official.patch")], check=True)
        dassl_work = tmp / "Dassl.pytorch"
        shutil.copytree(dassl, dassl_work, ignore=shutil.ignore_patterns(".git", "__pycache__"))
        subprocess.run(["patch", "-p1", "-d", str(dassl_work), "-i", str(patches / "dassl.patch")], check=True)
        dassl = dassl_work
        sys.path.insert(0, str(REPO_ROOT))
        from tests.golden.common import GOLDEN_CLIP, write_tiny_dtd

        data_root = tmp / "data"
        write_tiny_dtd(data_root)
        job = {"method": method, "work": str(work), "dassl": str(dassl), "data_root": str(data_root),
               "clip": str(GOLDEN_CLIP), "out_dir": str(out_dir), "tmp": str(tmp)}
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONPATH"] = f"{work}{os.pathsep}{dassl}"
        env.setdefault("OMP_NUM_THREADS", "1")
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)],
                       cwd=work, env=env, check=True)


# ----------------------------------------------------------------------------------------------------------------
# Worker (runs inside the official checkout; sys.path: the checkout and Dassl only)


def _worker(job: dict) -> None:
    import types

    sys.path = [p for p in sys.path if Path(p or ".").resolve() != GOLDEN_DIR]
    sys.path[:0] = [job["work"], job["dassl"]]
    # Dassl's dataset registry imports the optional `wilds` package at import time; the DTD path never uses it.
    wilds = types.ModuleType("wilds")
    wilds.get_dataset = None
    sys.modules.setdefault("wilds", wilds)

    import argparse

    import torch
    import train as official_train  # the official train.py (registers datasets and trainers)
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed

    spec = METHODS[job["method"]]
    out_dir = Path(job["out_dir"])
    tmp = Path(job["tmp"])
    work = Path(job["work"])
    name = spec["model_name"]

    def make_cfg(subsample: str, output_dir: Path):
        args = argparse.Namespace(
            root=job["data_root"], output_dir=str(output_dir), resume="", seed=1, source_domains=None,
            target_domains=None, transforms=None, trainer=spec["trainer"], backbone="", head="",
            config_file=str(work / spec["config"]), dataset_config_file=str(work / "configs/datasets/dtd.yaml"),
            eval_only=False, model_dir="", load_epoch=None, no_train=False,
            opts=COMMON_OPTS + spec["opts"] + ["MODEL.BACKBONE.NAME", job["clip"],
                                                "DATASET.SUBSAMPLE_CLASSES", subsample],
        )
        return official_train.setup_cfg(args)

    def build(subsample: str, output_dir: Path):
        cfg = make_cfg(subsample, output_dir)
        set_random_seed(cfg.SEED)  # as train.py main() does
        return cfg, build_trainer(cfg)

    def shrink(src: Path, dst: Path) -> list[str]:
        ckpt = torch.load(src, map_location="cpu", weights_only=False)
        full = list(ckpt["state_dict"].keys())
        ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if keep_key(job["method"], k)}
        ckpt["optimizer"] = None
        ckpt["scheduler"] = None
        dst.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, dst)
        return full

    def trainable(trainer) -> list[str]:
        return [n for n, p in trainer.model.named_parameters() if p.requires_grad]

    record: dict = {"method": job["method"], "trainer": spec["trainer"], "config_file": spec["config"]}

    # 1. The init state: the official model right after building with seed 1, saved by Dassl's save_model.
    cfg, trainer = build("base", tmp / "out_init")
    record["config"] = {k: str(v).replace(job["data_root"], "<data_root>") for k, v in _flatten(cfg).items()
                        if k.split(".")[0] in ("OPTIM", "TRAINER", "INPUT", "DATALOADER", "DATASET", "SEED")
                        and (not k.startswith("TRAINER.") or k.split(".")[1] in (spec["trainer"].upper(), "NAME"))}
    record["trainable_parameters"] = {n: list(p.shape) for n, p in trainer.model.named_parameters()
                                      if p.requires_grad}
    record["train_split"] = [{"impath": _rel(it.impath), "label": it.label, "classname": it.classname}
                             for it in trainer.dm.dataset.train_x]
    trainer.save_model(-1, str(tmp / "init_full"))  # writes <name>/model.pth.tar-0
    record["checkpoint_keys_full"] = shrink(tmp / "init_full" / name / "model.pth.tar-0",
                                            out_dir / "init" / name / "model.pth.tar-0")
    del trainer

    # 2. Training from exactly that init state (loaded with the official load_model), official schedule.
    cfg, trainer = build("base", tmp / "out_train")
    trainer.load_model(str(out_dir / "init"), epoch=0)
    steps: list[dict] = []
    original = trainer.forward_backward

    def recording_forward_backward(batch):
        lr = trainer.get_current_lr()
        summary = original(batch)
        steps.append({"epoch": trainer.epoch, "batch": trainer.batch_idx, "lr": lr,
                      "n_images": int(batch["label"].shape[0]), **summary})
        return summary

    trainer.forward_backward = recording_forward_backward
    epoch_states: list[dict] = []
    if hasattr(trainer, "state_dict_weighting"):  # PromptSRC's GPA: record what the official code weights, read-only
        weighting = trainer.state_dict_weighting
        learnable = set(trainable(trainer))

        def recording_weighting(main_dict, weightage, prompt_only=False):
            epoch_states.append({"weight": float(weightage),
                                 "state": {k: v.detach().clone() for k, v in main_dict.items() if k in learnable}})
            return weighting(main_dict, weightage, prompt_only)

        trainer.state_dict_weighting = recording_weighting
        record["gpa_weights"] = [float(w) for w in trainer.gauss]
        fixed = trainer.model.prompt_learner.fixed_embeddings
        record["teacher_text_features_base"] = fixed.float().tolist()  # unnormalised template-mean, base classes
    trainer.train()
    max_epoch = cfg.OPTIM.MAX_EPOCH
    record["train_steps"] = steps
    record["max_epoch"] = max_epoch
    full_trained = tmp / "out_train" / name / f"model.pth.tar-{max_epoch}"
    shrink(full_trained, out_dir / "trained" / name / f"model.pth.tar-{max_epoch}")
    # Entries left out of the golden checkpoints: how far the official run moved them (PromptSRC's GPA averages the
    # whole state_dict, frozen weights included, so they come back as sum_e w_e * W, not bit-exactly W).
    state_init = torch.load(tmp / "init_full" / name / "model.pth.tar-0", map_location="cpu",
                            weights_only=False)["state_dict"]
    state_trained = torch.load(full_trained, map_location="cpu", weights_only=False)["state_dict"]
    record["left_out_entries_max_abs_change_init_to_trained"] = max(
        float((state_trained[k].float() - state_init[k].float()).abs().max())
        for k in state_init if not keep_key(job["method"], k))
    if epoch_states:
        record["gpa_epoch_weights_used"] = [e["weight"] for e in epoch_states]
        torch.save({"note": "learnable state at the end of each epoch (0-based index), before GPA, as passed to "
                            "the official state_dict_weighting; weights in logits.json gpa_epoch_weights_used",
                    "states": [e["state"] for e in epoch_states]},
                   out_dir / "trained" / "epoch_states.pt")
    del trainer

    # 3. Logits of both checkpoints on the test split of base, new and all classes (official eval-only path:
    #    build, load_model, then the test loader through model_inference).
    record["logits"] = {}
    for tag, epoch in (("init", 0), ("trained", max_epoch)):
        for subsample in ("base", "new", "all"):
            cfg, trainer = build(subsample, tmp / f"out_eval_{tag}_{subsample}")
            trainer.load_model(str(out_dir / tag), epoch=epoch)
            trainer.set_model_mode("eval")
            logits, labels, paths = [], [], []
            with torch.no_grad():
                for batch in trainer.test_loader:
                    image, label = trainer.parse_batch_test(batch)
                    logits.append(trainer.model_inference(image).float())
                    labels += label.tolist()
                    paths += [_rel(p) for p in batch["impath"]]
            logits = torch.cat(logits)
            record["logits"][f"{tag}/{subsample}"] = {
                "classnames": list(trainer.dm.dataset.classnames),
                "impaths": paths, "labels": labels, "logits": logits.tolist(),
                "accuracy": float((logits.argmax(1) == torch.tensor(labels)).float().mean() * 100),
            }
            del trainer
    # The same trained model evaluated from the official (unshrunk) checkpoint, base classes.
    cfg, trainer = build("base", tmp / "out_eval_full")
    full_ckpt = torch.load(full_trained, map_location="cpu", weights_only=False)
    full_ckpt["optimizer"] = full_ckpt["scheduler"] = None  # Dassl's load_checkpoint (weights_only) refuses the
    (tmp / "full_eval" / name).mkdir(parents=True)        # pickled scheduler object; the state_dict is complete
    torch.save(full_ckpt, tmp / "full_eval" / name / f"model.pth.tar-{max_epoch}")
    trainer.load_model(str(tmp / "full_eval"), epoch=max_epoch)
    trainer.set_model_mode("eval")
    with torch.no_grad():
        full = torch.cat([trainer.model_inference(trainer.parse_batch_test(b)[0]).float() for b in trainer.test_loader])
    record["trained_base_max_abs_logit_diff_full_vs_golden_checkpoint"] = float(
        (full - torch.tensor(record["logits"]["trained/base"]["logits"])).abs().max())
    del trainer
    (out_dir / "logits.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _flatten(cfg, prefix=""):
    out = {}
    for k, v in cfg.items():
        if hasattr(v, "items"):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _rel(path: str) -> str:
    """An image path relative to the dataset's images folder (e.g. 'banded/banded_0000.png')."""
    parts = Path(path).parts
    return "/".join(parts[parts.index("images") + 1:])


def compare(a: Path, b: Path) -> dict:
    """Largest absolute differences between two regenerations (run-to-run tolerance, written in the README)."""
    import torch

    ra = json.loads((Path(a) / "logits.json").read_text())
    rb = json.loads((Path(b) / "logits.json").read_text())
    out = {"logits": max(float((torch.tensor(ra["logits"][k]["logits"]) - torch.tensor(rb["logits"][k]["logits"]))
                               .abs().max()) for k in ra["logits"]),
           "train_losses": max(abs(x[k] - y[k]) for x, y in zip(ra["train_steps"], rb["train_steps"])
                               for k in x if k.startswith("loss"))}
    for ckpt in sorted(Path(a).glob("*/*/model.pth.tar-*")):
        sa = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
        sb = torch.load(Path(b) / ckpt.relative_to(a), map_location="cpu", weights_only=False)["state_dict"]
        assert sa.keys() == sb.keys(), ckpt
        out[str(ckpt.relative_to(a))] = max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)
    states = Path(a) / "trained" / "epoch_states.pt"
    if states.exists():
        ea = torch.load(states, map_location="cpu", weights_only=False)["states"]
        eb = torch.load(Path(b) / "trained" / "epoch_states.pt", map_location="cpu", weights_only=False)["states"]
        out["trained/epoch_states.pt"] = max(float((x[k] - y[k]).abs().max()) for x, y in zip(ea, eb) for k in x)
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(json.loads(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "--compare":
        print(json.dumps(compare(Path(sys.argv[2]), Path(sys.argv[3])), indent=1))
    else:
        sys.exit(__doc__)
