"""A/B benchmark: ECL-SR training steps at the ML-1m code shape, one CPU lever off vs on.

Usage: python tools/ab_step.py [LEVER] [THREADS] [PAIRS]

LEVER (default ``all``) names what "before" swaps back; "after" is the code as it is:

* ``attention``: SDPA for attention with dropout (its CPU math path) and dropout masks built as
  ``(rand >= p) * scale`` (a bool tensor, type promotion) with torch's generator;
* ``encode_at``: the dropout view and the generator run every position through the last block
  (``Encoder.encode_at``'s gather-from-the-full-pass default);
* ``masks16``: dropout masks from ``torch.rand_like`` instead of 16-bit SFC64 draws;
* ``addcmul``: residual dropout as ``residual + dropout(x)`` instead of one ``addcmul``;
* ``chunk``: the full-softmax losses in 16 Mi-logit chunks instead of the CPU auto budget;
* ``all``: every lever above at once.

The two variants alternate batch by batch in one process (so machine noise hits both alike) and
the medians are compared. A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

import eclsr.ops.layers as layers
import eclsr.plugins.encoders._transformer as transformer
from eclsr import Encoder
from eclsr.data.batching import epoch_order
from eclsr.engine import bench
from eclsr.engine.model import Model
from eclsr.engine.setup import set_up_run
from eclsr.recipe.load import load_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "ecl-sr-code" / "ml-1m.toml"


def sdpa_attention(q, k, v, attn_mask, causal, p):  # noqa: ANN001, ANN201
    """What the block ran before lever ``attention``: SDPA, whose CPU math path handles dropout."""
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=p, is_causal=causal
    )


def bool_keep_mask(x, p):  # noqa: ANN001, ANN201
    """The dropout mask as FastDropout built it before lever ``attention``."""
    return (torch.rand_like(x) >= p) * (1.0 / (1.0 - p))


def plain_add_to(self, residual, x):  # noqa: ANN001, ANN201
    """Residual dropout before lever ``addcmul``."""
    return residual + self(x)


class Lever:
    """Swaps one piece of the engine between its old ("before") and current ("after") form."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.float_masks: Any = None  # the open float_dropout_masks() block while "before"
        self.saved = {
            "attention": transformer.attention_with_dropout,
            "keep_mask": layers.keep_mask,
            "encode_at": transformer.TransformerEncoder.encode_at,
            "add_to": layers.FastDropout.add_to,
            "configs": [head.config for head in model.heads],
        }

    def set(self, name: str, before: bool) -> None:
        """Install lever ``name``'s old form (``before``) or its current one."""
        getattr(self, f"_{name}")(before)

    def _attention(self, before: bool) -> None:
        attention = sdpa_attention if before else self.saved["attention"]
        mask = bool_keep_mask if before else self.saved["keep_mask"]
        transformer.attention_with_dropout = attention
        transformer.keep_mask = mask
        layers.keep_mask = mask

    def _encode_at(self, before: bool) -> None:
        transformer.TransformerEncoder.encode_at = (
            Encoder.encode_at if before else self.saved["encode_at"]
        )

    def _masks16(self, before: bool) -> None:
        if before and self.float_masks is None:
            self.float_masks = layers.float_dropout_masks()
            self.float_masks.__enter__()
        elif not before and self.float_masks is not None:
            self.float_masks.__exit__(None, None, None)
            self.float_masks = None

    def _addcmul(self, before: bool) -> None:
        layers.FastDropout.add_to = plain_add_to if before else self.saved["add_to"]

    def _chunk(self, before: bool) -> None:
        for head, config in zip(self.model.heads, self.saved["configs"], strict=True):
            if before and hasattr(config, "chunk_elements"):
                head.config = config.model_copy(update={"chunk_elements": 1 << 24})
            else:
                head.config = config


LEVERS = ("attention", "encode_at", "masks16", "addcmul", "chunk")


def main(lever: str, threads: int, pairs: int) -> None:
    """Time ``pairs`` batches per variant after three warm-up batches; print the medians."""
    names = LEVERS if lever == "all" else (lever,)
    unknown = [name for name in names if name not in LEVERS]
    if unknown:
        sys.exit(f"unknown lever {unknown[0]!r}: choose one of {', '.join(LEVERS)} or all")
    recipe = load_recipe(RECIPE, [f"train.threads={threads}", "train.device=cpu"])
    data = bench.ml1m_shaped(recipe.data.max_len)
    setup = set_up_run(recipe, data)  # the set-up `eclsr run` uses
    loop = bench.TimedSteps(setup)
    full = [rows for rows in epoch_order(setup.windows, recipe.train.batch_size, 0, 0, True)
            if len(rows) == recipe.train.batch_size]  # fmt: skip
    levers = Lever(setup.model)
    variants: dict[str, Callable[[], None]] = {
        "before": lambda: [levers.set(name, True) for name in names],
        "after": lambda: [levers.set(name, False) for name in names],
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rows in full[:3]:
        loop.step(rows)
    for i in range(2 * pairs):
        name = list(variants)[i % 2]
        variants[name]()
        times[name].append(loop.step(full[(3 + i) % len(full)]))
    print(f"lever {lever}, {threads} threads, {pairs} batches per variant")
    for name, seconds in times.items():
        print(f"  {name:6s} median {statistics.median(seconds):.3f} s/batch")
    ratio = statistics.median(times["before"]) / statistics.median(times["after"])
    print(f"  speed-up on the whole step, before / after (median ratio): {ratio:.3f}x")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        args[0] if args else "all",
        int(args[1]) if len(args) > 1 else 2,
        int(args[2]) if len(args) > 2 else 16,
    )
