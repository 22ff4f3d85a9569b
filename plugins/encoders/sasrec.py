"""SASRec: causal self-attention user-behaviour encoder.

Paper: Kang & McAuley, "Self-Attentive Sequential Recommendation" (ICDM 2018), as implemented in
ECL-SR's code (RecBole 1.0.1 ``SASRec``): learned positions, post-LN blocks, GELU FFN,
N(0, 0.02) init, LayerNorm eps 1e-12.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal

from eclsr.api import BuildContext, hookimpl
from eclsr.plugins.encoders._transformer import TransformerEncoder, TransformerEncoderConfig


class SASRecConfig(TransformerEncoderConfig):
    """SASRec: a left-to-right transformer over the item sequence (defaults: Sports/Toys code)."""

    name: Literal["sasrec"] = "sasrec"

    def build(self, ctx: BuildContext) -> SASRec:
        """Build the encoder around the shared item table."""
        return SASRec(self, ctx)


class SASRec(TransformerEncoder):
    """Causal transformer encoder: position t sees items 0..t only.

    Attention uses ``is_causal=True`` and no key-padding mask. Rows are right-padded, so a real
    position t < length only ever attends to keys 0..t, which are all real: padding can never
    leak into a real position's output. Padding positions attend to real items and to earlier
    padding; their outputs are unspecified and ignored downstream.
    """

    causal: ClassVar[bool] = True


@hookimpl
def eclsr_register_encoders(register: Callable[[type], None]) -> None:
    """Register SASRec."""
    register(SASRecConfig)
