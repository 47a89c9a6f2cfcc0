"""Planning per protocol, with dataset name lists only (no data, no models)."""

from __future__ import annotations

import json

import pytest

from harness.errors import HarnessError
from harness.protocols import DatasetRoles, EvalSpec, MethodChoice, RunContext, RunSpec
from harness.protocols.plans import plan_base2new, plan_cross_dataset, plan_domain_generalization, plan_few_shot
from harness.registries import PROTOCOLS, load_builtins

ROLES = DatasetRoles("imagenet", ("caltech101", "dtd"), ("imagenetv2", "imagenet_a"))
COCOOP = MethodChoice("cocoop", "cocoop", trainable=True)
ZEROSHOT = MethodChoice("zeroshot", "zeroshot", trainable=False)
CTX = RunContext()


def test_protocols_are_registered() -> None:
    load_builtins()
    assert {"base2new", "cross_dataset", "domain_generalization", "few_shot"} <= set(PROTOCOLS.names())
    assert PROTOCOLS.get("base2new").plan is plan_base2new


def test_base2new_trains_on_base_and_tests_base_and_new_per_dataset_and_seed() -> None:
    specs = plan_base2new(ROLES, [1, 2, 3], COCOOP, None, CTX)
    assert len(specs) == 3 * 3
    assert [(s.train_dataset, s.seed) for s in specs[:4]] == [
        ("imagenet", 1), ("imagenet", 2), ("imagenet", 3), ("caltech101", 1)]
    spec = specs[0]
    assert spec.train_subsample == "base" and spec.shots == 16 and spec.trainable
    assert spec.evals == (EvalSpec("imagenet", "base", "test", 16), EvalSpec("imagenet", "new", "test", 16))
    assert spec.run_key == "cocoop-embedded-imagenet-base-16shots-seed1"
    assert len({s.run_key for s in specs}) == len(specs)
    # Domain-shift sets are test-only: never part of base-to-new.
    assert not any(s.train_dataset in ROLES.domain_shift for s in specs)


def test_zero_shot_collapses_seeds_to_one_run_without_training() -> None:
    specs = plan_base2new(ROLES, [1, 2, 3], ZEROSHOT, None, CTX)
    assert len(specs) == 3
    assert all(s.seed is None and s.shots is None and not s.trainable for s in specs)
    assert specs[0].run_key == "zeroshot-embedded-imagenet-base2new-allshots-noseed"
    assert specs[0].evals[1] == EvalSpec("imagenet", "new", "test", None)


def test_cross_dataset_one_source_model_per_seed_tested_on_all_targets() -> None:
    specs = plan_cross_dataset(ROLES, [1, 2], COCOOP, None, CTX)
    assert [s.seed for s in specs] == [1, 2]
    spec = specs[0]
    assert spec.train_dataset == "imagenet" and spec.train_subsample == "all" and spec.shots == 16
    assert [e.dataset for e in spec.evals] == ["imagenet", "caltech101", "dtd"]
    assert all(e.subsample == "all" and e.shots is None for e in spec.evals)


def test_domain_generalization_tests_the_shifted_sets() -> None:
    specs = plan_domain_generalization(ROLES, [1], COCOOP, None, CTX)
    assert [e.dataset for e in specs[0].evals] == ["imagenet", "imagenetv2", "imagenet_a"]
    assert len(plan_domain_generalization(ROLES, [1, 2, 3], ZEROSHOT, None, CTX)) == 1


def test_transfer_needs_a_source_and_targets() -> None:
    with pytest.raises(HarnessError, match="source"):
        plan_cross_dataset(DatasetRoles(None, ("dtd",)), [1], COCOOP, None, CTX)
    with pytest.raises(HarnessError, match="no target"):
        plan_domain_generalization(DatasetRoles("imagenet", ("dtd",)), [1], COCOOP, None, CTX)


def test_few_shot_grid_is_datasets_by_shots_by_seeds() -> None:
    specs = plan_few_shot(ROLES, [1, 2, 3], COCOOP, None, CTX)
    assert len(specs) == 3 * 5 * 3
    assert sorted({s.shots for s in specs}) == [1, 2, 4, 8, 16]
    assert len({s.run_key for s in specs}) == len(specs)
    assert all(s.evals == (EvalSpec(s.train_dataset, "all", "test", None),) for s in specs)
    only_4 = plan_few_shot(ROLES, [1], COCOOP, 4, CTX)
    assert [s.shots for s in only_4] == [4, 4, 4]
    assert len(plan_few_shot(ROLES, [1, 2, 3], ZEROSHOT, None, CTX)) == 3


def test_shots_and_seeds_are_checked() -> None:
    with pytest.raises(HarnessError, match="shots"):
        plan_base2new(ROLES, [1], COCOOP, 0, CTX)
    with pytest.raises(HarnessError, match="no seeds"):
        plan_base2new(ROLES, [], COCOOP, None, CTX)
    with pytest.raises(HarnessError, match="repeat"):
        plan_base2new(ROLES, [1, 1], COCOOP, None, CTX)


def test_seed_zero_is_a_seed() -> None:
    specs = plan_base2new(DatasetRoles("dtd"), [0], COCOOP, None, CTX)
    assert specs[0].seed == 0 and specs[0].run_key.endswith("seed0")


def test_overrides_model_and_precision_change_the_key() -> None:
    base = plan_base2new(DatasetRoles("dtd"), [1], COCOOP, None, CTX)[0].run_key
    with_set = plan_base2new(DatasetRoles("dtd"), [1], COCOOP, None,
                             RunContext(overrides=(("max_epoch", 1),)))[0].run_key
    other_model = plan_base2new(DatasetRoles("dtd"), [1], COCOOP, None,
                                RunContext(model="ViT-B-16", pretrained="openai"))[0].run_key
    fp32 = plan_base2new(DatasetRoles("dtd"), [1], COCOOP, None, RunContext(precision="fp32"))[0].run_key
    assert len({base, with_set, other_model, fp32}) == 4
    assert other_model.startswith("cocoop-ViT-B-16.openai-dtd")
    assert with_set.startswith(base + "-v")


def test_spec_round_trips_through_json() -> None:
    spec = plan_base2new(ROLES, [1], COCOOP, None, RunContext(overrides=(("max_epoch", 1),)))[0]
    again = RunSpec.from_dict(json.loads(spec.to_json()))
    assert again == spec
