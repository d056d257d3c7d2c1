"""Vision Transformers from scratch with timm (paper Fig. 3 right): no pretrained weights, no dropout.

timm fuses W_Q, W_K, W_V into `blocks.<l>.attn.qkv` (rows [Q; K; V]) and W_O into `blocks.<l>.attn.proj`;
`wdrank.heads.timm_vit_factors` splits them per head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.vision_transformer import VisionTransformer

from wdrank.heads import timm_vit_config


@dataclass(frozen=True)
class ViTShape:
    image_size: int
    channels: int
    num_classes: int
    patch_size: int
    depth: int
    embed_dim: int  # d_model
    n_head: int
    mlp_ratio: float

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.n_head:
            raise ValueError(f"embed_dim={self.embed_dim} must be divisible by n_head={self.n_head}")

    def heads_config(self) -> dict:
        """What `wdrank.heads` needs to split the checkpoint weights per head."""
        return timm_vit_config(self.n_head, self.depth, self.embed_dim)


def build_vit(shape: ViTShape, seed: int) -> VisionTransformer:
    """A freshly initialised ViT (class token, learned position embeddings); same shape and seed, same weights."""
    torch.manual_seed(seed)
    return VisionTransformer(
        img_size=shape.image_size, patch_size=shape.patch_size, in_chans=shape.channels,
        num_classes=shape.num_classes, embed_dim=shape.embed_dim, depth=shape.depth, num_heads=shape.n_head,
        mlp_ratio=shape.mlp_ratio, global_pool="token",
    )
