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
        needs_h, needs_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with torch.autocast(hidden.device.type, enabled=False):  # the loss is computed in fp32
            h32, w32 = hidden.float(), weight.float()
            total, grad_h, grad_w = _chunked_ce(h32, w32, targets, chunk_rows, needs_h, needs_w)
        ctx.save_for_backward(
            grad_h.to(hidden.dtype) if grad_h is not None else hidden.new_empty(0),
            grad_w.to(weight.dtype) if grad_w is not None else weight.new_empty(0),
        )
        ctx.count = hidden.size(0)
        return total / max(ctx.count, 1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / max(ctx.count, 1)
        out_h = grad_h * scale if ctx.needs_input_grad[0] else None
        out_w = grad_w * scale if ctx.needs_input_grad[1] else None
        return out_h, out_w, None, None


def _chunked_ce(
    hidden: Tensor, weight: Tensor, targets: Tensor, chunk_rows: int, needs_h: bool, needs_w: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Summed CE and its gradients, one ``[chunk, V]`` logits buffer reused for every chunk.

    Everything after the matmul runs in place on that buffer (max, subtract, exp, normalise), which
    measured about 1.5x faster than ``logsumexp`` plus a separate softmax at the Yelp shape.
    """
    count = hidden.size(0)
    total = hidden.new_zeros(())
    grad_h = torch.empty_like(hidden) if needs_h else None
    grad_w = torch.zeros_like(weight) if needs_w else None
    buffer = hidden.new_empty((min(chunk_rows, count), weight.size(0)))
    for start in range(0, count, chunk_rows):
        h = hidden[start : start + chunk_rows]  # [c, D]
        t = targets[start : start + chunk_rows, None]  # [c, 1]
        logits = torch.mm(h, weight.t(), out=buffer[: h.size(0)])  # [c, V]
        target_logit = logits.gather(1, t)  # [c, 1]
        peak = logits.amax(dim=1, keepdim=True)  # [c, 1]
        probs = logits.sub_(peak).exp_()  # unnormalised softmax, in place
        norm = probs.sum(dim=1, keepdim=True)  # [c, 1]
        total += (peak + norm.log() - target_logit).sum()
        if needs_h or needs_w:
            probs.div_(norm)
            probs.scatter_add_(1, t, torch.full_like(target_logit, -1.0))  # softmax - onehot
            if grad_h is not None:
                torch.mm(probs, weight, out=grad_h[start : start + chunk_rows])
            if grad_w is not None:
                grad_w.addmm_(probs.t(), h)
    return total, grad_h, grad_w


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
