"""Choosing the preset per method and protocol (pure), and planning from the real dataset cards."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.protocols.build import make_plan, preset_for
from harness.protocols.spec import RunContext

COOP = {"base2new": "coop_base2new", "cross_dataset": "coop_base2new", "few_shot": "coop_fewshot"}
PRESETS = ["cocoop", "cocoop_embedded", "coop_base2new", "coop_base2new_embedded", "coop_fewshot", "zeroshot"]


def test_preset_per_protocol_and_world() -> None:
    assert preset_for("coop", "base2new", False, PRESETS, COOP) == "coop_base2new"
    assert preset_for("coop", "cross_dataset", False, PRESETS, COOP) == "coop_base2new"
    assert preset_for("coop", "few_shot", False, PRESETS, COOP) == "coop_fewshot"
    assert preset_for("coop", "few_shot", True, PRESETS, COOP) == "coop_fewshot"  # no embedded variant: published
    assert preset_for("coop", "base2new", True, PRESETS, COOP) == "coop_base2new_embedded"
    assert preset_for("cocoop", "domain_generalization", True, PRESETS) == "cocoop_embedded"
    assert preset_for("zeroshot", "base2new", True, PRESETS) == "zeroshot"
    assert preset_for("coop_fewshot", "base2new", False, PRESETS) == "coop_fewshot"  # a preset name is kept


def test_real_plans_use_the_papers_datasets(tmp_path: Path) -> None:
    context = RunContext(data_root=str(tmp_path))
    base2new = make_plan("base2new", "cocoop", datasets=None, seeds=[1, 2, 3], shots=None, context=context)
    assert len(base2new) == 11 * 3
    assert [s.train_dataset for s in base2new[::3]] == [
        "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
        "sun397", "dtd", "eurosat", "ucf101"]
    assert base2new[0].preset == "cocoop" and base2new[0].data_root == str(tmp_path)
    dg = make_plan("domain_generalization", "coop", datasets=None, seeds=[1], shots=None, context=context)
    assert [e.dataset for e in dg[0].evals] == ["imagenet", "imagenetv2", "imagenet_sketch", "imagenet_a",
                                                "imagenet_r"]
    assert dg[0].preset == "coop_base2new"
    xd = make_plan("cross_dataset", "zeroshot", datasets=None, seeds=[1, 2, 3], shots=None, context=context)
    assert len(xd) == 1 and len(xd[0].evals) == 11 and not xd[0].trainable


def test_missing_data_root_is_an_error() -> None:
    with pytest.raises(HarnessError, match="--data-root /nonexistent/x: no such folder"):
        make_plan("base2new", "coop", datasets=None, seeds=[1], shots=None,
                  context=RunContext(data_root="/nonexistent/x"))
