"""The official MaPLe computation, written the way ``MP:trainers/maple.py`` and ``MP:clip/model.py`` compute it.

Reference side of the MaPLe benchmark pair (spec sections 3.2 and 4). It shares only the frozen open_clip
model with the harness, never the harness's prompt or hook code: its class prompts are CoOp's reference
buffers (``reference.ReferencePrompts``: the whole 77-token "a photo of a <class>." with the first ``n_ctx``
positions replaced by the context), and its towers are explicit loops over the blocks, as the official
``ResidualAttentionBlock_MaPLe`` does:

- text: ``prompts + positional embedding``; block ``i`` in ``1..J-1`` first replaces positions ``1..n_ctx``
  with ``compound_prompts_text[i-1]``; ``ln_final``, end-of-text row (``argmax`` of the tokens), projection;
- image: ``[CLS, patches] + positional embedding``, then ``proj(ctx)`` appended, ``ln_pre``; block ``i`` in
  ``1..J-1`` first replaces the last ``n_ctx`` tokens with ``compound_prompt_projections[i-1](
  compound_prompts_text[i-1])``; ``ln_post`` of the class token, projection;
- ``CustomCLIP.forward``: every class prompt is re-encoded on every batch, in training and at test time.

The learned tensors are copied from a harness MaPLe, so both sides compute with the same parameters.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from reference import ReferencePrompts
from torch import nn
from torch.utils.data import DataLoader

from harness.data import ImageDataset, build_pipeline
from harness.models.backbone import Backbone


def _expand(prompts: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
    return prompts.to(dtype).unsqueeze(0).expand(batch, -1, -1)


class ReferenceMaPLe(nn.Module):
    """Official MaPLe ``CustomCLIP`` (prompt learner, text encoder, prompted image encoder) over pixels."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        learner = method.prompt_learner
        self.backbone = [method.backbone]  # not a submodule: the CLIP is frozen and shared
        if not getattr(method.backbone.model.transformer, "batch_first", True):
            raise ValueError("the reference MaPLe needs open_clip's batch-first transformer")
        self.prompt_learner = ReferencePrompts(method.backbone, method.classnames, learner.prefix_text, learner.ctx)
        self.proj = copy.deepcopy(learner.proj)
        self.compound_prompts_text = copy.deepcopy(learner.compound_prompts_text)
        self.compound_prompt_projections = copy.deepcopy(learner.compound_prompt_projections)
        self.n_ctx = int(learner.ctx.shape[0])

    def encode_text(self, prompts: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Official ``TextEncoder`` with the deep text prompts of blocks ``1..J-1``."""
        model, dtype, n = self.backbone[0].model, self.backbone[0].dtype, self.n_ctx
        x = prompts.to(dtype) + model.positional_embedding.to(dtype)
        for index, block in enumerate(model.transformer.resblocks):
            if 1 <= index <= len(self.compound_prompts_text):
                deep = _expand(self.compound_prompts_text[index - 1], x.shape[0], x.dtype)
                x = torch.cat([x[:, :1], deep, x[:, 1 + n :]], dim=1)
            x = block(x, attn_mask=model.attn_mask)
        x = model.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        projection = model.text_projection
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection

    def encode_image(self, pixels: torch.Tensor, shared: torch.Tensor, deep: list[torch.Tensor]) -> torch.Tensor:
        """Official ``VisionTransformer_MaPLe``: prompts appended after the patches, replaced at blocks ``1..J-1``."""
        visual, dtype = self.backbone[0].model.visual, self.backbone[0].dtype
        x = visual.conv1(pixels.to(dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.ln_pre(torch.cat([x, _expand(shared, x.shape[0], x.dtype)], dim=1))
        for index, block in enumerate(visual.transformer.resblocks):
            if 1 <= index <= len(deep):
                x = torch.cat([x[:, : -self.n_ctx], _expand(deep[index - 1], x.shape[0], x.dtype)], dim=1)
            x = block(x)
        return visual.ln_post(x[:, 0]) @ visual.proj

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``CustomCLIP.forward``: prompts, both towers, ``logit_scale.exp() * img @ text.T`` (float32)."""
        backbone = self.backbone[0]
        learner = self.prompt_learner
        deep_visual = [layer(text) for layer, text in zip(self.compound_prompt_projections, self.compound_prompts_text)]
        with backbone.autocast():
            text = self.encode_text(learner(), learner.tokenized_prompts)
            image = self.encode_image(pixels, self.proj(learner.ctx), deep_visual)
        text, image = F.normalize(text.float(), dim=-1), F.normalize(image.float(), dim=-1)
        return backbone.logit_scale().to(image.device) * image @ text.t()


@torch.no_grad()
def reference_maple_evaluate(model: ReferenceMaPLe, backbone: Backbone, task_data: object,
                             batch_size: int) -> torch.Tensor:
    """The official test loop: per batch of pixels, the whole model (text re-encoded on every batch)."""
    pipeline = build_pipeline(backbone.preprocessing, train=False)
    loader = DataLoader(ImageDataset(task_data.test, task_data.image_dir, pipeline.per_image), batch_size=batch_size,
                        shuffle=False, num_workers=0)
    model.eval()
    return torch.cat([model(pipeline.normalize(images.to(backbone.device))).float().cpu() for images, _, _ in loader])
