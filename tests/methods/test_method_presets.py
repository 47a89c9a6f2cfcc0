"""Method presets: every file loads, says what it reproduces, and resolves to a valid MethodConfig."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.methods import for_shots, load_preset, preset_names, resolve_config

PUBLISHED = ("coop_fewshot", "coop_base2new", "cocoop", "zeroshot", "zeroshot_ensemble")


def test_published_presets_exist() -> None:
    assert set(PUBLISHED) <= set(preset_names())


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_resolves_and_documents_itself(name: str) -> None:
    preset = load_preset(name)
    assert {"title", "reproduces", "source"} <= set(preset["meta"])
    if name.endswith("_embedded"):
        assert preset["meta"].get("changes"), "an embedded variant must say what changed and why"
    config = resolve_config(name)
    assert config.method == preset["method"]


@pytest.mark.parametrize("name", [n for n in preset_names() if n.endswith("_embedded")])
def test_embedded_variants_name_every_key_they_change(name: str) -> None:
    import dataclasses

    published = dataclasses.asdict(resolve_config(name.removesuffix("_embedded")))
    embedded = dataclasses.asdict(resolve_config(name))
    changed = sorted(key for key in published if published[key] != embedded[key])
    assert changed, f"{name} changes nothing: it should not exist"
    changes = load_preset(name)["meta"]["changes"]
    assert [key for key in changed if key not in changes] == [], f"{name}: meta.changes must name every changed key"


def test_published_hyperparameters() -> None:
    fewshot = resolve_config("coop_fewshot")
    assert (fewshot.n_ctx, fewshot.ctx_init, fewshot.csc, fewshot.class_token_position) == (16, "", False, "end")
    assert [for_shots(fewshot, k, "dtd").max_epoch for k in (1, 2, 4, 8, 16)] == [50, 100, 100, 200, 200]
    assert [for_shots(fewshot, k, "imagenet").max_epoch for k in (1, 16)] == [50, 50]
    b2n = resolve_config("coop_base2new")
    assert (b2n.ctx_init, b2n.batch_size, b2n.max_epoch, for_shots(b2n, 16, "imagenet").max_epoch) == (
        "a photo of a", 32, 200, 50)
    cocoop = resolve_config("cocoop")
    assert (cocoop.method, cocoop.ctx_init, cocoop.batch_size, cocoop.max_epoch, cocoop.lr) == (
        "cocoop", "a photo of a", 1, 10, 0.002)
    for config in (fewshot, b2n, cocoop):
        assert (config.momentum, config.weight_decay, config.warmup_epoch, config.warmup_cons_lr) == (
            0.9, 5e-4, 1, 1e-5)
    assert len(resolve_config("zeroshot_ensemble").templates) == 7


def test_layers_override_and_are_checked() -> None:
    config = resolve_config("cocoop", ({"max_epoch": 3}, "run.yaml"), ({"lr": "0.01"}, "--set"))
    assert (config.max_epoch, config.lr) == (3, 0.01)
    assert resolve_config("coop").method == "coop"  # a plain method name starts from the defaults
    with pytest.raises(ConfigError, match="--set: unknown key 'meta'"):
        resolve_config("cocoop", ({"meta": {}}, "--set"))
    with pytest.raises(ConfigError, match="csc must be true or false"):
        resolve_config("coop_fewshot", ({"csc": "maybe"}, "--set"))
    with pytest.raises(ConfigError, match="neither a preset"):
        resolve_config("cocop")
