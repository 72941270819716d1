"""Batched on-device image augmentation (one op sequence for the whole batch, no per-image
Python loop)."""

from __future__ import annotations

import torch


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 32x32 crops of the 4-pixel zero-padded batch and random horizontal flips,
    drawn per example: [B, C, H, W] -> [B, C, H, W]."""
    batch, _, height, width = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dev = x.device
    dy = torch.randint(0, 9, (batch, 1, 1), generator=generator, device=dev)
    dx = torch.randint(0, 9, (batch, 1, 1), generator=generator, device=dev)
    rows = dy + torch.arange(height, device=dev)[None, :, None]
    cols = dx + torch.arange(width, device=dev)[None, None, :]
    flip = torch.rand(batch, generator=generator, device=dev) < 0.5
    cols = torch.where(flip[:, None, None], cols.flip(2), cols)
    examples = torch.arange(batch, device=dev)[:, None, None]
    return padded.permute(0, 2, 3, 1)[examples, rows, cols].permute(0, 3, 1, 2)
