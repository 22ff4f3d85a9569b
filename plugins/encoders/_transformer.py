"""Shared pieces of the transformer encoders (SASRec, BERT4Rec); not a plugin itself.

The block follows the RecBole ``TransformerLayer`` that ECL-SR's code uses (Kang & McAuley 2018,
Sun et al. 2019): post-LayerNorm, ``x = LN(x + Dropout(MHA(x)))``, ``x = LN(x + Dropout(FFN(x)))``
with ``FFN = Linear(D, inner) → GELU → Linear(inner, D)``, and N(0, 0.02) initialisation.
The leading underscore keeps the plugin manager from walking this module as a plugin.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F  # noqa: N812
from pydantic import Field, model_validator
from torch import Tensor, nn

from eclsr.api import (
    BuildContext,
    EclsrError,
    Encoder,
    EncoderConfig,
    FastDropout,
    gather_positions,
    keep_mask,
    real_mask,
)


def divisibility_message(hidden: int, heads: int) -> str:
    """Explain that ``hidden`` must be a multiple of ``heads``."""
    nearest = max(heads, round(hidden / heads) * heads)
    return (
        f"hidden ({hidden}) must be divisible by heads ({heads}) so every attention head gets "
        f"hidden/heads dimensions: set hidden to a multiple of {heads} (e.g. {nearest}) or change heads."
    )


class TransformerEncoderConfig(EncoderConfig):
    """Fields shared by the transformer encoders (subclasses add ``name`` and their defaults)."""

    layers: int = Field(2, ge=1, description="Number of transformer blocks.")
    heads: int = Field(2, ge=1, description="Attention heads per block; must divide hidden.")
    inner_size: int = Field(
        256, gt=0, description="Width of the feed-forward layer inside a block."
    )
    dropout: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="Hidden dropout: on the input embeddings and each residual.",
    )
    attn_dropout: float = Field(
        0.5, ge=0.0, lt=1.0, description="Dropout on the attention probabilities."
    )
    layer_norm_eps: float = Field(1e-12, gt=0.0, description="LayerNorm epsilon.")
    positions: Literal["from_start", "from_end"] = Field(
        "from_start",
        description=(
            "Which position embedding each item gets. 'from_start': item t (0 = oldest) gets "
            "position t. 'from_end': item t of a row of n items gets max_len - n + t, so the "
            "newest item is always position max_len - 1, as in the authors' left-padded code."
        ),
    )

    @model_validator(mode="after")
    def _hidden_divisible_by_heads(self) -> TransformerEncoderConfig:
        if self.hidden is not None and self.hidden % self.heads != 0:
            raise ValueError(divisibility_message(self.hidden, self.heads))
        return self

    def forward_flops(self, tokens: float, width: int, queries: float | None = None) -> float:
        """Forward FLOPs over ``tokens`` real tokens in rows of ``width``.

        Per token and layer: 2·(4·D² + 2·D·inner) for the QKV, output and FFN matmuls, plus
        4·width·D for QKᵀ and AV (dense over the batch width). With ``queries`` (the states
        ``encode_at`` asks for), the last layer runs its keys and values (2·2·D²) at every token
        but the rest, 2·(2·D² + 2·D·inner) + 4·width·D, at those queries only.
        """
        d, inner = self.hidden_size(), self.inner_size
        per_query = 2.0 * (2 * d * d + 2 * d * inner) + 4.0 * width * d
        per_token = 2.0 * (2 * d * d) + per_query
        last = tokens * 2.0 * (2 * d * d) + (tokens if queries is None else queries) * per_query
        return tokens * (self.layers - 1) * per_token + last


class TransformerBlock(nn.Module):
    """One post-LN transformer block with a fused QKV projection."""

    def __init__(self, hidden: int, config: TransformerEncoderConfig) -> None:
        """Build the block for hidden size ``hidden``."""
        super().__init__()
        self.heads = config.heads
        self.attn_dropout = config.attn_dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm1 = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, config.inner_size), nn.GELU(), nn.Linear(config.inner_size, hidden)
        )
        self.norm2 = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = FastDropout(config.dropout)

    def forward(
        self, x: Tensor, attn_mask: Tensor | None, causal: bool, queries: Tensor | None = None
    ) -> Tensor:
        """``[B, T, D]`` → ``[B, T, D]``, or ``[B, K, D]`` at ``queries`` only.

        Args:
            x: ``[B, T, D]`` block input.
            attn_mask: boolean ``[B, 1, 1, T]`` key mask (True = attend), or None.
            causal: position t attends to keys ≤ t only.
            queries: optional ``[B, K]`` positions: compute the block's output only there. Keys
                and values still come from every position, so the result equals the full
                block's output at those positions (up to dropout draws) at a fraction of the
                cost (used for the last block when only some states are needed).
        """
        picked = None if queries is None else gather_positions(x, queries)  # [B, K, D]
        attended = self.attention(x, attn_mask, causal, queries, picked)  # [B, T|K, D]
        x = self.norm1(self.dropout.add_to(x if picked is None else picked, attended))
        return self.norm2(self.dropout.add_to(x, self.ffn(x)))

    def attention(
        self,
        x: Tensor,
        attn_mask: Tensor | None,
        causal: bool,
        queries: Tensor | None = None,
        picked: Tensor | None = None,
    ) -> Tensor:
        """Multi-head scaled dot-product attention, ``[B, T, D]`` → ``[B, T|K, D]``.

        With ``queries``, ``picked`` may hold ``x`` at those positions if the caller gathered it.
        """
        batch, width, hidden = x.shape
        split = (self.heads, hidden // self.heads)
        if queries is None:
            qkv = self.qkv(x).view(batch, width, 3, *split)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 × [B, H, T, D/H]
        else:
            # Queries from the selected rows only; keys and values from every position.
            w, b = self.qkv.weight, self.qkv.bias
            if picked is None:
                picked = gather_positions(x, queries)  # [B, K, D]
            q = F.linear(picked, w[:hidden], b[:hidden]).view(batch, queries.size(1), *split)
            q = q.transpose(1, 2)  # [B, H, K, D/H]
            kv = F.linear(x, w[hidden:], b[hidden:]).view(batch, width, 2, *split)
            k, v = kv.permute(2, 0, 3, 1, 4)  # 2 × [B, H, T, D/H]
            attn_mask = query_key_mask(attn_mask, causal, queries, width)  # [B, 1, K, T]
            causal = False  # now carried by the mask
        p = self.attn_dropout if self.training else 0.0
        if p > 0.0 and x.device.type == "cpu":
            y = attention_with_dropout(q, k, v, attn_mask, causal, p)  # [B, H, T|K, D/H]
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=p, is_causal=causal
            )  # [B, H, T|K, D/H]
        return self.proj(y.transpose(1, 2).reshape(batch, q.size(2), hidden))  # [B, T|K, D]


def query_key_mask(attn_mask: Tensor | None, causal: bool, queries: Tensor, width: int) -> Tensor:
    """Boolean ``[B, 1, K, T]``: which keys the query at ``queries[b, k]`` may attend to."""
    keys = torch.arange(width, device=queries.device)  # [T]
    if causal:
        allowed = keys.view(1, 1, -1) <= queries.unsqueeze(-1)  # [B, K, T]
    else:
        allowed = torch.ones(
            (*queries.shape, width), dtype=torch.bool, device=queries.device
        )  # [B, K, T]
    allowed = allowed.unsqueeze(1)  # [B, 1, K, T]
    return allowed if attn_mask is None else allowed & attn_mask


def attention_with_dropout(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, causal: bool, p: float
) -> Tensor:
    """Softmax attention with dropout ``p`` on the probabilities, ``[B, H, Tq, d]`` → same.

    Keys and values are ``[B, H, T, d]``; ``attn_mask`` is boolean and broadcasts to
    ``[B, 1, Tq, T]`` (True = attend); ``causal`` needs ``Tq == T``.

    Why not SDPA: on CPU, ``scaled_dot_product_attention`` with ``dropout_p > 0`` takes its math
    path, which draws the mask with ``bernoulli_``, clones per head and checks the mask with
    ``all``; this version (one ``baddbmm`` with an additive mask, a ``rand_like`` mask as in
    :class:`~eclsr.ops.layers.FastDropout`) measured about 1.4x faster forward + backward at the
    ML-1m code shape (B 256, H 2, T 50, d 32). Same distribution, same global generator.
    """
    batch, heads, rows, head_dim = q.shape
    width = k.size(2)
    bias = additive_mask(attn_mask, causal, rows, width, q.dtype, q.device)
    bias = bias.expand(batch, heads, rows, width).reshape(batch * heads, rows, width)
    scores = torch.baddbmm(
        bias,
        q.reshape(batch * heads, rows, head_dim),
        k.reshape(batch * heads, width, head_dim).transpose(1, 2),
        alpha=head_dim**-0.5,
    )  # [B·H, Tq, T]
    probs = torch.softmax(scores, dim=-1)
    probs = probs * keep_mask(probs, p)
    y = torch.bmm(probs, v.reshape(batch * heads, width, v.size(-1)))  # [B·H, Tq, d]
    return y.view(batch, heads, rows, v.size(-1))


def additive_mask(
    attn_mask: Tensor | None,
    causal: bool,
    rows: int,
    width: int,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """0 where a query may attend, −inf elsewhere: ``[Tq, T]``, or broadcast with ``attn_mask``."""
    blocked = torch.zeros(rows, width, dtype=torch.bool, device=device)
    if causal:
        blocked = blocked | torch.ones_like(blocked).triu(1)
    if attn_mask is not None:
        blocked = blocked | ~attn_mask  # → [B, 1, Tq, T]
    return torch.zeros(blocked.shape, dtype=dtype, device=device).masked_fill_(
        blocked, float("-inf")
    )


class TransformerEncoder(Encoder):
    """Item + learned position embeddings, LayerNorm, dropout, then transformer blocks.

    Subclasses set ``causal``: True for a left-to-right model (SASRec), False for a
    bidirectional one that masks padding keys instead (BERT4Rec).
    """

    causal: ClassVar[bool] = True

    def __init__(self, config: TransformerEncoderConfig, ctx: BuildContext) -> None:
        """Build the encoder around the shared item table ``ctx.item_embedding``."""
        super().__init__()
        hidden = config.hidden_size(ctx.hidden_size)
        if hidden % config.heads != 0:
            raise EclsrError(divisibility_message(hidden, config.heads))
        self.hidden_size = hidden
        self.max_len = ctx.max_len
        self.share_item_table(ctx.item_embedding)  # not a submodule: apply() below skips it
        self.position_embedding = nn.Embedding(ctx.max_len, hidden)
        self.positions = config.positions
        self.norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = FastDropout(config.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(hidden, config) for _ in range(config.layers))
        self.apply(init_weights)

    def forward(self, items: Tensor, lengths: Tensor, input_offset: Tensor | None = None) -> Tensor:
        """Encode right-padded ``items`` ``[B, T]`` (T <= max_len) → ``[B, T, D]``."""
        return self._encode(items, lengths, input_offset, None)

    def encode_at(
        self,
        items: Tensor,
        lengths: Tensor,
        positions: Tensor,
        input_offset: Tensor | None = None,
    ) -> Tensor:
        """``[B, K, D]`` states at ``positions [B, K]``: the last block runs only those queries.

        Every earlier block still runs at every position (later keys need them), so the saving
        is most of the last block: with pooling over the last 20 of 50 positions, or the
        generator's ~20% masked positions, about half of one block of the pass.
        """
        return self._encode(items, lengths, input_offset, positions)

    def _encode(
        self,
        items: Tensor,
        lengths: Tensor,
        input_offset: Tensor | None,
        positions: Tensor | None,
    ) -> Tensor:
        width = items.size(1)
        check_width(width, self.max_len)
        x = self.item_embedding(items)  # [B, T, D]
        if input_offset is not None:
            x = x + input_offset  # [B, T, D]
        lengths = lengths.to(items.device)
        steps = position_ids(self.positions, lengths, width, self.max_len)  # [T] or [B, T]
        x = self.dropout(self.norm(x + self.position_embedding(steps)))  # [B, T, D]
        attn_mask = None if self.causal else key_padding_mask(lengths, width)  # [B, 1, 1, T]
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            queries = positions if index == last else None
            x = block(x, attn_mask, self.causal, queries)  # [B, T, D]; last: [B, K, D]
        return x


def position_ids(
    scheme: Literal["from_start", "from_end"], lengths: Tensor, width: int, max_len: int
) -> Tensor:
    """Position-embedding index of every slot of right-padded rows.

    Args:
        scheme: ``"from_start"`` (slot t → t) or ``"from_end"`` (slot t of a row of n real
            items → ``max_len - n + t``: what a row left-padded to ``max_len`` would use).
        lengths: ``[B]`` real lengths (``<= max_len``).
        width: T, the batch width (``<= max_len``).
        max_len: rows of the position table.

    Returns:
        ``[T]`` for ``from_start`` (broadcast over the batch, so the default path is unchanged),
        ``[B, T]`` for ``from_end``. Padding slots (t >= n) get index ``max_len - 1``: any valid
        index would do, since no real position ever reads a padding slot.
    """
    steps = torch.arange(width, device=lengths.device)  # [T], 0 = oldest item
    if scheme == "from_start":
        return steps
    shift = (max_len - lengths).unsqueeze(1)  # [B, 1]
    return (steps.unsqueeze(0) + shift).clamp(max=max_len - 1)  # [B, T]


def key_padding_mask(lengths: Tensor, width: int) -> Tensor:
    """Boolean ``[B, 1, 1, T]``, True where a key is a real item.

    Key 0 is always allowed, so a row of length 0 still has one key and gives no NaN; for any
    row with at least one item key 0 is real anyway.
    """
    mask = real_mask(lengths, width)  # [B, T]
    mask[:, 0] = True
    return mask[:, None, None, :]


def check_width(width: int, max_len: int) -> None:
    """Raise if a batch is wider than the position table."""
    if width > max_len:
        msg = (
            f"a batch of {width} positions is longer than the encoder's max_len ({max_len}): "
            f"trim sequences to data.max_len or build the encoder with a larger max_len."
        )
        raise EclsrError(msg)


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for Linear and Embedding weights, zero biases, LayerNorm weight 1 bias 0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
