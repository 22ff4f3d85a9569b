"""Next-item head: L_Rec, cross-entropy of the next item at every real position that has one.

Paper: Zhou et al., "Equivariant Contrastive Learning for Sequential Recommendation" (L_Rec in
Eq. 16); the all-position loss follows the authors' code, without its bug of training padding
positions to predict the padding class. Logits are ``h_t · Eᵀ`` over the full item table.

Speed/accuracy lever: ``sampled_negatives = S`` replaces the full softmax by a sampled softmax
over the target plus ``S`` negatives shared by the whole batch (uniform or popularity-drawn, with
replacement), with the logQ correction: each sampled negative's logit is lowered by
``log(S·q_j)`` (its expected count among the draws) and negatives equal to the row's target
("accidental hits") are dropped, while the target keeps its exact logit. The sum over the
corrected negatives is then an importance-sampling estimate of the partition function over the
other items (Bengio & Senécal 2008), so the loss tends to the full-softmax loss as S grows.
Costs ``O(P·S)`` instead of ``O(P·N)``; expect some loss of full-ranking accuracy at small S.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from eclsr.api import (
    BuildContext,
    EclsrError,
    Head,
    HeadConfig,
    Step,
    StepShape,
    full_softmax_cross_entropy,
    hookimpl,
)


class NextItemConfig(HeadConfig):
    """Next-item cross-entropy at every real position (full softmax by default)."""

    name: Literal["next_item"] = "next_item"
    chunk_elements: int | None = Field(
        None,
        gt=0,
        description="Most logits materialised at once in the full-softmax loss; None = auto "
        "(2 Mi, at least 256 rows, on CPU, where the chunk then stays in cache; 16 Mi on GPU).",
    )
    sampled_negatives: int | None = Field(
        None,
        gt=0,
        description="None: full softmax over all items (the paper). An integer S: sampled "
        "softmax with S negatives shared by the batch and logQ correction (faster, less exact).",
    )
    average_over: Literal["targets", "slots", "epoch"] = Field(
        "targets",
        description="targets: mean over the positions that have a target (the paper). slots: "
        "the same sum divided by B × max_len, the scale of the authors' code, whose loss is a "
        "mean over every slot of the left-padded batch (its padding slots also learn to predict "
        "the padding class; that part is not reproduced). Down-weights L_Rec by about the mean "
        "row length / max_len (~0.11 on Sports) against the other heads. epoch: the sum "
        "divided by B × the epoch's mean targets per row, so every target weighs the same in "
        "every batch: with length-bucketed one-sequence batches, 'targets' weighs a target of a "
        "short-history batch up to ~20× one of a long-history batch; 'epoch' keeps the weights "
        "of random batches and the speed of bucketing (identical to 'targets' for prefixes; "
        "'slots' weighs targets alike too, at L / mean length times smaller a scale).",
    )
    sampler: Literal["uniform", "popularity"] = Field(
        "uniform",
        description="How sampled negatives are drawn: uniformly over items 1..N, or in "
        "proportion to training-interaction counts. Used only with sampled_negatives.",
    )

    def build(self, ctx: BuildContext) -> NextItemHead:
        """Build the head; popularity sampling needs ``ctx.item_counts``."""
        return NextItemHead(self, ctx)

    def train_flops(self, shape: StepShape) -> float:
        """The output projection at every loss target: 6·P·C·D (C = N+1, or S+1 sampled)."""
        columns = shape.num_items + 1
        if self.sampled_negatives is not None:
            columns = self.sampled_negatives + 1
        return 6.0 * shape.targets * columns * shape.hidden


class NextItemHead(Head):
    """L_Rec over the real positions of the batch."""

    log_q: Tensor
    probs: Tensor

    def __init__(self, config: NextItemConfig, ctx: BuildContext) -> None:
        super().__init__()
        self.config = config
        self.max_len = ctx.max_len
        probs = _sampling_probs(config, ctx)  # [N+1], 0 at index 0
        self.register_buffer("probs", probs, persistent=False)
        expected = probs * (config.sampled_negatives or 1)
        self.register_buffer("log_q", expected.clamp(min=1e-30).log(), persistent=False)

    def forward(self, step: Step) -> Tensor:
        """Mean cross-entropy over real positions predicting ``step.batch.targets``.

        Positions whose target is 0 carry no loss: padding, and in prefix examples every position
        but a row's last (``train.examples.mode = "prefixes"``).
        """
        mask = step.batch.mask & (step.batch.targets > 0)  # [B, T]
        hidden = step.hidden[mask]  # [P, D]
        targets = step.batch.targets[mask]  # [P]
        if self.config.sampled_negatives is None:
            loss = full_softmax_cross_entropy(
                hidden, step.item_weights, targets, self.config.chunk_elements
            )
        else:
            negatives = self._draw_negatives(step.generator, self.config.sampled_negatives)
            loss = sampled_softmax_cross_entropy(
                hidden, step.item_weights, targets, negatives.to(hidden.device), self.log_q
            )
        if self.config.average_over == "slots":  # sum / (B × L), as a left-padded batch
            return step.epoch_mean(loss, targets.numel(), self.max_len)
        if self.config.average_over == "epoch":
            return step.epoch_mean(loss, targets.numel(), step.targets_per_row)
        return step.global_mean(loss, targets.numel())

    def _draw_negatives(self, generator: torch.Generator, count: int) -> Tensor:
        """``[S]`` negative ids in 1..N, drawn with replacement from ``self.probs``."""
        if self.config.sampler == "uniform":
            high = self.probs.numel()  # N+1
            return torch.randint(1, high, (count,), generator=generator, device=generator.device)
        probs = self.probs.to(generator.device)
        return torch.multinomial(probs, count, replacement=True, generator=generator)


def sampled_softmax_cross_entropy(
    hidden: Tensor, weight: Tensor, targets: Tensor, negatives: Tensor, log_q: Tensor
) -> Tensor:
    """Sampled-softmax CE: logQ-corrected negatives, exact target logit, accidental hits dropped.

    Args:
        hidden: ``[P, D]`` states at real positions.
        weight: ``[V, D]`` output rows (item table).
        targets: ``[P]`` target ids.
        negatives: ``[S]`` negative ids shared by all rows.
        log_q: ``[V]`` log expected count of each id among the S draws (``log(S·q)``).

    Returns:
        Scalar mean loss.
    """
    positive = (hidden * weight[targets]).sum(-1, keepdim=True)  # [P, 1]
    negative = hidden @ weight[negatives].t() - log_q[negatives]  # [P, S]
    hits = negatives.unsqueeze(0) == targets.unsqueeze(1)  # [P, S]
    negative = negative.masked_fill(hits, torch.finfo(negative.dtype).min)
    logits = torch.cat([positive, negative], dim=1)  # [P, 1+S]
    zeros = torch.zeros(targets.size(0), dtype=torch.long, device=targets.device)
    return F.cross_entropy(logits.float(), zeros)


def _sampling_probs(config: NextItemConfig, ctx: BuildContext) -> Tensor:
    """``[N+1]`` sampling distribution over ids (index 0, padding, has probability 0)."""
    n = ctx.num_items
    if config.sampler == "uniform" or config.sampled_negatives is None:
        probs = torch.full((n + 1,), 1.0 / max(n, 1))
    else:
        counts = ctx.item_counts.detach().float().cpu()
        if counts.numel() != n + 1 or counts[1:].sum() <= 0:
            msg = (
                f'next_item sampler = "popularity" needs training-interaction counts for the '
                f'{n} items (got {counts.numel()} entries). Use sampler = "uniform" or build '
                "with BuildContext.item_counts set."
            )
            raise EclsrError(msg)
        probs = counts.clamp(min=1.0)  # unseen items keep a small chance
        probs = probs / probs[1:].sum()
    probs[0] = 0.0
    return probs


@hookimpl
def eclsr_register_heads(register: Callable[[type], None]) -> None:
    """Register the next-item head."""
    register(NextItemConfig)
