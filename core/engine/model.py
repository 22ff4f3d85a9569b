"""Model assembly: a shared item table, the UBE and weighted heads, all built from a recipe."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from eclsr.components.configs import BuildContext, HeadConfig
from eclsr.components.runtime import Encoder
from eclsr.components.step import Step
from eclsr.errors import EclsrError, RecipeError

INIT_STD = 0.02


class Model(nn.Module):
    """An encoder (the UBE) plus heads; the next-item loss is a head like any other.

    Attributes:
        item_embedding: ``[N+2, D]`` table shared by every module (0 = padding, N+1 = [MASK]).
        encoder: the UBE; ranking uses only it.
        heads: the objectives, in recipe order.
        head_names: unique loss names (a repeated head name gets a ``_2`` suffix).
    """

    def __init__(self, recipe: Any, num_items: int, item_counts: Tensor) -> None:
        super().__init__()
        self.num_items = num_items
        self.register_buffer("item_counts", item_counts.float(), persistent=False)
        hidden = recipe.encoder.hidden_size()
        self.item_embedding = nn.Embedding(num_items + 2, hidden, padding_idx=0)
        ctx = BuildContext(
            num_items=num_items,
            max_len=recipe.data.max_len,
            item_embedding=self.item_embedding,
            hidden_size=hidden,
            item_counts=item_counts,
        )
        self.encoder: Encoder = build_at("encoder", recipe.encoder, ctx)
        ctx.encoder = self.encoder
        self.head_configs: list[HeadConfig] = list(recipe.heads)
        self.heads = nn.ModuleList(
            build_at(f"heads[{i}]", config, ctx) for i, config in enumerate(self.head_configs)
        )
        self.head_names = unique_names([config.name for config in self.head_configs])
        self.services: dict[str, nn.Module] = (
            ctx.services
        )  # plain dict: already registered as heads
        self.reset_item_embedding()

    def reset_item_embedding(self) -> None:
        """N(0, 0.02) init with a zero padding row (padding_idx keeps it from being updated)."""
        nn.init.normal_(self.item_embedding.weight, std=INIT_STD)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def forward(
        self, step: Step, dropped: frozenset[str] = frozenset()
    ) -> dict[str, tuple[float, Tensor]]:
        """The losses of one step (see :meth:`losses`); the entry point DDP wraps."""
        return self.losses(step, dropped)

    def losses(
        self, step: Step, dropped: frozenset[str] = frozenset()
    ) -> dict[str, tuple[float, Tensor]]:
        """Every active head's loss as ``name → (weight, unweighted loss)``.

        Heads with weight 0, heads whose registered name is in ``dropped`` (the second stage of
        a two-stage schedule) and frozen heads (``step.frozen``) are skipped without running.
        """
        out: dict[str, tuple[float, Tensor]] = {}
        for name, config, head in zip(self.head_names, self.head_configs, self.heads, strict=True):
            if config.weight == 0 or config.name in dropped or step.is_frozen(config.name):
                continue
            result = head(step)
            named = (
                {f"{name}.{key}": value for key, value in result.items()}
                if isinstance(result, dict)
                else {name: result}
            )
            out.update(
                {key: (config.weight, scalar_loss(key, value)) for key, value in named.items()}
            )
        return out


def scalar_loss(name: str, value: Tensor) -> Tensor:
    """``value`` as a 0-d tensor: heads may return ``[]`` or ``[1]`` (a distributed mean)."""
    if not isinstance(value, Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        msg = (
            f"head loss {name!r} must be one number (a scalar tensor), got {shape}: reduce it "
            "(e.g. .mean()) in the head's forward, or return a dict of named scalars."
        )
        raise EclsrError(msg)
    return value.reshape(())


def build_at(location: str, config: Any, ctx: BuildContext) -> Any:
    """``config.build(ctx)``; a problem it raises is reported at the component's recipe location.

    Components check what depends on the build context (sizes against the shared item table,
    counts against N) in ``build`` and raise :class:`EclsrError` or ``ValueError``;
    :func:`check_build` runs every build at ``eclsr validate`` time.
    """
    try:
        return config.build(ctx)
    except (EclsrError, ValueError) as exc:
        problem = f"{location} ({config.name}): {exc}"
        header = "1 problem when building the recipe's components"
        raise RecipeError(f"{header}:\n  - {problem}", [problem]) from None


#: A placeholder item count for :func:`check_build` (no data is read at validate time).
PLACEHOLDER_ITEMS = 100_000


def check_build(recipe: Any) -> None:
    """Build every component of a validated recipe on a placeholder context, allocating nothing.

    Runs on torch's ``meta`` device with N = :data:`PLACEHOLDER_ITEMS`, so ``eclsr validate``
    reports a build-time problem (e.g. a hidden size that does not fit the shared item table)
    with its recipe location before any data is read. Failures that only the meta device causes
    (an op it cannot run) are left to the real build.
    """
    counts = torch.ones(PLACEHOLDER_ITEMS + 1, device="meta")
    try:
        with torch.device("meta"):
            Model(recipe, PLACEHOLDER_ITEMS, counts)
    except RecipeError:
        raise
    except Exception:  # noqa: BLE001, S110 — meta-device limits, not the recipe's problem
        pass


def unique_names(names: list[str]) -> list[str]:
    """``["infonce", "infonce"]`` → ``["infonce", "infonce_2"]``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def total_loss(losses: dict[str, tuple[float, Tensor]]) -> Tensor:
    """Sum of ``weight * loss`` (a zero tensor when no head is active)."""
    terms = [weight * loss for weight, loss in losses.values()]
    return torch.stack(terms).sum() if terms else torch.zeros(())
