"""CoCoOp (Zhou et al., CVPR 2022): CoOp's generic context shifted per image by a small meta-net.

Faithful to ``CoOp:trainers/cocoop.py`` (spec section 6): ``bias = meta_net(normalised image features)``
is added to every context vector, each image gets its own ``n_cls`` prompts (class token at the end), and
its logits are ``logit_scale.exp() * image_i @ normalised text_i.T``.

The official forward loops over images and encodes one image's ``n_cls`` prompts per call. Here the
prompts of a chunk of images (images x classes) are encoded in one call; the chunk holds
``max_prompts_per_chunk`` prompts, or (when that is 0) as many as fit ``chunk_memory_mb`` of estimated
activations (``prompt_activation_bytes``: the text tower's width, heads, depth, dtype and whether autograd
keeps every block; an upper bound when the start token and context are encoded once per image, see
``PromptLearner.encode_contexts``), and never less than one image, as the official loop.
``forward_per_image`` keeps the official loop as the reference the tests and benchmarks compare against.
"""

from __future__ import annotations

import torch

from harness.methods.base import OfficialLayout
from harness.methods.coop import CoOp, context_keys, has_context, scaled_logits
from harness.registries import METHODS


def prompt_activation_bytes(backbone, seq_len: int, grad: bool) -> int:
    """Estimated activation bytes one prompt of ``seq_len`` tokens costs in a text-encoder call.

    Per token and block: about ``12 * width`` values (layer norms, q/k/v, attention output, the 4x-wide MLP
    hidden before and after its activation, residual) plus ``2 * heads * seq_len`` attention weights. Under
    autograd every block's activations stay alive for the backward pass; without it about two blocks' worth
    are alive at a time.
    """
    per_block = seq_len * (12 * backbone.text_width + 2 * backbone.text_heads * seq_len) * backbone.dtype.itemsize
    return per_block * (backbone.text_layers if grad else 2)


def images_per_chunk(n_cls: int, bytes_per_prompt: int, max_prompts_per_chunk: int, chunk_memory_mb: int) -> int:
    """How many images' prompts (``n_cls`` each) one text-encoder call takes.

    Args:
        n_cls: number of classes (prompts per image).
        bytes_per_prompt: estimated activation bytes of one prompt (``prompt_activation_bytes``).
        max_prompts_per_chunk: prompts per call when positive; it wins over the memory budget.
        chunk_memory_mb: activation budget of one call in MiB, used when ``max_prompts_per_chunk`` is 0.

    Returns:
        At least 1: a single image's prompts are always encoded together, as in the official code.
    """
    if max_prompts_per_chunk > 0:
        return max(1, max_prompts_per_chunk // n_cls)
    return max(1, (chunk_memory_mb << 20) // (n_cls * max(1, bytes_per_prompt)))


@METHODS.register("cocoop")
class CoCoOp(CoOp):
    """CoCoOp: generic context plus an image-conditional bias (meta-net), class token at the end."""

    name = "cocoop"
    trainable = True
    conditional = True
    official_layouts = (OfficialLayout("CoCoOp prompt_learner", ("prompt_learner",),
                                       lambda state: has_context(state, meta_net=True), context_keys, primary=True),)
    protocol_presets = {}  # its own preset for every protocol (not CoOp's)

    def prepare_eval(self) -> None:
        """Enter eval mode; nothing is image-independent beyond the class buffers built by ``set_classes``."""
        self.eval()

    def _shifted_context(self, image_features: torch.Tensor) -> torch.Tensor:
        learner = self.prompt_learner
        bias = learner.meta_net(image_features.to(learner.dtype))  # (B, ctx_dim)
        return learner.ctx.unsqueeze(0) + bias.unsqueeze(1)  # (B, n_ctx, ctx_dim)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_cls)``; prompts of several images are encoded per call (see module doc)."""
        learner = self.prompt_learner
        learner._require_classes()
        ctx_shifted = self._shifted_context(image_features)
        n_cls = len(learner.classnames)
        bytes_per_prompt = prompt_activation_bytes(self.backbone, learner.seq_len, torch.is_grad_enabled())
        step = images_per_chunk(n_cls, bytes_per_prompt, self.config.max_prompts_per_chunk,
                                self.config.chunk_memory_mb)
        scale = self.backbone.logit_scale().to(image_features.device)
        chunks = []
        for start in range(0, image_features.shape[0], step):
            shifted = ctx_shifted[start : start + step]
            text = learner.encode_contexts(shifted)  # (images, n_cls, embed_dim)
            images = image_features[start : start + step]
            with torch.autocast(device_type=images.device.type, enabled=False):
                logits = torch.einsum("be,bce->bc", images.to(text.dtype), text)
                chunks.append(scale.to(text.dtype) * logits)
        return torch.cat(chunks)

    def forward_per_image(self, image_features: torch.Tensor) -> torch.Tensor:
        """The official computation: one text-encoder call per image (reference for tests and benchmarks)."""
        learner = self.prompt_learner
        ctx_shifted = self._shifted_context(image_features)
        rows = []
        for image, shifted in zip(image_features, ctx_shifted):
            text = learner.encode(learner.assemble(shifted))
            rows.append(scaled_logits(self.backbone, image.unsqueeze(0), text))
        return torch.cat(rows)
