"""Memory-bounded losses over the full item vocabulary.

The full-softmax cross-entropy is computed in chunks of positions with the gradient formed in the
forward pass, so no ``[positions × items]`` matrix larger than ``chunk_elements`` ever exists and
the item-vocabulary matmul runs three times per step (forward, grad wrt h, grad wrt W), as with an
unchunked loss.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import torch
from torch import Tensor

# Auto chunk budget. On CPU a chunk of 2 Mi logits (8 MiB) stays in cache between the matmul, the
# softmax and the two gradient matmuls that read it: at the ML-1m code shape (12,800 × 3,417) the
# loss ran 1.2-1.4x faster than with 16 Mi chunks. Below ~256 rows the GEMMs get too thin (21-row
# chunks at 100k items ran 1.6x slower), so the auto budget never goes under that. GPUs keep 16 Mi.
CPU_CHUNK_ELEMENTS = 1 << 21
GPU_CHUNK_ELEMENTS = 1 << 24
MIN_AUTO_ROWS = 256
# Below this the target's softmax probability is in float32's subnormal range and its log loses
# precision (or is -inf): such rows get their loss from an exact log-sum-exp instead.
_TINY_PROBABILITY = 1e-30


def auto_chunk_rows(num_outputs: int, device: torch.device) -> int:
    """Rows per chunk when no budget is given (see ``CPU_CHUNK_ELEMENTS``)."""
    if device.type == "cpu":
        return max(MIN_AUTO_ROWS, CPU_CHUNK_ELEMENTS // max(num_outputs, 1))
    return max(1, GPU_CHUNK_ELEMENTS // max(num_outputs, 1))


def rows_per_chunk(chunk_elements: int | None, num_outputs: int, device: torch.device) -> int:
    """Rows of ``num_outputs`` logits per chunk: within ``chunk_elements``, or auto when None."""
    if chunk_elements is None:
        return auto_chunk_rows(num_outputs, device)
    return max(1, chunk_elements // max(num_outputs, 1))


class _ChunkedSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: Tensor, weight: Tensor, targets: Tensor, chunk_rows: int, best: bool
    ) -> tuple[Tensor, Tensor]:
        needs_h, needs_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with torch.autocast(hidden.device.type, enabled=False):  # the loss is computed in fp32
            h32, w32 = hidden.float(), weight.float()
            total, grad_h, grad_w, argmax = _chunked_ce(
                h32, w32, targets, chunk_rows, needs_h, needs_w, best
            )
        ctx.save_for_backward(
            grad_h.to(hidden.dtype) if grad_h is not None else hidden.new_empty(0),
            grad_w.to(weight.dtype) if grad_w is not None else weight.new_empty(0),
        )
        ctx.count = hidden.size(0)
        ctx.mark_non_differentiable(argmax)
        return total / max(ctx.count, 1), argmax

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor, _grad_argmax: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / max(ctx.count, 1)
        out_h = grad_h * scale if ctx.needs_input_grad[0] else None
        out_w = grad_w * scale if ctx.needs_input_grad[1] else None
        return out_h, out_w, None, None, None


def _chunked_ce(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    chunk_rows: int,
    needs_h: bool,
    needs_w: bool,
    best: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor]:
    """Summed CE, its gradients and (if ``best``) each row's argmax over ids ``1..V-1``.

    One ``[chunk, V]`` buffer is reused for every chunk: the logits are written into it, turned
    into probabilities in place by one row-wise softmax (one pass over the chunk, which stays in
    cache), and the loss is ``−log p[target]``. This replaced a max / subtract / exp / sum /
    divide sequence of five passes.
    """
    count = hidden.size(0)
    total = hidden.new_zeros(())
    grad_h = torch.empty_like(hidden) if needs_h else None
    grad_w = torch.zeros_like(weight) if needs_w else None
    argmax = torch.empty(count if best else 0, dtype=torch.long, device=hidden.device)
    buffer = hidden.new_empty((min(chunk_rows, count), weight.size(0)))
    for start in range(0, count, chunk_rows):
        stop = min(start + chunk_rows, count)
        h = hidden[start:stop]  # [c, D]
        t = targets[start:stop, None]  # [c, 1]
        logits = torch.mm(h, weight.t(), out=buffer[: stop - start])  # [c, V]
        if best:  # before the softmax: ties and order exactly as on the logits
            argmax[start:stop] = logits[:, 1:].argmax(dim=1) + 1
        # The CPU softmax kernel reads and writes each row in place (checked against a plain
        # cross-entropy in tests/test_losses.py); elsewhere, untested here, it writes a new tensor.
        if logits.device.type == "cpu":
            probs = torch.softmax(logits, dim=1, out=logits)  # [c, V]
        else:
            probs = torch.softmax(logits, dim=1)
        target_prob = probs.gather(1, t)  # [c, 1]
        log_prob = target_prob.log().squeeze(1)  # [c]
        tiny = target_prob.squeeze(1) < _TINY_PROBABILITY  # [c]
        if bool(tiny.any()):
            log_prob[tiny] = -_exact_loss(h[tiny], weight, t[tiny])
        total -= log_prob.sum()
        if needs_h or needs_w:
            probs.scatter_add_(1, t, torch.full_like(target_prob, -1.0))  # softmax - onehot
            if grad_h is not None:
                torch.mm(probs, weight, out=grad_h[start:stop])
            if grad_w is not None:
                grad_w.addmm_(probs.t(), h)
    return total, grad_h, grad_w, argmax


def _exact_loss(h: Tensor, weight: Tensor, t: Tensor) -> Tensor:
    """``[r]`` cross-entropy of rows whose target probability underflowed, by log-sum-exp.

    Rare (a target scored ~70 below the row's best); recomputes those rows' logits.
    """
    logits = h @ weight.t()  # [r, V]
    return torch.logsumexp(logits, dim=1) - logits.gather(1, t).squeeze(1)


@overload
def full_softmax_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    chunk_elements: int | None = None,
    *,
    return_argmax: Literal[False] = False,
) -> Tensor: ...


@overload
def full_softmax_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    chunk_elements: int | None = None,
    *,
    return_argmax: Literal[True],
) -> tuple[Tensor, Tensor]: ...


def full_softmax_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    chunk_elements: int | None = None,
    *,
    return_argmax: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Mean cross-entropy of ``softmax(hidden @ weight.T)`` against ``targets``.

    Args:
        hidden: ``[P, D]`` states at the real positions only (gathered before the projection).
        weight: ``[V, D]`` output rows (the item table; row 0 = padding gets a logit like any
            other row, as with a plain ``F.cross_entropy`` over ids 0..N).
        targets: ``[P]`` target ids in ``[0, V)``.
        chunk_elements: most logits materialised at once; None picks a budget for the device
            (:func:`auto_chunk_rows`).
        return_argmax: also return each row's highest-scoring id among ``1..V-1`` (row 0, the
            padding, excluded), read from the logits the loss computes anyway.

    Returns:
        Scalar mean loss (0 when ``P == 0``), or ``(loss, argmax [P])`` with ``return_argmax``.
    """
    if hidden.size(0) == 0:
        loss = hidden.sum() * 0.0 + weight.sum() * 0.0
        empty = torch.zeros(0, dtype=torch.long, device=hidden.device)
        return (loss, empty) if return_argmax else loss
    chunk_rows = rows_per_chunk(chunk_elements, weight.size(0), hidden.device)
    loss, argmax = _ChunkedSoftmaxCE.apply(hidden, weight, targets, chunk_rows, return_argmax)
    return (loss, argmax) if return_argmax else loss


@torch.no_grad()
def best_items(hidden: Tensor, weight: Tensor, chunk_elements: int | None = None) -> Tensor:
    """``[P]`` highest-scoring id among ``1..V-1`` for each row of ``hidden @ weight.T``.

    Row 0 of ``weight`` (padding) never wins. Chunked like the loss; no gradient. The same
    argmax :func:`full_softmax_cross_entropy` returns with ``return_argmax``.
    """
    rows = rows_per_chunk(chunk_elements, weight.size(0), hidden.device)
    parts = [(h @ weight[1:].t()).argmax(dim=1) + 1 for h in hidden.split(rows)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=hidden.device)
