"""Regenerate the linear-probe golden files by running CoOp's official ``lpclip/`` code.

Usage (from the repository root)::

    python tests/golden/linear_probe/make_golden.py /path/to/CoOp /path/to/Dassl.pytorch [OUT_DIR]

It copies the CoOp checkout to a temporary folder, applies ``lpclip_golden.patch`` there, writes the tiny DTD
dataset, runs the official ``feat_extractor.py`` once per split (as ``feat_extractor.sh`` does, in subprocesses)
and the official ``linear_probe.py`` (as ``linear_probe.sh`` does: ``--num_step 8 --num_run 3``) in this process
through ``runpy``. The only thing added around the official code is a recording subclass of sklearn's
``LogisticRegression`` (it calls the parent's ``fit``/``predict`` unchanged and notes C, inputs, outputs and the
fitted weights), put in place of ``sklearn.linear_model.LogisticRegression`` before the script imports it.
Not a test module (no ``test_`` prefix); the test suite never imports it.
"""

from __future__ import annotations

import io
import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import sklearn
import sklearn.linear_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
from tests.golden.common import GOLDEN_CLIP, write_tiny_dtd  # noqa: E402

FITS: list[dict] = []


class RecordingLogisticRegression(sklearn.linear_model.LogisticRegression):
    """sklearn's LogisticRegression, unchanged, that remembers each fit and each predict."""

    def fit(self, X, y, sample_weight=None):
        out = super().fit(X, y, sample_weight)
        self._rec = {"C": float(self.C), "X": np.asarray(X), "y": np.asarray(y), "predicts": []}
        FITS.append(self._rec)
        return out

    def predict(self, X):
        pred = super().predict(X)
        self._rec["predicts"].append({"X": np.asarray(X), "pred": np.asarray(pred),
                                      "decision": np.asarray(self.decision_function(X)),
                                      "coef": self.coef_.copy(), "intercept": self.intercept_.copy(),
                                      "n_iter": int(np.max(self.n_iter_))})
        return pred


def _row_index(rows: np.ndarray, table: np.ndarray) -> list[int]:
    """Index in ``table`` of each row of ``rows`` (features are distinct, so exact match is unique)."""
    out = []
    for row in rows:
        hits = np.where((table == row).all(axis=1))[0]
        assert len(hits) == 1, hits
        out.append(int(hits[0]))
    return out


def main(coop: Path, dassl: Path, out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="lpclip_golden_"))
    repo = work / "CoOp"
    shutil.copytree(coop, repo)
    subprocess.run(["patch", "-p1", "-i", str(HERE / "lpclip_golden.patch")], cwd=repo, check=True)
    data_root = work / "data"
    write_tiny_dtd(data_root)
    env = dict(os.environ, GOLDEN_CLIP=str(GOLDEN_CLIP), PYTHONPATH=f"{dassl}{os.pathsep}{repo}",
               CUDA_VISIBLE_DEVICES="")
    lpclip = repo / "lpclip"
    for split in ("train", "val", "test"):  # feat_extractor.sh, DATASET=dtd, SEED=1
        subprocess.run([sys.executable, "feat_extractor.py", "--split", split, "--root", str(data_root),
                        "--seed", "1", "--dataset-config-file", "../configs/datasets/dtd.yaml",
                        "--config-file", "../configs/trainers/CoOp/rn50_val.yaml",
                        "--output-dir", "./clip_feat/", "--eval-only"],
                       cwd=lpclip, env=env, check=True, stdout=subprocess.DEVNULL)
    feat_dir = lpclip / "clip_feat" / "DescribableTextures"
    feats = {s: np.load(feat_dir / f"{s}.npz") for s in ("train", "val", "test")}

    # linear_probe.sh: --dataset DescribableTextures --feature_dir clip_feat --num_step 8 --num_run 3
    sklearn.linear_model.LogisticRegression = RecordingLogisticRegression
    argv, cwd = sys.argv, os.getcwd()
    sys.argv = ["linear_probe.py", "--dataset", "DescribableTextures", "--feature_dir", "clip_feat",
                "--num_step", "8", "--num_run", "3"]
    os.chdir(lpclip)
    log = io.StringIO()
    try:
        with redirect_stdout(log), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # sklearn>=1.8 deprecates penalty="l2"
            runpy.run_path("linear_probe.py", run_name="__main__")
    finally:
        sys.argv = argv
        os.chdir(cwd)
    report = (lpclip / "report" / "clip_feat_s8r3.txt").read_text()
    details = (lpclip / "report" / "clip_feat_s8r3_details.txt").read_text()

    # Write the features as the official extractor wrote them, and the split order.
    out.mkdir(parents=True, exist_ok=True)
    (out / "features").mkdir(exist_ok=True)
    for s in ("train", "val", "test"):
        shutil.copy(feat_dir / f"{s}.npz", out / "features" / f"{s}.npz")
    split_json = json.loads((data_root / "dtd" / "split_zhou_DescribableTextures.json").read_text())
    for s in ("train", "val", "test"):
        assert [int(x[1]) for x in split_json[s]] == feats[s]["label_list"].tolist()

    train_x, val_x, test_x = (feats[s]["feature_list"] for s in ("train", "val", "test"))
    val_y, test_y = feats["val"]["label_list"], feats["test"]["label_list"]
    # 7 grid fits + 2 fits per step x 8 steps per (K, seed); K in [1, 2] (patched), seeds 1..3, in that order.
    per_run = 7 + 2 * 8
    assert len(FITS) == 2 * 3 * per_run, len(FITS)
    runs = []
    for r, (shot, seed) in enumerate([(k, s) for k in (1, 2) for s in (1, 2, 3)]):
        fits = FITS[r * per_run:(r + 1) * per_run]
        train_idx = _row_index(fits[0]["X"], train_x)
        val_pred0 = fits[0]["predicts"][0]
        val_idx = _row_index(val_pred0["X"], val_x)
        fewshot_val_y = val_y[val_idx]
        fit_rows = []
        for f in fits:
            vp = f["predicts"][0]
            assert np.array_equal(vp["X"], val_x[val_idx]) and np.array_equal(f["X"], train_x[train_idx])
            fit_rows.append({"C": f["C"], "val_pred": vp["pred"].tolist(),
                             "val_acc": float(np.sum(vp["pred"] == fewshot_val_y) / len(fewshot_val_y)),
                             "n_iter": vp["n_iter"]})
        grid, steps = fit_rows[:7], []
        for step in range(8):
            left, right = fits[7 + 2 * step], fits[7 + 2 * step + 1]
            kept = [f for f in (left, right) if len(f["predicts"]) == 2]
            assert len(kept) == 1
            tp = kept[0]["predicts"][1]
            assert np.array_equal(tp["X"], test_x)
            steps.append({"C_left": left["C"], "C_right": right["C"],
                          "val_acc_left": fit_rows[7 + 2 * step]["val_acc"],
                          "val_acc_right": fit_rows[7 + 2 * step + 1]["val_acc"],
                          "kept": "right" if kept[0] is right else "left", "C_kept": kept[0]["C"],
                          "test_pred": tp["pred"].tolist(),
                          "test_acc": float(100 * np.sum(tp["pred"] == test_y) / len(test_y))})
        final = [f for f in fits[-2:] if len(f["predicts"]) == 2][0]["predicts"][1]
        runs.append({"num_shot": shot, "seed": seed, "val_num_shot": {1: 1, 2: 2}[shot],
                     "train_idx": train_idx, "val_idx": val_idx,
                     "grid": grid, "grid_peak_C": grid[int(np.argmax([g["val_acc"] for g in grid]))]["C"],
                     "steps": steps, "selected_C": steps[-1]["C_kept"],
                     "final": {"coef": final["coef"].tolist(), "intercept": final["intercept"].tolist(),
                               "n_iter": final["n_iter"], "test_logits": final["decision"].tolist(),
                               "test_acc": steps[-1]["test_acc"]}})
    result = {
        "official": {"repo": "https://github.com/KaiyangZhou/CoOp",
                     "commit": "ff61507c790454bce7c5052c3ac39e60772f1f89",
                     "dassl_commit": "c61a1b570ac6333bd50fb5ae06aea59002fb20bb"},
        "versions": {"sklearn": sklearn.__version__, "numpy": np.__version__},
        "dataset": "DescribableTextures (tests.golden.common.write_tiny_dtd, seed 0)",
        "impaths": {s: [x[0] for x in split_json[s]] for s in ("train", "val", "test")},
        "labels": {s: feats[s]["label_list"].tolist() for s in ("train", "val", "test")},
        "search_grid": [1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6],
        "num_step": 8, "num_run": 3, "shots": [1, 2],
        "runs": runs,
        "report": report, "details": details,
    }
    (out / "probe.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (out / "linear_probe_stdout.txt").write_text(log.getvalue(), encoding="utf-8")
    shutil.rmtree(work)
    print(report)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve(),
         Path(sys.argv[3]).resolve() if len(sys.argv) > 3 else HERE)
