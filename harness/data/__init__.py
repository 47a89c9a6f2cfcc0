"""Datasets: cards, readers of the official layouts, few-shot sampling, the base/new split, transforms.

Importing this package registers every card in ``datasets/*.yaml`` in ``harness.registries.DATASETS``
under its ``name`` (the registered object is the ``DatasetCard``).
"""

from __future__ import annotations

from harness.data.cards import DatasetCard, card_paths, load_card, read_card_file
from harness.data.fewshot import sample_few_shot, sample_train_val
from harness.data.image_dataset import ImageDataset, load_image
from harness.data.subsample import split_base_new
from harness.data.task import TaskData, prepare_task_data
from harness.data.transforms import PixelPipeline, build_pipeline, build_transform
from harness.data.types import DatasetSplits, Datum
from harness.registries import DATASETS


def _register_cards() -> None:
    for path in card_paths():
        card = read_card_file(path)
        if card.name not in DATASETS:
            DATASETS.register(card.name, card)


_register_cards()

__all__ = [
    "DatasetCard",
    "DatasetSplits",
    "Datum",
    "ImageDataset",
    "PixelPipeline",
    "TaskData",
    "build_pipeline",
    "build_transform",
    "load_card",
    "load_image",
    "prepare_task_data",
    "sample_few_shot",
    "sample_train_val",
    "split_base_new",
]
