"""The official computation, written the way ``CoOp:trainers/{coop,cocoop,zsclip}.py`` compute it.

Reference side of every benchmark pair (spec sections 3, 6, 7). It shares only the frozen open_clip model
with the harness, never the harness's prompt code: it tokenizes and embeds its own class prompts, reads the
end-of-text index as ``tokenized_prompts.argmax(-1)``, and runs the official ``TextEncoder`` over the full
context length (77 for OpenAI CLIP). Then, as officially:

- zero-shot: the class prompts are encoded once at build time (``ZeroshotCLIP.build_model``), every test
  image is encoded (no cache);
- CoOp: ``CustomCLIP.forward`` re-encodes every class prompt on every batch, at test time too;
- CoCoOp: the prompts of the whole batch are stacked to ``(B, n_cls, 77, D)``, then a Python loop encodes
  one image's ``n_cls`` prompts per call.

The learned tensors (``ctx``, the meta-net) are copied from a harness method, so both sides compute with the
same parameters and their logits must agree.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from harness.data import ImageDataset, build_transform
from harness.models.backbone import Backbone


class ReferenceTextEncoder(nn.Module):
    """Official ``TextEncoder``: positional embedding, transformer (full causal mask), ln_final, EOT row, projection."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = [backbone]  # not a submodule: the CLIP is frozen and shared

    def forward(self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor) -> torch.Tensor:
        backbone = self.backbone[0]
        model = backbone.model
        with backbone.autocast():
            x = prompts.to(backbone.dtype) + model.positional_embedding.to(backbone.dtype)
            if getattr(model.transformer, "batch_first", True):
                x = model.transformer(x, attn_mask=model.attn_mask)
            else:
                x = model.transformer(x.permute(1, 0, 2), attn_mask=model.attn_mask).permute(1, 0, 2)
            x = model.ln_final(x)
            x = x[torch.arange(x.shape[0], device=x.device), tokenized_prompts.argmax(dim=-1)]
            projection = model.text_projection
            return projection(x) if isinstance(projection, nn.Linear) else x @ projection


class ReferencePrompts(nn.Module):
    """Official ``PromptLearner`` buffers and context for class token position ``end`` (generic context)."""

    def __init__(self, backbone: Backbone, classnames: list[str], prefix_text: str, ctx: torch.Tensor) -> None:
        super().__init__()
        n_ctx = ctx.shape[0]
        names = [name.replace("_", " ") for name in classnames]
        tokens = backbone.tokenize([f"{prefix_text} {name}." for name in names])
        with torch.no_grad():
            embedding = backbone.model.token_embedding(tokens).to(ctx.dtype)
        self.register_buffer("token_prefix", embedding[:, :1])
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :])
        self.tokenized_prompts = tokens
        self.ctx = nn.Parameter(ctx.detach().clone())
        self.n_cls = len(names)

    def forward(self) -> torch.Tensor:
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


def _scaled(backbone: Backbone, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    with torch.autocast(device_type=image.device.type, enabled=False):
        return backbone.logit_scale().to(image.device) * image.float() @ text.float().t()


class ReferenceCoOp(nn.Module):
    """Official CoOp ``CustomCLIP`` over image features: text features recomputed on every forward."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        learner = method.prompt_learner
        self.backbone = [method.backbone]
        self.prompt_learner = ReferencePrompts(method.backbone, method.classnames, learner.prefix_text, learner.ctx)
        self.text_encoder = ReferenceTextEncoder(method.backbone)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        prompts = self.prompt_learner()
        text = self.text_encoder(prompts, self.prompt_learner.tokenized_prompts)
        return _scaled(self.backbone[0], image_features, F.normalize(text.float(), dim=-1))


class ReferenceCoCoOp(ReferenceCoOp):
    """Official CoCoOp ``CustomCLIP`` over image features: stacked per-image prompts, one image per encoder call."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__(method)
        self.meta_net = copy.deepcopy(method.prompt_learner.meta_net)

    def build_prompts(self, image_features: torch.Tensor) -> torch.Tensor:
        learner = self.prompt_learner
        bias = self.meta_net(image_features.to(learner.ctx.dtype))
        ctx_shifted = learner.ctx.unsqueeze(0) + bias.unsqueeze(1)
        prompts = []
        for ctx_i in ctx_shifted:  # official: one (n_cls, 77, D) block per image, then stacked
            ctx_i = ctx_i.unsqueeze(0).expand(learner.n_cls, -1, -1)
            prompts.append(torch.cat([learner.token_prefix, ctx_i, learner.token_suffix], dim=1))
        return torch.stack(prompts)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        prompts = self.build_prompts(image_features)
        rows = []
        for pts_i, image in zip(prompts, image_features):
            text = self.text_encoder(pts_i, self.prompt_learner.tokenized_prompts)
            rows.append(_scaled(self.backbone[0], image.unsqueeze(0), F.normalize(text.float(), dim=-1)))
        return torch.cat(rows)


class ReferenceZeroshot(nn.Module):
    """Official ``ZeroshotCLIP``: the class prompts encoded once, at full length, when the model is built."""

    def __init__(self, backbone: Backbone, classnames: list[str], template: str) -> None:
        super().__init__()
        self.backbone = [backbone]
        tokens = backbone.tokenize([template.format(name.replace("_", " ")) for name in classnames])
        with torch.no_grad():
            embedding = backbone.model.token_embedding(tokens).to(backbone.dtype)
            text = ReferenceTextEncoder(backbone)(embedding, tokens)
        self.text_features = F.normalize(text.float(), dim=-1)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return _scaled(self.backbone[0], image_features, self.text_features)


@torch.no_grad()
def reference_evaluate(model: nn.Module, backbone: Backbone, task_data: object, batch_size: int) -> torch.Tensor:
    """The official test loop: every batch's images are encoded (no cache), then ``model`` gives its logits."""
    dataset = ImageDataset(task_data.test, task_data.image_dir, build_transform(backbone.preprocessing, train=False))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    model.eval()
    logits = [model(backbone.encode_images(images)).float().cpu() for images, _, _ in loader]
    return torch.cat(logits)


def sgd_for(parameters: list[nn.Parameter], lr: float = 0.002) -> torch.optim.SGD:
    """The official optimiser (Dassl ``build_optimizer`` for CoOp/CoCoOp configs)."""
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=5e-4, dampening=0.0, nesterov=False)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, features: torch.Tensor,
               labels: torch.Tensor) -> torch.Tensor:
    """One official training step on (frozen, precomputed) image features; returns the step's logits."""
    model.train()
    logits = model(features)
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return logits.detach().float().cpu()
