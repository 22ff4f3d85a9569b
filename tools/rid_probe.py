"""Does the RID discriminator learn? Its loss per block of training batches, beside the best
constant prediction for the same batches (results/protocol-grid/README.md, "Why the RID loss
stays near ln 2").

Usage: python tools/rid_probe.py [--block N] -- BENCH_ARGS...

BENCH_ARGS are those of ``eclsr bench`` (give ``--in-process`` so that the probe sees the
training step), e.g.::

    python tools/rid_probe.py -- bench recipes/ecl-sr-code/sports.toml --in-process \
        --max-batches 800 --warmup 1 --no-eval --set train.threads=1 \
        --set train.examples.mode=prefixes --set 'heads[1].weight=0.3' \
        --set 'heads[3].offset_scale=embedding'

Every call of the RID head's BCE is recorded: the batch's loss and its share of replaced
positions. A constant prediction q scores ``BCE(q, rate)`` on a batch; the best single q over a
block is what a discriminator that learned only the replaced rate would reach. A measurement, not
a test.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import numpy as np
import torch.nn.functional as F  # noqa: N812
from torch import Tensor


def record_rid_batches(
    losses: list[float], rates: list[float]
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """A wrapper for the RID head's BCE that appends each batch's loss and replaced rate."""

    def wrap(bce: Callable[..., Tensor]) -> Callable[..., Tensor]:
        def recorded(logits: Tensor, labels: Tensor, *args: object, **kwargs: object) -> Tensor:
            loss = bce(logits, labels, *args, **kwargs)
            losses.append(float(loss.detach()))
            rates.append(float(labels.float().mean()))
            return loss

        return recorded

    return wrap


class RIDFunctional:
    """``torch.nn.functional`` as the RID module sees it, with its BCE recorded (only there)."""

    def __init__(self, recorded_bce: Callable[..., Tensor]) -> None:
        self.binary_cross_entropy_with_logits = recorded_bce

    def __getattr__(self, name: str) -> object:
        return getattr(F, name)


def best_constant_loss(rates: np.ndarray) -> float:
    """Mean per-batch BCE of the best single constant prediction for batches with ``rates``."""
    grid = np.linspace(0.005, 0.995, 199)[:, None]  # [Q, 1]
    bce = -(rates * np.log(grid) + (1 - rates) * np.log(1 - grid))  # [Q, batches]
    return float(bce.mean(axis=1).min())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", type=int, default=200, help="batches per printed line")
    parser.add_argument("bench", nargs=argparse.REMAINDER, help="-- then eclsr bench arguments")
    args = parser.parse_args(argv)
    bench_args = args.bench[1:] if args.bench[:1] == ["--"] else args.bench

    import eclsr.plugins.heads.rid as rid
    from eclsr.cli.main import main as eclsr_main

    losses: list[float] = []
    rates: list[float] = []
    rid.F = RIDFunctional(record_rid_batches(losses, rates)(F.binary_cross_entropy_with_logits))
    try:
        code = eclsr_main(bench_args)
    finally:
        rid.F = F  # a caller in the same process (a test) gets the module back as it was
    if not losses:
        print("no RID batch was seen: give a recipe with a rid head and --in-process")
        return 2
    loss, rate = np.array(losses), np.array(rates)
    print(f"{len(loss)} batches; replaced share per batch {rate.mean():.3f}")
    for start in range(0, len(loss), args.block):
        block = slice(start, start + args.block)
        print(
            f"batches {start}-{min(start + args.block, len(loss))}: RID loss "
            f"{loss[block].mean():.3f}, best constant {best_constant_loss(rate[block]):.3f}"
        )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
