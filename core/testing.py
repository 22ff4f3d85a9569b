"""Contract checks for components, the same ones every built-in plugin passes.

Call them from a plugin's own tests with the config class (or a configured instance)::

    from eclsr.testing import check_invasive_augmentation
    from my_plugin import MyAugConfig

    def test_contract():
        check_invasive_augmentation(MyAugConfig)
        check_invasive_augmentation(MyAugConfig(ratio=0.9))

Each check builds the component on a tiny :class:`~eclsr.BuildContext` (N = 20 items, L = 8,
D = 16, rows of lengths 8, 1, 3 and 5) on the CPU and raises :class:`AssertionError` naming the
component and the broken rule. Components that need an encoder get the small causal stand-in
:class:`TinyCausalEncoder` (pass ``encoder=SASRecConfig()`` or any encoder config to use that
instead); services a component requires (``requires_services``) are provided by building, with
defaults, a registered head that declares them in ``provides_services``. The checks run inside
``torch.random.fork_rng``, so they leave the caller's global random state untouched.

Encoders without trainable parameters whose output carries no gradient (``pop``) skip the
gradient rule; every other encoder, mild augmentation and head must send gradients to the
shared item table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
import torch.nn.functional as F  # noqa: N812
from pydantic import ValidationError
from torch import Tensor, nn

from eclsr.components.configs import (
    BuildContext,
    ComponentConfig,
    EncoderConfig,
    HeadConfig,
    InvasiveAugmentationConfig,
    MildAugmentationConfig,
)
from eclsr.components.runtime import (
    AugmentedBatch,
    Encoder,
    Head,
    InvasiveAugmentation,
    MildAugmentation,
)
from eclsr.components.step import Batch, MirroredRanks, Step
from eclsr.engine.model import scalar_loss, total_loss
from eclsr.errors import EclsrError, RegistryError
from eclsr.ops.positions import real_mask
from eclsr.registry.table import component_name

NUM_ITEMS, MAX_LEN, HIDDEN = 20, 8, 16
LENGTHS = (8, 1, 3, 5)  # the longest row fills max_len; one row has a single item
SEED = 1234

C = TypeVar("C", bound=ComponentConfig)
T = TypeVar("T")
ConfigLike = ComponentConfig | type[ComponentConfig]


def expect(condition: bool, message: str) -> None:
    """Raise ``AssertionError(message)`` unless ``condition`` (kept under ``python -O``)."""
    if not condition:
        raise AssertionError(message)


@contextlib.contextmanager
def reporting(who: str) -> Iterator[None]:
    """Turn an exception raised by the component into an ``AssertionError`` naming it."""
    try:
        yield
    except AssertionError:
        raise
    except Exception as exc:
        msg = f"{who}: raised {type(exc).__name__}: {exc}"
        raise AssertionError(msg) from exc


# --------------------------------------------------------------------------- tiny fixtures


class TinyCausalEncoder(Encoder):
    """Stand-in UBE: dropout(E[item] + P[t] + offset), causal running mean, Linear, tanh."""

    def __init__(self, ctx: BuildContext, dropout: float = 0.1) -> None:
        """Build around the shared item table (``share_item_table``, as the built-ins do)."""
        super().__init__()
        self.hidden_size = ctx.hidden_size
        self.share_item_table(ctx.item_embedding)
        self.position = nn.Embedding(ctx.max_len, ctx.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(ctx.hidden_size, ctx.hidden_size)

    def forward(self, items: Tensor, lengths: Tensor, input_offset: Tensor | None = None) -> Tensor:
        """``[B, T]`` → ``[B, T, D]``; position t sees items 0..t only."""
        width = items.size(1)
        x = self.item_embedding(items) + self.position(torch.arange(width))  # [B, T, D]
        if input_offset is not None:
            x = x + input_offset
        count = torch.arange(1, width + 1, dtype=x.dtype).view(1, -1, 1)  # [1, T, 1]
        return torch.tanh(self.proj(self.dropout(x).cumsum(dim=1) / count))  # [B, T, D]


def tiny_context(
    num_items: int = NUM_ITEMS, max_len: int = MAX_LEN, hidden: int = HIDDEN
) -> BuildContext:
    """A build context with a fresh item table ``[N+2, D]`` and counts ``1..N`` per item."""
    counts = torch.arange(num_items + 1, dtype=torch.float32)  # [N+1], item 0 unused
    counts[0] = 0
    return BuildContext(
        num_items=num_items,
        max_len=max_len,
        item_embedding=nn.Embedding(num_items + 2, hidden, padding_idx=0),
        hidden_size=hidden,
        item_counts=counts,
    )


def tiny_batch(
    num_items: int = NUM_ITEMS, lengths: tuple[int, ...] = LENGTHS, seed: int = 0
) -> Batch:
    """Right-padded random sequences of the given lengths, width = the longest row."""
    gen = torch.Generator().manual_seed(seed)
    length = torch.tensor(lengths)  # [B]
    width = int(length.max())
    full = torch.randint(1, num_items + 1, (len(lengths), width + 1), generator=gen)
    real = real_mask(length, width + 1)  # [B, T+1]
    items = full[:, :width] * real[:, :width]  # [B, T]
    targets = full[:, 1 : width + 1] * real[:, :width]  # [B, T]: the next item, 0 at padding
    return Batch(items, targets, length, torch.arange(len(lengths)))


def tiny_step(
    ctx: BuildContext, encoder: Encoder, batch: Batch, seed: int = SEED, world_size: int = 1
) -> Step:
    """A fresh step (empty memo) whose generator is seeded with ``seed``.

    With ``world_size > 1`` the step takes the distributed code path (``global_mean``,
    ``gather_rows``) as rank 0 of ``world_size`` identical ranks, in this one process.
    """
    return Step(
        batch=batch,
        encoder=encoder,
        item_embedding=ctx.item_embedding,
        num_items=ctx.num_items,
        generator=torch.Generator().manual_seed(seed),
        services=ctx.services,
        world_size=world_size,
        collectives=MirroredRanks(world_size),
    )


@contextlib.contextmanager
def isolated_rng(seed: int = 0) -> Iterator[None]:
    """Seed torch's global RNG for the block, restoring the caller's state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --------------------------------------------------------------------------- config rules


def check_config(config: ConfigLike, base: type[C] = ComponentConfig) -> C:  # type: ignore[assignment]
    """Check the config class rules and return the instance to test.

    Rules: subclass of ``base``; a ``name: Literal[...]`` default; frozen with ``extra="forbid"``;
    constructible with no arguments; a description on every field but ``name``; a JSON dump
    validates back to an equal config (run directories store recipes that way).
    """
    cls = config if isinstance(config, type) else type(config)
    _resolve_slots(cls)
    expect(issubclass(cls, base), f"{cls.__qualname__} must subclass eclsr.{base.__name__}")
    who = _who(cls)
    settings = cls.model_config
    expect(
        settings.get("frozen") is True and settings.get("extra") == "forbid",
        f"{who}: configs must stay frozen with extra='forbid' (don't override model_config)",
    )
    try:
        default = cls()
    except ValidationError as exc:
        msg = f"{who}: the defaults are not valid, {cls.__qualname__}() fails:\n{exc}"
        raise AssertionError(msg) from None
    undocumented = [n for n, f in cls.model_fields.items() if n != "name" and not f.description]
    expect(not undocumented, f"{who}: fields without a description: {', '.join(undocumented)}")
    instance = default if isinstance(config, type) else config
    dumped = instance.model_dump(mode="json")
    expect(
        cls.model_validate(dumped) == instance,
        f"{who}: model_dump(mode='json') does not validate back to the same config: {dumped}",
    )
    return instance  # type: ignore[return-value]


def _resolve_slots(cls: type) -> None:
    """Bind slot annotations (``MildSlot`` ...) of an unregistered class to the current unions."""
    from eclsr.registry.manager import collect_registries
    from eclsr.registry.slots import slot_namespace

    regs = collect_registries()
    if not getattr(cls, "__pydantic_complete__", True):
        cls.model_rebuild(force=True, _types_namespace=slot_namespace(regs))  # type: ignore[attr-defined]


def _who(cls: type) -> str:
    try:
        name = component_name(cls)
    except RegistryError as exc:
        raise AssertionError(str(exc)) from None
    return f"{getattr(cls, 'kind', 'component')} {name!r} ({cls.__module__}.{cls.__qualname__})"


# --------------------------------------------------------------------------- encoders


def check_encoder(config: ConfigLike) -> None:
    """Check an encoder: shapes, dtype, determinism, padding never leaks, gradients."""
    config = check_config(config, EncoderConfig)
    who = _who(type(config))
    with isolated_rng(), reporting(who):
        ctx = tiny_context(hidden=config.hidden_size(HIDDEN))  # the UBE sizes the item table
        encoder = config.build(ctx)
        expect(isinstance(encoder, Encoder), f"{who}: build() must return an eclsr.Encoder")
        _check_table_not_owned(who, encoder, ctx)
        batch = tiny_batch()
        hidden = _twice(who, lambda: encoder(batch.items, batch.lengths))
        _check_states(who, hidden, batch, encoder.hidden_size)
        encoder.eval()
        with torch.no_grad():
            _check_padding_independent(who, encoder)
            _check_encode_at(who, encoder)
            _check_rank_vectors(who, encoder, ctx, batch)
        encoder.train()
        output = encoder(batch.items, batch.lengths)
        trainable = any(p.requires_grad for p in encoder.parameters())
        if output.requires_grad or trainable:  # parameter-free encoders (pop) are exempt
            _check_item_gradient(who, _project(output, batch.mask), ctx, batch)


def _check_states(who: str, hidden: Tensor, batch: Batch, size: int) -> None:
    expected = (*batch.items.shape, size)
    expect(
        tuple(hidden.shape) == expected,
        f"{who}: output shape {tuple(hidden.shape)}, expected [B, T, D] = {expected}",
    )
    expect(hidden.is_floating_point(), f"{who}: output dtype {hidden.dtype} is not floating")
    expect(
        bool(torch.isfinite(hidden[batch.mask]).all()), f"{who}: non-finite states at real items"
    )


def _check_table_not_owned(who: str, encoder: Encoder, ctx: BuildContext) -> None:
    """The shared item table must not be the encoder's own parameter (it would be saved twice)."""
    table = ctx.item_embedding.weight
    expect(
        all(p is not table for p in encoder.parameters()),
        f"{who}: the shared item table is registered as the encoder's submodule (it would be "
        "saved twice and frozen with the encoder); hold it with "
        "self.share_item_table(ctx.item_embedding)",
    )


def _check_input_offset_used(who: str, encoder: Encoder, batch: Batch, base: Tensor) -> None:
    """A non-zero ``input_offset`` must change real states (RID's ``add`` conditioning)."""
    # random, not constant: a LayerNorm right after the embeddings cancels a constant shift
    shift = torch.randn(base.shape, generator=torch.Generator().manual_seed(SEED))
    moved = encoder(batch.items, batch.lengths, input_offset=shift)
    expect(
        not torch.allclose(base[batch.mask], moved[batch.mask]),
        f"{who}: input_offset is ignored (a non-zero offset left every real state unchanged); "
        "add it to the item embeddings, or the rid head's add conditioning is silently off",
    )


def _check_padding_independent(who: str, encoder: Encoder) -> None:
    """Extra padding columns must not change the states of real positions (eval mode)."""
    batch = tiny_batch(lengths=(5, 1, 3))
    base = encoder(batch.items, batch.lengths)  # [B, T, D]
    wider = encoder(F.pad(batch.items, (0, MAX_LEN - 5)), batch.lengths)[:, :5]
    offset = encoder(batch.items, batch.lengths, input_offset=torch.zeros_like(base))
    mask = batch.mask
    for other, what in ((wider, "extra padding columns"), (offset, "a zero input_offset")):
        expect(
            torch.allclose(base[mask], other[mask], atol=1e-5, rtol=1e-4),
            f"{who}: {what} changed the states of real positions",
        )
    if any(p.requires_grad for p in encoder.parameters()):  # pop-like rankers take no offset
        _check_input_offset_used(who, encoder, batch, base)


def _check_encode_at(who: str, encoder: Encoder) -> None:
    """``encode_at`` must give the full pass's states at the positions asked for (eval mode)."""
    batch = tiny_batch(lengths=(5, 1, 3))
    positions = torch.tensor([[4, 0, 2], [0, 0, 0], [2, 1, 1]])  # repeats, any order
    full = encoder(batch.items, batch.lengths)  # [B, T, D]
    expected = full[torch.arange(3).unsqueeze(1), positions]  # [B, K, D]
    got = encoder.encode_at(batch.items, batch.lengths, positions)
    expect(
        tuple(got.shape) == tuple(expected.shape),
        f"{who}: encode_at returned {tuple(got.shape)}, expected [B, K, D] = "
        f"{tuple(expected.shape)}",
    )
    expect(
        torch.allclose(got, expected, atol=1e-5, rtol=1e-4),
        f"{who}: encode_at differs from the full pass at the same positions",
    )
    offset = torch.randn(
        (*batch.items.shape, full.size(-1)), generator=torch.Generator().manual_seed(SEED)
    )
    shifted = encoder(batch.items, batch.lengths, input_offset=offset)
    got = encoder.encode_at(batch.items, batch.lengths, positions, input_offset=offset)
    expect(
        torch.allclose(got, shifted[torch.arange(3).unsqueeze(1), positions], atol=1e-5, rtol=1e-4),
        f"{who}: encode_at(..., input_offset) differs from the full pass with that offset",
    )


def _check_rank_vectors(who: str, encoder: Encoder, ctx: BuildContext, batch: Batch) -> None:
    users = encoder.user_vectors(batch.items, batch.lengths)
    items = encoder.item_vectors(ctx.item_embedding, ctx.num_items)
    expect(
        users.dim() == 2 and users.size(0) == len(LENGTHS), f"{who}: user_vectors must be [B, D]"
    )
    expect(
        tuple(items.shape) == (ctx.num_items + 1, users.size(1)),
        f"{who}: item_vectors must be [N+1, D] = {(ctx.num_items + 1, users.size(1))}, "
        f"got {tuple(items.shape)}",
    )
    finite = bool(torch.isfinite(users).all() and torch.isfinite(items[1:]).all())
    expect(finite, f"{who}: non-finite user or item vectors")


# --------------------------------------------------------------------------- augmentations


def check_mild_augmentation(config: ConfigLike, encoder: EncoderConfig | None = None) -> None:
    """Check a mild augmentation: a view shaped like ``hidden``, determinism, gradients."""
    config = check_config(config, MildAugmentationConfig)
    who = _who(type(config))
    with isolated_rng(), reporting(who):
        ctx, ube, batch = _setup(config, encoder)
        aug = config.build(ctx)
        expect(isinstance(aug, MildAugmentation), f"{who}: build() must return a MildAugmentation")

        def view() -> Tensor:
            step = tiny_step(ctx, ube, batch)
            return aug(step, step.hidden)

        out = _twice(who, view)
        _check_states(who, out, batch, ube.hidden_size)
        _check_item_gradient(who, _project(view(), batch.mask), ctx, batch)
        _check_view_at(who, aug, ctx, ube, batch)
        _check_own_generator_only(who, view, (aug, ube, *ctx.services.values()))


def _check_own_generator_only(who: str, compute: Callable[[], T], modules: tuple) -> None:
    """In eval mode the output may depend on ``step.generator`` only, not torch's global RNG."""
    for module in modules:
        module.eval()
    torch.manual_seed(SEED)
    reference = compute()
    torch.manual_seed(SEED + 1)
    expect(
        _same(compute(), reference),
        f"{who}: in eval mode the output changed with torch's global seed; draw every "
        "random number from step.generator",
    )
    for module in modules:
        module.train()


def _check_view_at(
    who: str, aug: MildAugmentation, ctx: BuildContext, ube: Encoder, batch: Batch
) -> None:
    """``view_at`` gives ``[B, K, D]`` finite states (InfoNCE pools only these)."""
    positions = torch.stack([(batch.lengths - 1).clamp(min=0), torch.zeros_like(batch.lengths)], 1)
    step = tiny_step(ctx, ube, batch)
    got = aug.view_at(step, step.hidden, positions)
    expected = (batch.items.size(0), 2, ube.hidden_size)
    expect(
        tuple(got.shape) == expected,
        f"{who}: view_at returned {tuple(got.shape)}, expected [B, K, D] = {expected}",
    )
    expect(bool(torch.isfinite(got).all()), f"{who}: view_at gave non-finite states")


def check_invasive_augmentation(config: ConfigLike, encoder: EncoderConfig | None = None) -> None:
    """Check an invasive augmentation: padding, lengths, labels, determinism, RNG discipline."""
    config = check_config(config, InvasiveAugmentationConfig)
    who = _who(type(config))
    with isolated_rng(), reporting(who):
        ctx, ube, batch = _setup(config, encoder)
        aug = config.build(ctx)
        expect(
            isinstance(aug, InvasiveAugmentation),
            f"{who}: build() must return an InvasiveAugmentation",
        )
        items, lengths = batch.items.clone(), batch.lengths.clone()

        def run() -> AugmentedBatch:
            return aug(tiny_step(ctx, ube, batch), batch.items, batch.lengths)

        run()  # first: an in-place edit would otherwise look like non-determinism below
        expect(
            torch.equal(batch.items, items) and torch.equal(batch.lengths, lengths),
            f"{who}: the input items/lengths were modified in place; return new tensors",
        )
        out = _twice(who, run)
        _check_augmented(who, out, ctx)
        _check_own_generator_only(who, run, (aug, ube, *ctx.services.values()))
        _check_labels(who, type(config), out, batch)


def _check_labels(who: str, cls: type, out: AugmentedBatch, batch: Batch) -> None:
    """``replaced`` agrees with the class's ``positional_labels`` and with what changed."""
    if not cls.positional_labels:
        expect(
            out.replaced is None,
            f"{who}: returns 'replaced' labels but declares positional_labels = False; set "
            "positional_labels = True on the config if positions stay aligned",
        )
        return
    aligned = out.items.shape == batch.items.shape and torch.equal(out.lengths, batch.lengths)
    expect(
        aligned and out.replaced is not None,
        f"{who}: declares positional_labels = True, so it must keep every length and width and "
        "return 'replaced' labels",
    )
    assert out.replaced is not None
    changed = (out.items != batch.items) & batch.mask
    expect(
        torch.equal(out.replaced, changed),
        f"{who}: wrong 'replaced' labels: they must be True exactly where the item differs from "
        f"the original ({int(changed.sum())} positions changed, {int(out.replaced.sum())} labelled)",
    )


def _check_augmented(who: str, out: AugmentedBatch, ctx: BuildContext) -> None:
    expect(isinstance(out, AugmentedBatch), f"{who}: forward must return an eclsr.AugmentedBatch")
    items, lengths = out.items, out.lengths
    expect(items.dtype == torch.long and items.dim() == 2, f"{who}: items must be [B, T'] int64")
    expect(
        lengths.dtype == torch.long and tuple(lengths.shape) == (len(LENGTHS),),
        f"{who}: lengths must be [B] int64, got {lengths.dtype} {tuple(lengths.shape)}",
    )
    expect(items.size(0) == len(LENGTHS), f"{who}: items has {items.size(0)} rows, expected B")
    bounded = bool((lengths >= 1).all() and (lengths <= ctx.max_len).all())
    expect(bounded, f"{who}: lengths {lengths.tolist()} outside [1, max_len={ctx.max_len}]")
    width = items.size(1)
    expect(
        int(lengths.max()) <= width <= ctx.max_len,
        f"{who}: width {width} must hold the longest row and be at most max_len",
    )
    real = real_mask(lengths, width)
    expect(not bool(items[~real].any()), f"{who}: padding positions must stay 0")
    in_range = bool(((items[real] >= 1) & (items[real] <= ctx.mask_token)).all())
    expect(in_range, f"{who}: real positions must hold ids in 1..N+1")
    if out.replaced is not None:
        replaced = out.replaced
        expect(
            replaced.dtype == torch.bool and replaced.shape == items.shape,
            f"{who}: replaced must be bool shaped like items, got {replaced.dtype} "
            f"{tuple(replaced.shape)}",
        )
        expect(not bool(replaced[~real].any()), f"{who}: replaced must be False at padding")


# --------------------------------------------------------------------------- heads


def check_head(config: ConfigLike, encoder: EncoderConfig | None = None) -> None:
    """Check a head: a finite scalar loss (or dict of them), determinism, gradients."""
    config = check_config(config, HeadConfig)
    who = _who(type(config))
    with isolated_rng(), reporting(who):
        ctx, ube, batch = _setup(config, encoder)
        head = config.build(ctx)
        expect(isinstance(head, Head), f"{who}: build() must return an eclsr.Head")

        def run() -> Tensor:
            return _total_loss(who, head(tiny_step(ctx, ube, batch)))

        loss = _twice(who, run)
        loss.backward()
        _check_item_gradient(who, None, ctx, batch)
        _check_distributed_path(who, head, ctx, ube, batch)


def _check_distributed_path(
    who: str, head: Head, ctx: BuildContext, ube: Encoder, batch: Batch
) -> None:
    """The head under ``--nproc 2`` (simulated): its losses still add up with the built-ins'.

    A built-in head's loss under DDP has shape ``[1]`` (a distributed mean); the engine's total
    must accept any head's scalar beside it.
    """
    result = head(tiny_step(ctx, ube, batch, world_size=2))
    named = result if isinstance(result, dict) else {"loss": result}
    try:
        losses = {key: (1.0, scalar_loss(key, value)) for key, value in named.items()}
        losses["built-in"] = (1.0, scalar_loss("built-in", torch.zeros(1)))  # a [1] DDP mean
        total = total_loss(losses)
    except EclsrError as exc:
        raise AssertionError(f"{who}: under --nproc 2: {exc}") from None
    expect(bool(torch.isfinite(total)), f"{who}: under --nproc 2 the loss is not finite ({total})")


def _total_loss(who: str, result: Tensor | dict[str, Tensor]) -> Tensor:
    losses = result if isinstance(result, dict) else {"loss": result}
    expect(bool(losses), f"{who}: forward returned an empty dict of losses")
    for key, value in losses.items():
        ok = isinstance(value, Tensor) and value.dim() == 0 and value.is_floating_point()
        expect(ok, f"{who}: loss {key!r} must be a floating scalar tensor, got {value!r}")
        expect(bool(torch.isfinite(value)), f"{who}: loss {key!r} is not finite ({value})")
    return torch.stack(list(losses.values())).sum()


# --------------------------------------------------------------------------- shared helpers


def check_component(config: ConfigLike, encoder: EncoderConfig | None = None) -> None:
    """Run the check that matches the config's kind."""
    cls = config if isinstance(config, type) else type(config)
    if issubclass(cls, EncoderConfig):
        check_encoder(config)
    elif issubclass(cls, MildAugmentationConfig):
        check_mild_augmentation(config, encoder)
    elif issubclass(cls, InvasiveAugmentationConfig):
        check_invasive_augmentation(config, encoder)
    elif issubclass(cls, HeadConfig):
        check_head(config, encoder)
    else:
        msg = f"{cls.__qualname__} is not an encoder, augmentation or head config"
        raise AssertionError(msg)


def _setup(
    config: ComponentConfig, encoder: EncoderConfig | None
) -> tuple[BuildContext, Encoder, Batch]:
    """Context with a UBE and the services ``config`` needs; a tiny batch."""
    ctx = tiny_context(hidden=encoder.hidden_size(HIDDEN) if encoder is not None else HIDDEN)
    ube = encoder.build(ctx) if encoder is not None else TinyCausalEncoder(ctx)
    ctx.encoder = ube
    provide_services(config, ctx)
    return ctx, ube, tiny_batch()


def provide_services(config: ComponentConfig, ctx: BuildContext) -> list[nn.Module]:
    """Build, with defaults, registered heads that provide the services ``config`` requires."""
    from eclsr.recipe.sections import iter_components
    from eclsr.registry.manager import collect_registries

    heads = collect_registries().heads
    pending = [s for c in iter_components(config) for s in c.needed_services()]
    provided = {s for c in iter_components(config) for s in c.provides_services}
    built: list[nn.Module] = []
    while pending:
        service = pending.pop()
        if service in provided:
            continue
        providers = [cls for cls in heads if service in cls.provides_services]
        expect(
            bool(providers), f"needs the service {service!r}, but no registered head provides it"
        )
        provider = providers[0]()
        built.append(provider.build(ctx))
        provided.update(s for c in iter_components(provider) for s in c.provides_services)
        pending += [s for c in iter_components(provider) for s in c.needed_services()]
    return built


def _twice(who: str, compute: Callable[[], T]) -> T:
    """Run ``compute`` twice from the same seeds; the results must be identical."""
    torch.manual_seed(SEED)
    first = compute()
    torch.manual_seed(SEED)
    second = compute()
    expect(_same(first, second), f"{who}: the same seeds gave different outputs")
    return first


def _same(a: object, b: object) -> bool:
    if isinstance(a, AugmentedBatch) and isinstance(b, AugmentedBatch):
        return all(
            _same(x, y)
            for x, y in ((a.items, b.items), (a.lengths, b.lengths), (a.replaced, b.replaced))
        )
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.shape == b.shape and bool(torch.equal(a.detach(), b.detach()))
    return a is None and b is None


def _project(hidden: Tensor, mask: Tensor) -> Tensor:
    """A scalar that depends on every real state.

    A fixed random projection, not a plain sum, which LayerNorm'd outputs make constant.
    """
    weights = torch.randn(hidden.size(-1), generator=torch.Generator().manual_seed(SEED))
    return (hidden[mask] * weights).sum()


def _check_item_gradient(who: str, scalar: Tensor | None, ctx: BuildContext, batch: Batch) -> None:
    """Backpropagate ``scalar`` (if given); the item-table rows of the batch must get gradient."""
    if scalar is not None:
        expect(scalar.requires_grad, f"{who}: the output carries no gradient")
        scalar.backward()
    grad = ctx.item_embedding.weight.grad
    expect(grad is not None, f"{who}: no gradient reaches the shared item table")
    assert grad is not None
    rows = grad[batch.items[batch.mask].unique()]
    expect(bool(torch.isfinite(grad).all()), f"{who}: non-finite gradient on the item table")
    expect(bool(rows.abs().sum() > 0), f"{who}: zero gradient on the items of the batch")
