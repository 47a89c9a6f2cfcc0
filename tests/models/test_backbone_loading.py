"""Loading CLIP backbones from real file formats: OpenAI state dict and TorchScript, safetensors, open_clip
state dicts with a config name, backbone folders; zero-shot logits checked against open_clip itself."""

from __future__ import annotations

import hashlib
import json
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from clip_files import (
    OPENAI_LAYOUT_CONFIG,
    OPENAI_MEAN,
    make_openai_clip,
    openai_state_dict,
    save_openai_state_dict,
    save_openai_torchscript,
    write_backbone_folder,
)
from safetensors.torch import save_file

from harness.errors import HarnessError
from harness.methods import config_for
from harness.methods.zeroshot import ZeroshotCLIP
from harness.models import Preprocessing, load_backbone
from harness.registries import BACKBONES

CLASSNAMES = ["banded", "blotchy", "bubbly_pattern", "chequered"]
TEMPLATE = "{} texture."


@pytest.fixture(scope="module")
def openai_clip() -> open_clip.model.CLIP:
    model = make_openai_clip(seed=3)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(20.0))
    return model


@pytest.fixture(scope="module")
def openai_files(openai_clip, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("openai")
    return {
        "state_dict": save_openai_state_dict(openai_clip, folder / "ViT-T-8-state.pt"),
        "torchscript": save_openai_torchscript(openai_clip, folder / "ViT-T-8.pt"),
    }


def reference_logits(model: open_clip.model.CLIP, images: torch.Tensor) -> torch.Tensor:
    """Zero-shot logits computed directly with open_clip's own encoders."""
    tokenizer = open_clip.tokenizer.SimpleTokenizer()
    prompts = [TEMPLATE.format(name.replace("_", " ")) for name in CLASSNAMES]
    with torch.no_grad():
        image = F.normalize(model.encode_image(images), dim=-1)
        text = F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
        return model.logit_scale.exp() * image @ text.T


def zeroshot_logits(backbone, images: torch.Tensor) -> torch.Tensor:
    method = ZeroshotCLIP(backbone, config_for("zeroshot"))
    method.set_classes(CLASSNAMES, TEMPLATE)
    with torch.no_grad():
        method.prepare_eval()
        return method(backbone.encode_images(images))


@pytest.mark.parametrize("form", ["state_dict", "torchscript"])
def test_openai_file_zero_shot_logits_match_open_clip(form, openai_clip, openai_files):
    backbone = load_backbone(str(openai_files[form]), device="cpu", precision="fp32")
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits = zeroshot_logits(backbone, images)
    torch.testing.assert_close(logits, reference_logits(openai_clip, images), rtol=0, atol=1e-5)
    assert backbone.preprocessing.image_size == 32  # inferred from the positional embedding, not 224
    assert backbone.preprocessing.mean == OPENAI_MEAN
    assert backbone.weights_sha256 == hashlib.sha256(openai_files[form].read_bytes()).hexdigest()
    assert backbone.name == openai_files[form].name
    assert backbone.dtype == torch.float32 and backbone.precision == "fp32"


def test_openai_architecture_is_inferred_with_quick_gelu(openai_files):
    backbone = load_backbone(str(openai_files["torchscript"]), device="cpu")
    model = backbone.model
    assert model.visual.transformer.resblocks[0].mlp.gelu.__class__.__name__ == "QuickGELU"
    assert backbone.context_length == 77 and backbone.text_width == 64 and backbone.embed_dim == 32
    assert len(model.visual.transformer.resblocks) == OPENAI_LAYOUT_CONFIG["vision_cfg"]["layers"]


def test_fp16_is_the_official_partial_conversion(openai_clip, openai_files):
    backbone = load_backbone(str(openai_files["torchscript"]), device="cpu", precision="fp16")
    model = backbone.model
    assert backbone.dtype == torch.float16
    assert model.visual.conv1.weight.dtype == torch.float16
    assert model.text_projection.dtype == torch.float16 and model.visual.proj.dtype == torch.float16
    assert model.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.float16
    # Embeddings, LayerNorms and the temperature stay fp32, as after OpenAI's convert_weights.
    assert model.token_embedding.weight.dtype == torch.float32
    assert model.ln_final.weight.dtype == torch.float32 and model.logit_scale.dtype == torch.float32
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    logits = zeroshot_logits(backbone, images)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, reference_logits(openai_clip, images), rtol=0, atol=0.1)


@pytest.mark.parametrize("precision", ["bf16", "amp"])
def test_low_precision_modes_stay_close(precision, openai_clip, openai_files):
    backbone = load_backbone(str(openai_files["state_dict"]), device="cpu", precision=precision)
    assert backbone.precision == precision
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(zeroshot_logits(backbone, images), reference_logits(openai_clip, images),
                               rtol=0, atol=1.0)


def test_auto_precision_is_fp32_on_cpu(openai_files):
    assert load_backbone(str(openai_files["state_dict"]), device="cpu", precision="auto").precision == "fp32"


def test_safetensors_file_in_openai_layout(openai_clip, tmp_path):
    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in openai_state_dict(openai_clip).items()}, str(path))
    backbone = load_backbone(str(path), device="cpu")
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(zeroshot_logits(backbone, images), reference_logits(openai_clip, images),
                               rtol=0, atol=1e-5)


@pytest.fixture()
def tiny_config_name(tmp_path) -> str:
    """An open_clip config registered under a unique name (open_clip discovers configs by file stem)."""
    name = f"Tiny-Test-{tmp_path.name}"
    config = {**OPENAI_LAYOUT_CONFIG, "vision_cfg": {**OPENAI_LAYOUT_CONFIG["vision_cfg"], "image_size": 40}}
    config["vision_cfg"]["patch_size"] = 8
    (tmp_path / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / f"{name}.json")
    return name


def test_open_clip_state_dict_with_model_config(tiny_config_name, tmp_path):
    model = open_clip.create_model(tiny_config_name)
    path = tmp_path / "open_clip_model.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    backbone = load_backbone(str(path), device="cpu", model_config=tiny_config_name)
    assert backbone.preprocessing.image_size == 40
    same = load_backbone(tiny_config_name, pretrained=str(path), device="cpu")
    images = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        expected = F.normalize(model.encode_image(images), dim=-1)
    torch.testing.assert_close(backbone.encode_images(images), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(same.encode_images(images), expected, rtol=0, atol=1e-6)


def test_backbone_folder(tmp_path):
    folder = write_backbone_folder(tmp_path / "tiny_clip", image_size=48)
    backbone = load_backbone(str(folder), device="cpu")
    assert backbone.preprocessing.image_size == 48
    assert backbone.preprocessing.mean == (0.5, 0.5, 0.5)
    assert backbone.context_length == 24
    # The small BPE vocabulary: start/end of text are its two highest ids.
    assert (backbone.sot_token_id, backbone.eot_token_id) == (1012, 1013)
    assert backbone.weights_sha256 == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    features = backbone.encode_prompts(["a red circle.", "a blue square."])
    assert features.shape == (2, 32)
    assert torch.allclose(features.norm(dim=-1), torch.ones(2))


def test_embedded_source_uses_the_asset_folder(tmp_path, monkeypatch):
    from harness.models import sources

    monkeypatch.setattr(sources, "EMBEDDED_DIR", write_backbone_folder(tmp_path / "embedded_clip"))
    backbone = load_backbone("embedded", device="cpu")
    assert backbone.name == "embedded" and backbone.preprocessing.image_size == 32


def test_registered_sources():
    assert {"embedded", "folder", "openai-file", "open_clip-file", "open_clip"} <= set(BACKBONES.names())


def test_cuda_request_without_cuda_is_an_error(openai_files, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(HarnessError, match="CUDA is not available"):
        load_backbone(str(openai_files["state_dict"]), device="cuda")


def test_open_clip_name_and_tag_through_open_clip(tiny_config_name, tmp_path, monkeypatch):
    """The hub route with a tag whose weights are already local (open_clip's ``file`` entry, as a warm cache)."""
    config = json.loads((tmp_path / f"{tiny_config_name}.json").read_text())
    config.pop("quick_gelu")  # the bare config uses GELU; the tag says QuickGELU, and the tag wins
    (tmp_path / f"{tiny_config_name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / f"{tiny_config_name}.json")
    reference = open_clip.model.CLIP(**config, quick_gelu=True).eval()
    weights = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items() if "attn_mask" not in k}, str(weights))
    tag = {"file": str(weights), "quick_gelu": True, "mean": (0.5, 0.5, 0.5), "std": (0.2, 0.2, 0.2),
           "interpolation": "bicubic", "resize_mode": "shortest"}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, tiny_config_name, {"tiny": tag})
    backbone = load_backbone(tiny_config_name, pretrained="tiny", device="cpu")
    assert backbone.name == f"{tiny_config_name}:tiny"
    assert backbone.preprocessing == Preprocessing(40, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), "bicubic")
    assert backbone.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    images = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        expected = F.normalize(reference.encode_image(images), dim=-1)
    torch.testing.assert_close(backbone.encode_images(images), expected, rtol=0, atol=1e-6)


def test_openai_resnet_layout_is_inferred(tmp_path):
    """RN50-style checkpoints: stage depths, width and resolution (attention-pool grid x 32) from the shapes."""
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": (1, 2, 1, 1), "width": 8, "head_width": 64},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1},
        "quick_gelu": True,
    }
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**config).eval()
    path = tmp_path / "RN-T.pt"
    torch.save({k: v for k, v in model.state_dict().items() if "attn_mask" not in k}, path)
    backbone = load_backbone(str(path), device="cpu")
    assert backbone.preprocessing.image_size == 64
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = F.normalize(model.encode_image(images), dim=-1)
    torch.testing.assert_close(backbone.encode_images(images), expected, rtol=0, atol=1e-6)
