"""Memory-bounded losses over the full item vocabulary.

The full-softmax cross-entropy is computed in chunks of positions with the gradient formed in the
forward pass, so no ``[positions × items]`` matrix larger than ``chunk_elements`` ever exists and
the item-vocabulary matmul runs three times per step (forward, grad wrt h, grad wrt W), as with an
unchunked loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

DEFAULT_CHUNK_ELEMENTS = 1 << 24  # 16M logits = 64 MiB of fp32 per chunk


class _ChunkedSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: Tensor, weight: Tensor, targets: Tensor, chunk_rows: int
    ) -> Tensor:
        total = hidden.new_zeros((), dtype=torch.float32)
        needs_h, needs_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if needs_h else None
        grad_w = torch.zeros_like(weight) if needs_w else None
        count = hidden.size(0)
        for start in range(0, count, chunk_rows):
            h = hidden[start : start + chunk_rows]  # [c, D]
            t = targets[start : start + chunk_rows]  # [c]
            logits = (h @ weight.t()).float()  # [c, V]
            lse = torch.logsumexp(logits, dim=1)  # [c]
            total += (lse - logits.gather(1, t.unsqueeze(1)).squeeze(1)).sum()
            if needs_h or needs_w:
                probs = torch.exp_(logits.sub_(lse.unsqueeze(1)))  # softmax, in place
                probs[torch.arange(t.numel(), device=t.device), t] -= 1.0
                probs = probs.to(hidden.dtype)
                if grad_h is not None:
                    grad_h[start : start + chunk_rows] = probs @ weight
                if grad_w is not None:
                    grad_w.addmm_(probs.t(), h)
        ctx.save_for_backward(
            grad_h if grad_h is not None else hidden.new_empty(0),
            grad_w if grad_w is not None else weight.new_empty(0),
        )
        ctx.count = count
        return total / max(count, 1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / max(ctx.count, 1)
        out_h = grad_h * scale if ctx.needs_input_grad[0] else None
        out_w = grad_w * scale if ctx.needs_input_grad[1] else None
        return out_h, out_w, None, None


def full_softmax_cross_entropy(
    hidden: Tensor, weight: Tensor, targets: Tensor, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
) -> Tensor:
    """Mean cross-entropy of ``softmax(hidden @ weight.T)`` against ``targets``.

    Args:
        hidden: ``[P, D]`` states at the real positions only (gathered before the projection).
        weight: ``[V, D]`` output rows (the item table; row 0 = padding gets a logit like any
            other row, as with a plain ``F.cross_entropy`` over ids 0..N).
        targets: ``[P]`` target ids in ``[0, V)``.
        chunk_elements: most logits materialised at once.

    Returns:
        Scalar mean loss (0 when ``P == 0``).
    """
    if hidden.size(0) == 0:
        return hidden.sum() * 0.0 + weight.sum() * 0.0
    chunk_rows = max(1, chunk_elements // max(weight.size(0), 1))
    return _ChunkedSoftmaxCE.apply(hidden, weight, targets, chunk_rows)
