"""``--draws``: few-shot draws per seed planned purely, sampled reproducibly, draw 0 exactly the official one."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from harness.data import Datum, sample_train_val
from harness.data.fewshot import draw_rng, fewshot_index_path
from harness.engine.runner import training_dir
from harness.errors import HarnessError
from harness.protocols import DatasetRoles, MethodChoice, RunContext
from harness.protocols.plans import expand_draws, plan_base2new, plan_cross_dataset, plan_few_shot
from harness.protocols.spec import build_run_key

ROLES = DatasetRoles("imagenet", ("dtd",), ())
COOP = MethodChoice("coop", "coop_base2new", trainable=True)
ZEROSHOT = MethodChoice("zeroshot", "zeroshot", trainable=False)


def test_draw_zero_keeps_the_official_specs_and_keys() -> None:
    plan = plan_base2new(ROLES, [1, 2], COOP, None, RunContext())
    assert expand_draws(plan, 1, RunContext()) == plan
    expanded = expand_draws(plan, 3, RunContext())
    assert len(expanded) == 3 * len(plan)
    assert [s for s in expanded if s.draw == 0] == plan
    keys = [s.run_key for s in expanded if s.train_dataset == "dtd" and s.seed == 2]
    assert keys == ["coop-embedded-dtd-base-16shots-seed2", "coop-embedded-dtd-base-16shots-seed2-draw1",
                    "coop-embedded-dtd-base-16shots-seed2-draw2"]
    assert len({s.run_key for s in expanded}) == len(expanded)


def test_draw_keys_match_build_run_key_with_a_variant_suffix() -> None:
    context = RunContext(overrides=(("max_epoch", 2),))
    spec = expand_draws(plan_few_shot(ROLES, [1], COOP, 4, context), 2, context)[1]
    assert spec.draw == 1 and spec.run_key == build_run_key(COOP, context, "imagenet-all", 4, 1, draw=1)
    assert "-draw1-v" in spec.run_key


def test_training_free_runs_and_transfer_protocols() -> None:
    plan = plan_base2new(ROLES, [1, 2], ZEROSHOT, None, RunContext())
    assert expand_draws(plan, 4, RunContext()) == plan  # nothing is sampled: one run each
    with pytest.raises(HarnessError, match="--draws applies to few_shot, base2new, not to cross_dataset"):
        expand_draws(plan_cross_dataset(ROLES, [1], COOP, None, RunContext()), 2, RunContext())
    with pytest.raises(HarnessError, match="at least 1"):
        expand_draws(plan, 0, RunContext())


def test_each_draw_trains_in_its_own_folder_and_draw_zero_keeps_the_old_one(tmp_path: Path) -> None:
    spec = plan_base2new(ROLES, [1], COOP, None, RunContext())[0]
    assert training_dir(spec, tmp_path, "abc").name == "coop-embedded-imagenet-base-16shots-seed1-abc"
    assert training_dir(replace(spec, draw=2), tmp_path, "abc").name.endswith("-abc-draw2")


def items(count: int) -> list[Datum]:
    return [Datum(f"img{i}.jpg", i % 4, f"c{i % 4}") for i in range(count)]


def test_draw_zero_is_the_official_selection_and_other_draws_are_reproducible_and_different() -> None:
    train, val = items(80), items(40)
    official = sample_train_val(train, val, 4, seed=1)
    assert sample_train_val(train, val, 4, seed=1, draw=0) == official
    rng = random.Random(1)
    assert official[0][:4] == rng.sample([d for d in train if d.label == 0], 4)
    first, again = sample_train_val(train, val, 4, 1, draw=1), sample_train_val(train, val, 4, 1, draw=1)
    assert first == again and first[0] != official[0]
    assert sample_train_val(train, val, 4, 1, draw=2)[0] != first[0]
    assert sample_train_val(train, val, 4, 2, draw=1)[0] != first[0]  # seed and draw both matter
    assert draw_rng(3, 1).random() == random.Random("fewshot-seed3-draw1").random()


def test_index_path_names_the_draw_only_beyond_draw_zero(tmp_path: Path) -> None:
    assert fewshot_index_path("dtd", 16, 1, root=tmp_path).name == "shot_16-seed_1.json"
    assert fewshot_index_path("dtd", 16, 1, root=tmp_path, draw=2).name == "shot_16-seed_1-draw_2.json"
