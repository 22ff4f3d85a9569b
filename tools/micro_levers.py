"""Micro-benchmarks behind two CPU levers of docs/performance.md (items 12 and 13).

Usage: python tools/micro_levers.py [masks|loss|all] [THREADS]

* ``masks``: ns per element of one dropout mask, ``torch.rand_like`` (the float path) against the
  16-bit SFC64 draws ``eclsr.ops.layers.keep_mask`` uses on CPU, at the shapes of the ECL-SR ML-1m step
  (hidden states [256, 50, 64], attention probabilities [512, 50, 50]).
* ``loss``: forward + backward of the full-softmax loss at the ML-1m (12,800 × 3,417) and Yelp
  (2,200 × 20,034) shapes, D = 64: the previous five-pass chunk body (max, subtract, exp, sum,
  divide) in 16 Mi-logit chunks against the current one (one in-place softmax) at 16 Mi, 2 Mi and
  the CPU auto budget. Every variant is checked against the current loss first.

Variants alternate round by round in one process; medians are printed. A benchmark, not a test.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import torch

import eclsr.ops.layers as layers
from eclsr.ops.losses import _chunked_ce, auto_chunk_rows


def median_seconds(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Run every variant once to warm up, then ``rounds`` alternating rounds; median seconds."""
    for run in variants.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def masks() -> None:
    """Per-element cost of one dropout mask, float path vs 16-bit path."""

    def float_path(x: torch.Tensor) -> torch.Tensor:
        with layers.float_dropout_masks():
            return layers.keep_mask(x, 0.2)

    for shape in ((256, 50, 64), (512, 50, 50)):
        x = torch.empty(shape)
        seconds = median_seconds(
            {
                "rand_like": lambda x=x: float_path(x),
                "16-bit": lambda x=x: layers.keep_mask(x, 0.2),
            },
            rounds=25,
        )
        per = {name: s * 1e9 / x.numel() for name, s in seconds.items()}
        print(
            f"mask {list(shape)}: rand_like {per['rand_like']:.2f} ns/element, 16-bit "
            f"{per['16-bit']:.2f} ns/element ({per['rand_like'] / per['16-bit']:.2f}x)"
        )


def five_pass_ce(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int):  # noqa: ANN201
    """The chunk body before lever 13: max, subtract, exp, sum and divide as separate passes."""
    total = hidden.new_zeros(())
    grad_h, grad_w = torch.empty_like(hidden), torch.zeros_like(weight)
    buffer = hidden.new_empty((min(rows, hidden.size(0)), weight.size(0)))
    for start in range(0, hidden.size(0), rows):
        h, t = hidden[start : start + rows], targets[start : start + rows, None]
        logits = torch.mm(h, weight.t(), out=buffer[: h.size(0)])
        target_logit = logits.gather(1, t)
        peak = logits.amax(dim=1, keepdim=True)
        probs = logits.sub_(peak).exp_()
        norm = probs.sum(dim=1, keepdim=True)
        total += (peak + norm.log() - target_logit).sum()
        probs.div_(norm)
        probs.scatter_add_(1, t, torch.full_like(target_logit, -1.0))
        torch.mm(probs, weight, out=grad_h[start : start + rows])
        grad_w.addmm_(probs.t(), h)
    return total, grad_h, grad_w


def loss() -> None:
    """Full-softmax loss, old chunk body vs current, at several chunk budgets."""
    torch.manual_seed(0)
    for positions, items in ((12_800, 3_417), (2_200, 20_034)):
        loss_at(positions, items)


def loss_at(positions: int, items: int) -> None:
    """One shape of :func:`loss`."""
    h = torch.randn(positions, 64) * 0.5
    w = torch.randn(items, 64) * 0.5
    t = torch.randint(1, items, (positions,))
    big, small = (1 << 24) // items, (1 << 21) // items
    auto = auto_chunk_rows(items, h.device)
    reference = _chunked_ce(h, w, t, auto, True, True, False)[:3]
    for got in (five_pass_ce(h, w, t, big), _chunked_ce(h, w, t, big, True, True, False)[:3]):
        for a, b in zip(reference, got, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    variants = {
        "five-pass 16Mi": lambda: five_pass_ce(h, w, t, big),
        "softmax 16Mi": lambda: _chunked_ce(h, w, t, big, True, True, False),
        "softmax 2Mi": lambda: _chunked_ce(h, w, t, small, True, True, False),
        f"softmax auto ({auto} rows)": lambda: _chunked_ce(h, w, t, auto, True, True, False),
    }
    seconds = median_seconds(variants, rounds=7)
    base = seconds["five-pass 16Mi"]
    cells = "  ".join(f"{k} {s * 1e3:.0f} ms ({base / s:.2f}x)" for k, s in seconds.items())
    print(f"loss {positions} x {items}: {cells}")


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    if which in ("masks", "all"):
        masks()
    if which in ("loss", "all"):
        loss()
