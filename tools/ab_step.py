"""A/B benchmark: ECL-SR training steps at the ML-1m code shape, before vs after the CPU levers.

Usage: python tools/ab_step.py [THREADS] [PAIRS]

"before" swaps back what the block ran earlier: SDPA for attention with dropout (its CPU math
path) and dropout masks built as ``(rand >= p) * scale`` (a bool tensor, type promotion);
"after" is the code as it is.

The two variants alternate batch by batch in one process (so machine noise hits both alike) and
the medians are compared. A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

import eclsr.layers as layers
import eclsr.plugins.encoders._transformer as transformer
from eclsr import bench
from eclsr.batching import LeaveOneOut, epoch_order
from eclsr.model import Model
from eclsr.recipe import load_recipe
from eclsr.train import make_optimizer, training_item_counts

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "ecl-sr-code" / "ml-1m.toml"


def sdpa_attention(q, k, v, attn_mask, causal, p):  # noqa: ANN001, ANN201
    """What the block ran before: SDPA, whose CPU math path handles dropout."""
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=p, is_causal=causal
    )


def bool_keep_mask(x, p):  # noqa: ANN001, ANN201
    """The dropout mask as FastDropout built it before (same draws, same values)."""
    return (torch.rand_like(x) >= p) * (1.0 / (1.0 - p))


BEFORE = {"attention": sdpa_attention, "mask": bool_keep_mask}
AFTER = {"attention": transformer.attention_with_dropout, "mask": layers.keep_mask}


def use(variant: dict) -> None:
    """Install one variant's functions where the block and FastDropout look them up."""
    transformer.attention_with_dropout = variant["attention"]
    transformer.keep_mask = variant["mask"]
    layers.keep_mask = variant["mask"]


def main(threads: int, pairs: int) -> None:
    """Time ``pairs`` batches per variant after three warm-up batches; print the medians."""
    torch.set_num_threads(threads)
    recipe = load_recipe(RECIPE)
    data = bench.ml1m_shaped(recipe.data.max_len)
    windows = LeaveOneOut(data, recipe.data.max_len).train()
    torch.manual_seed(0)
    model = Model(recipe, data.num_items, training_item_counts(data))
    loop = bench._Loop(
        model, make_optimizer(model, recipe.train), recipe, data, windows, torch.device("cpu")
    )  # noqa: SLF001
    order = epoch_order(windows, recipe.train.batch_size, 0, 0, True)
    variants = {"before": BEFORE, "after": AFTER}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rows in order[:3]:
        loop.step(rows)
    for i in range(2 * pairs):
        name = list(variants)[i % 2]
        use(variants[name])
        times[name].append(loop.step(order[(3 + i) % len(order)]))
    for name, seconds in times.items():
        print(
            f"{name:6s} median {statistics.median(seconds):.3f} s/batch  ({len(seconds)} batches)"
        )
    ratio = statistics.median(times["before"]) / statistics.median(times["after"])
    print(f"speed-up on the whole step, before / after (median ratio): {ratio:.3f}x")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 2, int(sys.argv[2]) if len(sys.argv) > 2 else 16
    )
