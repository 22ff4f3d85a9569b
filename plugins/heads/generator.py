"""Generator head: BERT4Rec masked-item prediction (L_Gen).

Paper: Zhou et al., "Equivariant Contrastive Learning for Sequential Recommendation", Eq. 14.
A fraction γ of the real positions is replaced by [MASK] (id N+1) and a bidirectional encoder
with its own transformer and position embeddings (it shares only the item table E with the UBE)
predicts the original item there. The head also publishes itself as the ``"generator"`` service:
:meth:`GeneratorHead.generate` is what the masked-substitution augmentation fills S'' from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from eclsr.api import (
    BuildContext,
    Head,
    HeadConfig,
    Step,
    StepShape,
    best_items,
    full_softmax_cross_entropy,
    hookimpl,
    real_mask,
    selected_positions,
)

if TYPE_CHECKING:
    from eclsr.api import EncoderSlot


class GeneratorConfig(HeadConfig):
    """BERT4Rec-style masked-item prediction; provides the ``generator`` service."""

    name: Literal["generator"] = "generator"
    provides_services = ("generator",)
    encoder: EncoderSlot = Field(
        default_factory=lambda: {"name": "bert4rec"},
        validate_default=True,
        description="The generator's encoder (bidirectional). It shares only the item table "
        "with the UBE; its transformer and position embeddings are its own.",
    )
    mask_ratio: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="γ: probability that each real position is masked (at least one per row).",
    )
    chunk_elements: int | None = Field(
        None,
        gt=0,
        description="Most logits materialised at once in the full-softmax loss; None = auto "
        "(2 Mi, at least 256 rows, on CPU, where the chunk then stays in cache; 16 Mi on GPU).",
    )
    mask_strategy: Literal["bernoulli", "count"] = Field(
        "bernoulli",
        description="bernoulli: each real position masked with probability γ, at least one per "
        "row (the authors' 'prob', Toys/Yelp). count: exactly int(γ·n + 1) positions of a row of "
        "n items, drawn uniformly without replacement, never the oldest item (the authors' "
        "'sample', Sports/ML-1m; a one-item row masks its item). Applies to every pass of this "
        "generator, including the masked substitution's.",
    )

    average_over: Literal["masked", "epoch"] = Field(
        "masked",
        description="masked: mean CE over the batch's masked positions (paper and code). epoch: "
        "the sum divided by B × γ × the epoch's mean positions per row, so a masked position "
        "weighs the same in every length-bucketed batch, as with random batches (see the "
        "next_item head's average_over).",
    )

    def build(self, ctx: BuildContext) -> GeneratorHead:
        """Build the head and publish it as ``ctx.services["generator"]``."""
        head = GeneratorHead(self, ctx)
        ctx.services["generator"] = head
        return head

    def train_flops(self, shape: StepShape) -> float | None:
        """Its pass (3×; the last layer at the masked positions only) and its loss, 6·M·V·D."""
        masked = expected_masked(shape.lengths, self.mask_ratio, self.mask_strategy)
        forward = self.encoder.forward_flops(shape.tokens, shape.width, masked)
        if forward is None:
            return None
        return 3.0 * forward + 6.0 * masked * (shape.num_items + 1) * shape.hidden

    def fill_flops(self, shape: StepShape, mask_ratio: float) -> float:
        """A no-gradient pass at ``mask_ratio`` plus the argmax that fills S'' (2·M·N·D)."""
        masked = expected_masked(shape.lengths, mask_ratio, self.mask_strategy)
        forward = self.encoder.forward_flops(shape.tokens, shape.width, masked) or 0.0
        return forward + 2.0 * masked * shape.num_items * shape.hidden


@dataclass
class GeneratorOutput:
    """One generator pass over a batch.

    Attributes:
        masked: ``[B, T]`` bool, True where the input was replaced by [MASK].
        masked_items: ``[B, T]`` the generator's input (items with [MASK] at masked positions).
        states: ``[M, D]`` generator states at the masked positions, row-major order
            (``items[masked]`` order); with gradient unless the generator is frozen.
        targets: ``[M]`` original items at the masked positions.
        items: ``[B, T]`` the original sequences.
        predict: computes ``[M]`` argmax items (1..N) from ``states`` when nobody offered them.
    """

    masked: Tensor
    masked_items: Tensor
    states: Tensor
    targets: Tensor
    items: Tensor
    predict: Callable[[Tensor], Tensor]
    _best: Tensor | None = field(default=None, repr=False)
    _predictions: Tensor | None = field(default=None, repr=False)

    def offer_best(self, best: Tensor) -> None:
        """Hand over the argmax the generator loss read from its logits (saves a matmul)."""
        if self._best is None:
            self._best = best.detach()

    @property
    def predictions(self) -> Tensor:
        """``[B, T]`` argmax item (in 1..N) at masked positions, the original item elsewhere.

        Padding stays 0; carries no gradient. Computed on first use: from the generator loss's
        argmax when it ran first (the usual recipe order), else by scoring ``states``.
        """
        if self._predictions is None:
            with torch.no_grad():
                best = self._best if self._best is not None else self.predict(self.states)
                predictions = self.items.clone()
                predictions[self.masked] = best
            self._predictions = predictions
        return self._predictions


class GeneratorHead(Head):
    """Masked-item prediction with its own encoder; the ``generator`` service."""

    def __init__(self, config: GeneratorConfig, ctx: BuildContext) -> None:
        super().__init__()
        self.config = config
        self.encoder = config.encoder.build(ctx)

    def forward(self, step: Step) -> Tensor | dict[str, Tensor]:
        """Mean CE over masked positions predicting the original item (not called when frozen)."""
        out = self.generate(step, self.config.mask_ratio)
        loss, best = full_softmax_cross_entropy(
            out.states,
            step.item_weights,
            out.targets,
            self.config.chunk_elements,
            return_argmax=True,
        )
        out.offer_best(best)  # the masked substitution then fills S'' without another matmul
        if self.config.average_over == "epoch":
            positions = step.positions_per_row
            per_row = None if positions is None else positions * self.config.mask_ratio
            return step.epoch_mean(loss, out.targets.numel(), per_row)
        return step.global_mean(loss, out.targets.numel())

    def generate(
        self,
        step: Step,
        mask_ratio: float,
        items: Tensor | None = None,
        lengths: Tensor | None = None,
    ) -> GeneratorOutput:
        """Mask, encode and fill a batch (memoised per step for ``step.batch``).

        Args:
            step: the training step; randomness comes from ``step.generator``.
            mask_ratio: γ, probability that each real position is masked.
            items: ``[B, T]`` sequences to fill; default ``step.batch.items``.
            lengths: ``[B]`` their lengths; default ``step.batch.lengths``.

        Returns:
            The :class:`GeneratorOutput`. Computed under ``torch.no_grad()`` when
            ``step.is_frozen("generator")``.
        """
        if items is None or items is step.batch.items:
            key = ("generator", float(mask_ratio))
            return step.memo(
                key, lambda: self._generate(step, mask_ratio, step.batch.items, step.batch.lengths)
            )
        assert lengths is not None, "generate(items=...) needs lengths too"
        return self._generate(step, mask_ratio, items, lengths)

    def _generate(
        self, step: Step, mask_ratio: float, items: Tensor, lengths: Tensor
    ) -> GeneratorOutput:
        frozen = torch.no_grad() if step.is_frozen(self.config.name) else contextlib.nullcontext()
        with frozen:
            draw = draw_mask if self.config.mask_strategy == "bernoulli" else draw_count_mask
            masked = draw(step.generator, lengths, items.size(1), mask_ratio)  # [B, T]
            masked_items = items.masked_fill(masked, step.mask_token)  # [B, T]
            # Only the masked positions are scored, so the encoder's last block runs there only.
            positions, valid = selected_positions(masked)  # [B, K]
            states = self.encoder.encode_at(masked_items, lengths, positions)[valid]  # [M, D]
        return GeneratorOutput(
            masked,
            masked_items,
            states,
            items[masked],
            items,
            predict=lambda s: best_items(s, step.item_weights, self.config.chunk_elements),
        )


def draw_mask(generator: torch.Generator, lengths: Tensor, width: int, ratio: float) -> Tensor:
    """``[B, T]`` bool: each real position masked with probability ``ratio``.

    Every non-empty row gets at least one masked position (a uniformly drawn real one when the
    Bernoulli draws masked none), so each row contributes to the loss and to S''.
    """
    device = lengths.device
    real = real_mask(lengths, width)  # [B, T]
    draws = torch.rand(real.shape, generator=generator, device=generator.device).to(device)
    masked = (draws < ratio) & real  # [B, T]
    pick = torch.rand(lengths.shape, generator=generator, device=generator.device).to(device)
    position = (pick * lengths).long().clamp(min=0, max=width - 1)  # [B]
    need = ~masked.any(dim=1) & (lengths > 0)  # [B]
    forced = torch.zeros_like(masked).scatter_(1, position.unsqueeze(1), need.unsqueeze(1))
    return masked | forced


def expected_masked(lengths: np.ndarray, ratio: float, strategy: str = "bernoulli") -> float:
    """E[masked positions] of a batch of ``lengths``.

    ``bernoulli`` (:func:`draw_mask`): γ per real position, plus one forced where a row drew
    none. ``count`` (:func:`draw_count_mask`): ``int(γ·n + 1)`` per row, at most ``n - 1``.
    """
    n = lengths.astype(np.float64)
    if strategy == "count":
        return float(np.minimum(np.floor(ratio * n + 1), np.maximum(n - 1, 1)).sum())
    return float((ratio * n + (1.0 - ratio) ** n * (n > 0)).sum())


def draw_count_mask(
    generator: torch.Generator, lengths: Tensor, width: int, ratio: float
) -> Tensor:
    """``[B, T]`` bool: ``int(ratio·n + 1)`` real positions of each row, never position 0.

    The count is capped at the ``n - 1`` eligible positions (rows of one item mask that item, so
    every row still has a target). Positions are uniform without replacement: the ``count``
    eligible slots with the smallest random keys.
    """
    device = lengths.device
    slots = torch.arange(width, device=device).unsqueeze(0)  # [1, T]
    eligible = (slots >= 1) & (slots < lengths.unsqueeze(1))  # [B, T]
    single = (lengths == 1).unsqueeze(1) & (slots == 0)  # [B, T]: one-item rows
    eligible = eligible | single
    count = torch.floor(ratio * lengths.double() + 1).long()  # [B]
    count = torch.minimum(count, eligible.sum(dim=1))
    keys = torch.rand((lengths.size(0), width), generator=generator, device=generator.device)
    keys = keys.to(device).masked_fill(~eligible, 2.0)  # ineligible slots sort last
    rank = keys.argsort(dim=1).argsort(dim=1)  # [B, T] rank of each slot's key in its row
    return (rank < count.unsqueeze(1)) & eligible


@hookimpl
def eclsr_register_heads(register: Callable[[type], None]) -> None:
    """Register the generator head."""
    register(GeneratorConfig)
