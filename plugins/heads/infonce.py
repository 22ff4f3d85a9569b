"""InfoNCE head: L_ICL, invariance of the UBE to an augmentation.

Paper: Zhou et al., "Equivariant Contrastive Learning for Sequential Recommendation", Eq. 12-13
(also CL4SRec / DuoRec-style contrastive objectives). A view's representation is the mean of its
last ``k`` hidden states; similarity is cosine / τ with in-batch negatives: a B-way softmax per
row of view 1 over the columns of view 2, the diagonal being the positive (one-directional, as
in the authors' code; ``symmetric = true`` averages both directions).

Unlike the code (which averages padding states for rows shorter than k), the mean runs over the
last ``min(k, n)`` *real* positions of the right-padded rows.

Views:
    * mild ``view`` (dropout, perturb, normalize): view 1 = the UBE's first pass ``step.hidden``,
      view 2 = ``view(step, step.hidden)``.
    * invasive ``view`` (CL4SRec: crop, reorder, ...): view 2 = the UBE over the augmented batch,
      pooled with its own lengths; view 1 = the original batch, or a second independently
      augmented batch when ``augment_both = true`` (CL4SRec's two augmented views).

Ablations (Fig. 4): ``extra = "pos"`` (ICL-SR+pos) adds the UBE encoding of the generator's
masked-substitution output S'' as a second positive column per row; the loss averages the two
positives' log-likelihoods under one softmax over [B view-2 columns, own S'' column].
``extra = "neg"`` (ICL-SR+neg) appends the B encodings of S'' as extra negative columns.
Both need a ``generator`` head in the recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
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
    hookimpl,
    last_k_positions,
)

if TYPE_CHECKING:
    from eclsr.api import AugmentationSlot


class InfoNCEConfig(HeadConfig):
    """Contrastive invariance loss (InfoNCE) between two views of the batch."""

    name: Literal["infonce"] = "infonce"
    temperature: float = Field(
        0.05, gt=0.0, description="τ: cosine similarities are divided by it."
    )
    view: AugmentationSlot = Field(
        default_factory=lambda: {"name": "dropout"},
        validate_default=True,
        description="Augmentation that makes the second view: mild (acts on hidden states) or "
        "invasive (rewrites the item sequences, then the UBE encodes them).",
    )
    pooling_k: int = Field(
        5, gt=0, description="k: a view is the mean of its last min(k, length) real states."
    )
    extra: Literal["none", "pos", "neg"] = Field(
        "none",
        description="Generator outputs S'' as an extra positive (\"pos\", ICL-SR+pos) or as B "
        'extra negatives ("neg", ICL-SR+neg). Needs a generator head.',
    )
    extra_mask_ratio: float = Field(
        0.2, gt=0.0, lt=1.0, description="γ of the masked substitution used by `extra`."
    )
    symmetric: bool = Field(
        False, description="Average the loss over both directions (the code: one direction)."
    )
    augment_both: bool = Field(
        False,
        description="Make view 1 with the augmentation too (CL4SRec), instead of using the "
        "UBE's pass over the original batch.",
    )

    def needed_services(self) -> tuple[str, ...]:
        """The generator when ``extra`` encodes its outputs (the view's own needs are checked separately)."""
        return ("generator",) if self.extra != "none" else ()

    def build(self, ctx: BuildContext) -> InfoNCEHead:
        """Build the head and its view augmentation."""
        return InfoNCEHead(self, ctx)

    def train_flops(self, shape: StepShape) -> float | None:
        """The second view's pass(es) and the B×B similarity matrix (no formula for extras).

        A dropout view re-encodes the batch with its last layer at the pooled window only; an
        invasive view encodes the augmented batch (and, with ``augment_both``, a second one).
        """
        if self.extra != "none":
            return None
        total = 0.0
        if self.view.name == "dropout":
            window = float(np.minimum(shape.lengths, self.pooling_k).sum())
            total += 3.0 * (shape.encoder.forward_flops(shape.tokens, shape.width, window) or 0.0)
        passes = int(self.view.intensity == "invasive") + int(self.augment_both)
        batch = len(shape.lengths)
        return total + 3.0 * shape.ube_flops() * passes + 6.0 * batch * batch * shape.hidden


class InfoNCEHead(Head):
    """L_ICL with in-batch negatives."""

    def __init__(self, config: InfoNCEConfig, ctx: BuildContext) -> None:
        super().__init__()
        self.config = config
        self.view = config.view.build(ctx)
        self.invasive = config.view.intensity == "invasive"

    def forward(self, step: Step) -> Tensor:
        """InfoNCE between the two pooled views (plus generator extras if configured)."""
        anchor = self._view(step, first=True)  # [B, D]
        positive = self._view(step, first=False)  # [B, D]
        extras: dict[str, Tensor] = {}
        if self.config.extra != "none":
            key = "extra_positive" if self.config.extra == "pos" else "extra_negatives"
            extras[key] = self._generated(step)  # [B, D]
        # Under torchrun the columns (in-batch negatives) are the whole global batch.
        columns, offset = step.gather_rows(positive)  # [ΣB, D]
        loss = info_nce(anchor, columns, self.config.temperature, offset=offset, **extras)
        if self.config.symmetric:
            rows, _ = step.gather_rows(anchor)
            back = info_nce(positive, rows, self.config.temperature, offset=offset, **extras)
            loss = (loss + back) / 2
        return step.global_mean(loss, anchor.size(0))

    def _view(self, step: Step, first: bool) -> Tensor:
        """``[B, D]`` pooled representation of view 1 (``first``) or view 2."""
        batch, k = step.batch, self.config.pooling_k
        if first and not self.config.augment_both:
            return pool_last_k(step.hidden, batch.lengths, k)
        if not self.invasive:
            # Only the pooled window is needed: a view that re-encodes (dropout) then runs its
            # encoder's last block at those positions alone.
            positions, valid = last_k_positions(batch.lengths, k, batch.items.size(1))
            return pool_window(self.view.view_at(step, step.hidden, positions), valid)
        augmented = self.view(step, batch.items, batch.lengths)
        hidden = step.encoder(augmented.items, augmented.lengths)  # [B, T', D]
        return pool_last_k(hidden, augmented.lengths, k)

    def _generated(self, step: Step) -> Tensor:
        """``[B, D]`` UBE encoding of the generator's masked substitution S''."""
        generator: Any = step.services.get("generator")
        if generator is None:
            msg = (
                f'infonce extra = "{self.config.extra}" encodes the generator\'s output, but no '
                'head provides a generator. Add [[heads]] name = "generator" or set extra = "none".'
            )
            raise EclsrError(msg)
        out = generator.generate(step, self.config.extra_mask_ratio)
        lengths = step.batch.lengths
        hidden = step.encoder(out.predictions.detach(), lengths)  # [B, T, D]
        return pool_last_k(hidden, lengths, self.config.pooling_k)


def pool_last_k(hidden: Tensor, lengths: Tensor, k: int) -> Tensor:
    """Mean of the last ``min(k, length)`` real states of each right-padded row.

    Args:
        hidden: ``[B, T, D]`` states; values at padding positions are ignored (even NaN).
        lengths: ``[B]`` real lengths.
        k: window size.

    Returns:
        ``[B, D]`` (zeros for an empty row).
    """
    position = torch.arange(hidden.size(1), device=hidden.device).unsqueeze(0)  # [1, T]
    lengths = lengths.to(hidden.device).unsqueeze(1)  # [B, 1]
    window = (position < lengths) & (position >= lengths - k)  # [B, T]
    return pool_window(hidden, window)


def pool_window(states: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``states [B, K, D]`` over the slots where ``valid [B, K]`` (zeros if none).

    Values in invalid slots are ignored, even NaN. With ``last_k_positions`` this is
    :func:`pool_last_k` on states gathered at the window.
    """
    summed = states.masked_fill(~valid.unsqueeze(-1), 0.0).sum(dim=1)  # [B, D]
    count = valid.sum(dim=1, keepdim=True).clamp(min=1).to(states.dtype)  # [B, 1]
    return summed / count


def info_nce(
    anchor: Tensor,
    positive: Tensor,
    temperature: float,
    extra_negatives: Tensor | None = None,
    extra_positive: Tensor | None = None,
    offset: int = 0,
) -> Tensor:
    """One-directional InfoNCE with in-batch negatives and cosine similarity.

    Row i's logits are ``cos(anchor_i, positive_j) / τ`` for every j (target j = i + offset), followed by
    ``cos(anchor_i, extra_negatives_m) / τ`` for every m, followed by
    ``cos(anchor_i, extra_positive_i) / τ`` when given; with an extra positive the loss of row i
    is the mean of the two positives' negative log-likelihoods under that one softmax.

    Args:
        anchor: ``[B, D]`` view-1 representations (rows).
        positive: ``[C, D]`` view-2 representations (columns; C = B alone, the global batch
            under torchrun, where row i's own column is ``i + offset``).
        temperature: τ.
        extra_negatives: optional ``[M, D]`` extra negative columns shared by all rows.
        extra_positive: optional ``[B, D]`` a second positive per row.
        offset: column of row 0's positive.

    Returns:
        Scalar mean loss.
    """
    a = F.normalize(anchor, dim=-1)
    columns = [a @ F.normalize(positive, dim=-1).t()]  # [B, C]
    if extra_negatives is not None:
        columns.append(a @ F.normalize(extra_negatives, dim=-1).t())  # [B, M]
    if extra_positive is not None:
        columns.append((a * F.normalize(extra_positive, dim=-1)).sum(-1, keepdim=True))  # [B, 1]
    log_prob = F.log_softmax(torch.cat(columns, dim=1).float() / temperature, dim=1)
    rows = torch.arange(anchor.size(0), device=anchor.device)
    log_likelihood = log_prob[rows, rows + offset]  # [B]
    if extra_positive is not None:
        log_likelihood = (log_likelihood + log_prob[:, -1]) / 2
    return -log_likelihood.mean()


@hookimpl
def eclsr_register_heads(register: Callable[[type], None]) -> None:
    """Register the InfoNCE head."""
    register(InfoNCEConfig)
