"""evaluate(): metrics as Dassl computes them, and the loop over a real dataset layout (DTD fixture)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from data_fixtures import build_dtd_fixture
from PIL import Image

from harness.data import build_transform, prepare_task_data
from harness.engine import evaluate, split_features
from harness.engine.evaluate import accuracy, macro_f1
from harness.errors import DataError
from harness.methods import config_for
from harness.methods.zeroshot import ZeroshotCLIP


def test_macro_f1_hand_computed():
    labels = [0, 0, 0, 1, 1, 2]
    preds = [0, 0, 1, 1, 2, 3]  # class 3 is predicted but absent from the ground truth
    # F1 per present class: 0 -> 2*2/(2*2+0+1) = 0.8; 1 -> 2/(2+1+1) = 0.5; 2 -> 0 (no true positive).
    assert macro_f1(labels, preds) == pytest.approx(100 * (0.8 + 0.5 + 0.0) / 3)
    # Had class 3 been averaged too (sklearn without labels=unique(y_true)), the result would be 32.5.
    assert macro_f1(labels, preds) != pytest.approx(32.5)
    assert accuracy(labels, preds) == pytest.approx(50.0)


def test_perfect_and_empty():
    assert macro_f1([1, 2, 2], [1, 2, 2]) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        macro_f1([], [])


@pytest.fixture(scope="module")
def dtd_task(tmp_path_factory):
    root = build_dtd_fixture(tmp_path_factory.mktemp("data"))
    return prepare_task_data("dtd", root)


def test_evaluate_on_dtd(tiny_backbone, dtd_task):
    method = ZeroshotCLIP(tiny_backbone, config_for("zeroshot"))
    method.set_classes(dtd_task.classnames, dtd_task.template, dtd_task.dataset)
    result = evaluate(method, tiny_backbone, dtd_task, batch_size=5)  # several batches, a ragged last one
    n = len(dtd_task.test)
    assert result.n_images == n == 12
    assert result.logits.shape == (n, 4) and result.logits.dtype == torch.float32
    assert result.impaths == [item.impath for item in dtd_task.test]
    assert result.labels == [item.label for item in dtd_task.test]
    assert result.preds == result.logits.argmax(1).tolist()
    assert result.accuracy == pytest.approx(100 * sum(p == t for p, t in zip(result.preds, result.labels)) / n)
    assert result.macro_f1 == pytest.approx(macro_f1(result.labels, result.preds))
    assert method.dataset == "dtd"  # set_classes tells the method which dataset it is evaluated on

    # The first image by hand: the backbone's test transform, its encoder, the method.
    transform = build_transform(tiny_backbone.preprocessing, train=False)
    image = Image.open(dtd_task.image_dir / dtd_task.test[0].impath).convert("RGB")
    with torch.no_grad():
        by_hand = method(tiny_backbone.encode_images(transform(image)[None]))
    torch.testing.assert_close(result.logits[:1], by_hand, rtol=1e-5, atol=1e-5)


def test_split_features_are_normalised(tiny_backbone, dtd_task):
    features, labels = split_features(tiny_backbone, dtd_task, "val", batch_size=3)
    assert features.shape == (len(dtd_task.val), tiny_backbone.embed_dim)
    assert torch.allclose(features.norm(dim=-1), torch.ones(len(features)), atol=1e-5)
    assert labels.tolist() == [item.label for item in dtd_task.val]


def test_empty_or_unknown_split_is_an_error(tiny_backbone, dtd_task):
    method = ZeroshotCLIP(tiny_backbone, config_for("zeroshot"))
    method.set_classes(dtd_task.classnames, dtd_task.template)
    empty = SimpleNamespace(dataset="imagenet_a", image_dir=dtd_task.image_dir, train=[], val=[], test=[])
    with pytest.raises(DataError, match="the val split has no images"):
        evaluate(method, tiny_backbone, empty, split="val")
    with pytest.raises(DataError, match="unknown split 'dev'"):
        evaluate(method, tiny_backbone, dtd_task, split="dev")


def test_loader_workers_give_the_same_features(tiny_backbone, dtd_task):
    """DataLoader worker processes (the official code uses 8) change nothing in the features or their order."""
    single, labels = split_features(tiny_backbone, dtd_task, "test", batch_size=5, num_workers=0, cache=False)
    workers, worker_labels = split_features(tiny_backbone, dtd_task, "test", batch_size=5, num_workers=2, cache=False)
    assert torch.equal(single, workers) and torch.equal(labels, worker_labels)
