"""Mixed precision and gradient accumulation for the training step (``train.precision``, ``train.accumulate``).

``bf16`` and ``fp16`` run the model's forward pass under ``torch.autocast`` (matrix products in half
precision, reductions and the parameters in fp32); the outputs are cast back to fp32 before the losses.
``fp16`` has a narrow exponent, so its loss is multiplied by a dynamic scale before ``backward`` and the
gradients are divided by it before they are clipped or used (``torch.amp.GradScaler``: a step whose
gradients overflow is skipped and the scale halved). ``bf16`` needs no scaler.

Accumulation over k micro-batches: the step's batch (``train.batch`` sequences, drawn as without
accumulation) is cut into k equal parts along the batch axis; each part's loss, divided by k, is
differentiated in turn, so the gradients add up to the gradient of the mean of the k parts' losses. That
is the gradient of the whole batch's loss wherever each part counts the same number of loss terms (equal
lengths, or no padding); with padding, each part's loss is the mean over its own counted steps.
"""
from __future__ import annotations

import contextlib

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context to run the forward pass in: autocast to bf16 or fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def to_fp32(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's floating outputs in fp32 (the losses are computed in full precision); others as they are."""
    return {k: v.float() if v.is_floating_point() and v.dtype != torch.float32 else v for k, v in outputs.items()}


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A dynamic loss scaler for fp16, None otherwise."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def micro_batches(batch: dict[str, torch.Tensor], k: int) -> list[dict[str, torch.Tensor]]:
    """``batch`` (every tensor batch-first, B a multiple of k) cut into k batches of B / k examples."""
    if k == 1:
        return [batch]
    parts = {key: value.chunk(k) for key, value in batch.items()}
    return [{key: chunks[i] for key, chunks in parts.items()} for i in range(k)]
