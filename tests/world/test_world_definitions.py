"""The embedded datasets' structure (roles, vocabularies, split sizes) and their committed cards."""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.paths import cards_dir
from harness.world import WORLD_DATASETS
from harness.world.cards import card_dict
from harness.world.datasets import DOMAIN_SHIFTS, SOURCE, TARGETS, check_definitions
from harness.world.tiny_clip import make_tokenizer, write_bpe_file
from harness.world.vocab import check_tokenization, class_words


def test_definitions_are_consistent() -> None:
    check_definitions()
    assert len({d.name for d in WORLD_DATASETS}) == len(WORLD_DATASETS)


def test_source_plays_imagenets_role() -> None:
    assert SOURCE.role == "source" and len(SOURCE.classes) >= 100
    assert SOURCE.per_class[0] >= 16  # a 16-shot pool per class


def test_targets_have_their_own_vocabularies() -> None:
    assert len(TARGETS) >= 4
    vocabularies = [frozenset(d.classnames) for d in (SOURCE, *TARGETS)]
    for i, first in enumerate(vocabularies):
        for second in vocabularies[i + 1 :]:
            assert not first & second
    for target in TARGETS:
        assert target.role == "target" and 6 <= len(target.classes) <= 20
        assert target.per_class[0] >= 16 and target.per_class[2] >= 10


def test_domain_shifts_are_test_only_renderings_of_the_source() -> None:
    assert len(DOMAIN_SHIFTS) >= 3
    for shift in DOMAIN_SHIFTS:
        assert shift.role == "domain_shift" and shift.test_only
        assert shift.classnames == SOURCE.classnames
    assert len({tuple(sorted(s.styles.items())) for s in DOMAIN_SHIFTS}) >= 3


def test_class_names_are_sorted_like_a_folder_listing() -> None:
    for dataset in WORLD_DATASETS:
        assert dataset.classnames == sorted(dataset.classnames)


def test_split_sizes_stay_small_enough_for_cpu_runs() -> None:
    images = sum(len(d.classes) * sum(d.per_class) for d in WORLD_DATASETS)
    assert 5_000 <= images <= 15_000


def test_committed_cards_match_the_definitions() -> None:
    for dataset in WORLD_DATASETS:
        path = cards_dir() / f"{dataset.name}.yaml"
        committed = yaml.safe_load(path.read_text())
        assert committed == card_dict(dataset, committed["split_sha256"]), f"{path} is stale: run harness.world.cards"
        assert committed["embedded"] is True and committed["reader"] == "split_json"


def test_class_words_tokenise_without_hiding_other_class_words(tmp_path: Path) -> None:
    tokenizer = make_tokenizer(write_bpe_file(tmp_path / "bpe.txt.gz"))
    assert tokenizer.vocab_size == 8192
    assert check_tokenization(tokenizer.encode) == []
    assert check_tokenization(tokenizer.encode, ["checkered", "red"]) != []  # the trap is detected
    assert all(len(tokenizer.encode(word)) <= 3 for word in class_words())
