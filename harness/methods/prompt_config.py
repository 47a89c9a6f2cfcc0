"""CoOp's prompt-learner configuration (``PromptConfig``) and what a backbone needs for prompt learning."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.config import MethodConfig, option
from harness.errors import ConfigError, HarnessError
from harness.models.backbone import Backbone

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")
EOT_POOL_TYPES = ("argmax", "eos")


@dataclass(frozen=True)
class PromptConfig(MethodConfig):
    """The keys of CoOp's prompt learner (official ``TRAINER.COOP.*`` / ``TRAINER.COCOOP.*``) and its speed paths."""

    n_ctx: int = option(16, "number of context tokens (N_CTX); ctx_init words set it")
    ctx_init: str = option("", "words the context starts from (CTX_INIT); empty: normal(0, 0.02) vectors")
    csc: bool = option(False, "class-specific context (CSC), CoOp only")
    class_token_position: str = option("end", "where the class name goes: end, middle or front (CoOp only)")
    truncate_prompts: bool = option(
        True, "encode prompts up to the last end-of-text token and the shared start + context once (exact)",
        speed=True)
    max_prompts_per_chunk: int = option(0, "CoCoOp prompts per text-encoder call (0: from chunk_memory_mb)",
                                        speed=True)
    chunk_memory_mb: int = option(1024, "CoCoOp activation budget of one text-encoder call, MiB", speed=True)

    def validate(self, source: str) -> None:
        """The shared checks, then the prompt learner's keys."""
        super().validate(source)
        if self.class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ConfigError(f"{source}: class_token_position={self.class_token_position!r}; "
                              f"allowed: {', '.join(CLASS_TOKEN_POSITIONS)}")
        for key in ("n_ctx", "chunk_memory_mb"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{source}: {key} must be at least 1, got {getattr(self, key)}")
        if self.max_prompts_per_chunk < 0:
            raise ConfigError(f"{source}: max_prompts_per_chunk must be 0 or more, got {self.max_prompts_per_chunk}")


def check_backbone(backbone: Backbone) -> None:
    """Refuse, with a clear error, a backbone whose text tower prompt learning cannot drive.

    Prompt learning replaces token embeddings and reads the text feature at the end-of-text token, so it
    needs open_clip's standard transformer text tower, a projection, and end-of-text pooling.
    """
    backbone.require_text_tower()
    model = backbone.model
    pool = getattr(model, "text_pool_type", "argmax")
    if pool not in EOT_POOL_TYPES:
        raise HarnessError(
            f"backbone {backbone.name!r} pools text features with {pool!r}; CoOp/CoCoOp read the end-of-text "
            f"token and need pooling {' or '.join(EOT_POOL_TYPES)}"
        )
    if getattr(model, "text_projection", None) is None:
        raise HarnessError(f"backbone {backbone.name!r} has no text projection; CoOp/CoCoOp need one")


def parameter_dtype(backbone: Backbone) -> torch.dtype:
    """The dtype of the prompt parameters: float16 only on a pure-fp16 backbone (the official mode), else float32.

    Mixed precision (``amp`` autocast, ``bf16`` weights) keeps the learned prompts in float32.
    """
    return torch.float16 if backbone.precision == "fp16" else torch.float32
