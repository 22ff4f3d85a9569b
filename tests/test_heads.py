"""Tests for the heads (next_item, infonce, generator, rid, aug_prediction) and masked_substitution.

Most tests use tiny stand-in encoders and augmentations defined here (not registered), injected
with ``model_construct`` so they don't depend on the real encoder/augmentation plugins; the last
tests run the real sasrec + bert4rec + augmentations end to end.
"""

from __future__ import annotations

from typing import Literal

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eclsr import (
    AugmentedBatch,
    Batch,
    BuildContext,
    EclsrError,
    Encoder,
    EncoderConfig,
    InvasiveAugmentation,
    InvasiveAugmentationConfig,
    MildAugmentation,
    MildAugmentationConfig,
    Step,
    real_mask,
)
from eclsr.plugins.augment.masked_substitution import MaskedSubstitutionConfig
from eclsr.plugins.heads.aug_prediction import AugPredictionConfig
from eclsr.plugins.heads.generator import GeneratorConfig, GeneratorOutput, draw_mask
from eclsr.plugins.heads.infonce import InfoNCEConfig, info_nce, pool_last_k
from eclsr.plugins.heads.next_item import NextItemConfig, sampled_softmax_cross_entropy
from eclsr.plugins.heads.rid import RIDConfig, to_embedding_norm
from eclsr.registry.manager import collect_registries

N, L, D = 12, 6, 8


@pytest.fixture(autouse=True, scope="module")
def _registries():
    collect_registries()


# --------------------------------------------------------------------------- stand-ins


class TinyEncoder(Encoder):
    """Position-wise: tanh(Linear(E[item] + offset)) plus a running mean (a little context)."""

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__()
        self.item_embedding = ctx.item_embedding
        self.proj = nn.Linear(ctx.hidden_size, ctx.hidden_size)
        self.hidden_size = ctx.hidden_size

    def forward(self, items: Tensor, lengths: Tensor, input_offset: Tensor | None = None) -> Tensor:
        x = self.item_embedding(items)
        if input_offset is not None:
            x = x + input_offset
        return torch.tanh(self.proj(x))


class TinyEncoderConfig(EncoderConfig):
    name: Literal["tiny"] = "tiny"

    def build(self, ctx: BuildContext) -> TinyEncoder:
        return TinyEncoder(ctx)


class FlipView(MildAugmentation):
    def forward(self, step: Step, hidden: Tensor) -> Tensor:
        return hidden.flip(-1) * 0.5 + hidden


class FlipViewConfig(MildAugmentationConfig):
    name: Literal["flip"] = "flip"

    def build(self, ctx: BuildContext) -> FlipView:
        return FlipView()


class DropFirst(InvasiveAugmentation):
    """Deletes the first item of rows longer than one (positions move, no labels)."""

    def forward(self, step: Step, items: Tensor, lengths: Tensor) -> AugmentedBatch:
        shift = (lengths > 1).long()
        index = (torch.arange(items.size(1)).unsqueeze(0) + shift.unsqueeze(1)).clamp(
            max=items.size(1) - 1
        )
        new_lengths = lengths - shift
        out = items.gather(1, index).masked_fill(~real_mask(new_lengths, items.size(1)), 0)
        return AugmentedBatch(out, new_lengths, None)


class DropFirstConfig(InvasiveAugmentationConfig):
    name: Literal["drop_first"] = "drop_first"

    def build(self, ctx: BuildContext) -> DropFirst:
        return DropFirst()


class Reverse(InvasiveAugmentation):
    """Reverses each row's real items (no labels)."""

    def forward(self, step: Step, items: Tensor, lengths: Tensor) -> AugmentedBatch:
        pos = torch.arange(items.size(1)).unsqueeze(0)
        index = (lengths.unsqueeze(1) - 1 - pos).clamp(min=0)
        out = items.gather(1, index).masked_fill(~real_mask(lengths, items.size(1)), 0)
        return AugmentedBatch(out, lengths.clone(), None)


class ReverseConfig(InvasiveAugmentationConfig):
    name: Literal["reverse"] = "reverse"

    def build(self, ctx: BuildContext) -> Reverse:
        return Reverse()


class FixedSubstitution(InvasiveAugmentation):
    """Replaces the first item by item 1 (label: changed where the item was not 1)."""

    def forward(self, step: Step, items: Tensor, lengths: Tensor) -> AugmentedBatch:
        out = items.clone()
        out[:, 0] = 1
        return AugmentedBatch(out, lengths, out != items)


class FixedSubstitutionConfig(InvasiveAugmentationConfig):
    name: Literal["fixed_sub"] = "fixed_sub"

    def build(self, ctx: BuildContext) -> FixedSubstitution:
        return FixedSubstitution()


class EchoGenerator(nn.Module):
    """A generator service that 'predicts' ``predict(items)`` at every masked position."""

    def __init__(self, predict) -> None:
        super().__init__()
        self.predict = predict

    def generate(self, step, mask_ratio, items=None, lengths=None) -> GeneratorOutput:
        items = step.batch.items if items is None else items
        lengths = step.batch.lengths if lengths is None else lengths
        masked = draw_mask(step.generator, lengths, items.size(1), mask_ratio)
        states = torch.zeros(int(masked.sum()), D)
        fill = self.predict(items)[masked]  # [M]
        return GeneratorOutput(masked, items, states, items[masked], items, lambda _: fill)


# --------------------------------------------------------------------------- fixtures


def make_ctx(seed: int = 0) -> BuildContext:
    torch.manual_seed(seed)
    emb = nn.Embedding(N + 2, D, padding_idx=0)
    ctx = BuildContext(
        num_items=N,
        max_len=L,
        item_embedding=emb,
        hidden_size=D,
        item_counts=torch.arange(N + 1).float(),
    )
    ctx.encoder = TinyEncoder(ctx)
    return ctx


def make_batch() -> Batch:
    items = torch.tensor([[3, 5, 7, 2, 9, 4], [1, 2, 0, 0, 0, 0], [6, 8, 11, 0, 0, 0]])
    targets = torch.tensor([[5, 7, 2, 9, 4, 10], [2, 12, 0, 0, 0, 0], [8, 11, 3, 0, 0, 0]])
    return Batch(items, targets, torch.tensor([6, 2, 3]), torch.arange(3))


def make_step(ctx: BuildContext, seed: int = 0, frozen: bool = False, batch=None) -> Step:
    assert ctx.encoder is not None
    return Step(
        batch=batch or make_batch(),
        encoder=ctx.encoder,
        item_embedding=ctx.item_embedding,
        num_items=N,
        generator=torch.Generator().manual_seed(seed),
        frozen=frozenset({"generator"}) if frozen else frozenset(),
        services=ctx.services,
    )


def tiny_generator(ctx: BuildContext, mask_ratio: float = 0.5):
    config = GeneratorConfig.model_construct(encoder=TinyEncoderConfig(), mask_ratio=mask_ratio)
    return config.build(ctx)


def grads_of(*modules: nn.Module) -> list[Tensor | None]:
    return [p.grad for m in modules for p in m.parameters()]


def assert_has_grad(module: nn.Module) -> None:
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), type(module).__name__
    assert any(g.abs().sum() > 0 for g in grads), type(module).__name__


# --------------------------------------------------------------------------- next_item


def test_next_item_matches_cross_entropy_on_real_positions_only():
    ctx = make_ctx()
    head = NextItemConfig(chunk_elements=7).build(ctx)
    step = make_step(ctx)
    loss = head(step)
    batch = step.batch
    logits = step.hidden @ ctx.item_embedding.weight[: N + 1].t()  # [B, T, N+1]
    expected = F.cross_entropy(logits[batch.mask], batch.targets[batch.mask])
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    # targets under padding do not matter
    noisy = make_batch()
    noisy.targets[~noisy.mask] = 4
    torch.testing.assert_close(head(make_step(ctx, batch=noisy)), loss)


def test_next_item_gradients_reach_item_embedding_and_encoder():
    ctx = make_ctx()
    head = NextItemConfig().build(ctx)
    head(make_step(ctx)).backward()
    assert_has_grad(ctx.encoder)
    # the pad row and the [MASK] row (never used as input or target) get no gradient
    assert ctx.item_embedding.weight.grad[N + 1].abs().sum() == 0


def test_sampled_softmax_matches_hand_formula():
    torch.manual_seed(1)
    hidden, weight = torch.randn(4, D), torch.randn(N + 1, D)
    targets = torch.tensor([1, 2, 3, 4])
    negatives = torch.tensor([2, 5, 7])
    log_q = torch.randn(N + 1)
    loss = sampled_softmax_cross_entropy(hidden, weight, targets, negatives, log_q)
    losses = []
    for p in range(4):
        cand = [targets[p].item()] + [n for n in negatives.tolist() if n != targets[p].item()]
        logit = torch.stack(
            [hidden[p] @ weight[c] - (log_q[c] if i else 0) for i, c in enumerate(cand)]
        )
        losses.append(-F.log_softmax(logit, 0)[0])
    torch.testing.assert_close(loss, torch.stack(losses).mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_sampled_next_item_is_finite_trains_and_is_seeded(sampler):
    ctx = make_ctx()
    head = NextItemConfig(sampled_negatives=5, sampler=sampler).build(ctx)
    loss = head(make_step(ctx, seed=3))
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert ctx.item_embedding.weight.grad.abs().sum() > 0
    again = head(make_step(ctx, seed=3))
    torch.testing.assert_close(loss.detach(), again.detach())
    # popularity never draws item 0 (padding) nor an item with zero count
    draws = head._draw_negatives(torch.Generator().manual_seed(0), 2000)
    assert draws.min() >= 1 and draws.max() <= N


def test_sampled_next_item_with_all_negatives_approaches_full_softmax_for_uniform():
    ctx = make_ctx()
    full = NextItemConfig().build(ctx)(make_step(ctx))
    sampled = NextItemConfig(sampled_negatives=4000).build(ctx)(make_step(ctx))
    # 4000 uniform draws over 12 items: the logQ-corrected sum over negatives estimates the
    # partition function; only the padding logit (in the full softmax, never sampled) differs.
    assert abs(sampled.item() - full.item()) < 0.1


def test_popularity_sampler_needs_counts():
    ctx = make_ctx()
    ctx.item_counts = torch.zeros(0)
    with pytest.raises(EclsrError, match="popularity"):
        NextItemConfig(sampled_negatives=5, sampler="popularity").build(ctx)


# --------------------------------------------------------------------------- pooling and InfoNCE


def test_pool_last_k_ignores_padding_even_nan():
    hidden = torch.arange(3 * 6 * 2, dtype=torch.float).view(3, 6, 2)
    lengths = torch.tensor([6, 2, 3])
    hidden[1, 2:] = float("nan")
    hidden[2, 3:] = float("nan")
    pooled = pool_last_k(hidden, lengths, k=4)
    torch.testing.assert_close(pooled[0], hidden[0, 2:6].mean(0))
    torch.testing.assert_close(pooled[1], hidden[1, :2].mean(0))  # shorter than k: real only
    torch.testing.assert_close(pooled[2], hidden[2, :3].mean(0))
    torch.testing.assert_close(pool_last_k(hidden, lengths, k=1)[1], hidden[1, 1])


def direct_info_nce(a, p, tau, extra_neg=None, extra_pos=None):
    losses = []
    for i in range(a.size(0)):
        cos = lambda x, y: (x @ y) / (x.norm() * y.norm())  # noqa: E731
        logits = [cos(a[i], p[j]) / tau for j in range(p.size(0))]
        if extra_neg is not None:
            logits += [cos(a[i], e) / tau for e in extra_neg]
        if extra_pos is not None:
            logits.append(cos(a[i], extra_pos[i]) / tau)
        log_prob = F.log_softmax(torch.stack(logits), 0)
        ll = log_prob[i] if extra_pos is None else (log_prob[i] + log_prob[-1]) / 2
        losses.append(-ll)
    return torch.stack(losses).mean()


def test_info_nce_matches_direct_formula():
    torch.manual_seed(2)
    a, p, e = torch.randn(4, D), torch.randn(4, D), torch.randn(4, D)
    torch.testing.assert_close(info_nce(a, p, 0.05), direct_info_nce(a, p, 0.05))
    torch.testing.assert_close(
        info_nce(a, p, 0.5, extra_negatives=e), direct_info_nce(a, p, 0.5, extra_neg=e)
    )
    torch.testing.assert_close(
        info_nce(a, p, 0.5, extra_positive=e), direct_info_nce(a, p, 0.5, extra_pos=e)
    )


def test_infonce_head_mild_view_matches_formula_and_trains():
    ctx = make_ctx()
    config = InfoNCEConfig.model_construct(view=FlipViewConfig(), pooling_k=4, temperature=0.1)
    head = config.build(ctx)
    step = make_step(ctx)
    loss = head(step)
    lengths = step.batch.lengths
    view1 = pool_last_k(step.hidden, lengths, 4)
    view2 = pool_last_k(FlipView()(step, step.hidden), lengths, 4)
    torch.testing.assert_close(loss, direct_info_nce(view1, view2, 0.1))
    loss.backward()
    assert_has_grad(ctx.encoder)
    assert ctx.item_embedding.weight.grad.abs().sum() > 0


def test_infonce_head_symmetric_averages_both_directions():
    ctx = make_ctx()
    head = InfoNCEConfig.model_construct(view=FlipViewConfig(), symmetric=True).build(ctx)
    step = make_step(ctx)
    v1 = pool_last_k(step.hidden, step.batch.lengths, 5)
    v2 = pool_last_k(FlipView()(step, step.hidden), step.batch.lengths, 5)
    expected = (direct_info_nce(v1, v2, 0.05) + direct_info_nce(v2, v1, 0.05)) / 2
    torch.testing.assert_close(head(step), expected)


def test_infonce_head_invasive_view_encodes_augmented_batch():
    ctx = make_ctx()
    head = InfoNCEConfig.model_construct(view=DropFirstConfig(), pooling_k=2).build(ctx)
    step = make_step(ctx)
    aug = DropFirst()(step, step.batch.items, step.batch.lengths)
    view1 = pool_last_k(step.hidden, step.batch.lengths, 2)
    view2 = pool_last_k(ctx.encoder(aug.items, aug.lengths), aug.lengths, 2)
    torch.testing.assert_close(head(step), direct_info_nce(view1, view2, 0.05))
    both = InfoNCEConfig.model_construct(view=DropFirstConfig(), augment_both=True).build(ctx)
    # deterministic augmentation: with augment_both both views are the augmented batch
    view2 = pool_last_k(ctx.encoder(aug.items, aug.lengths), aug.lengths, 5)
    torch.testing.assert_close(both(make_step(ctx)), direct_info_nce(view2, view2, 0.05))


@pytest.mark.parametrize("extra", ["pos", "neg"])
def test_infonce_extra_uses_generator_output(extra):
    ctx = make_ctx()
    ctx.services["generator"] = EchoGenerator(lambda items: torch.full_like(items, 1))
    head = InfoNCEConfig.model_construct(view=FlipViewConfig(), extra=extra).build(ctx)
    loss = head(make_step(ctx))
    ref = make_step(ctx)  # same seed: the stand-in generator draws the same mask
    lengths = ref.batch.lengths
    out = ctx.services["generator"].generate(ref, 0.2)
    generated = pool_last_k(ctx.encoder(out.predictions, lengths), lengths, 5)
    v1 = pool_last_k(ref.hidden, lengths, 5)
    v2 = pool_last_k(FlipView()(ref, ref.hidden), lengths, 5)
    kwargs = {"extra_pos": generated} if extra == "pos" else {"extra_neg": generated}
    torch.testing.assert_close(loss, direct_info_nce(v1, v2, 0.05, **kwargs))


def test_infonce_extra_without_generator_is_a_clear_error():
    ctx = make_ctx()
    head = InfoNCEConfig.model_construct(view=FlipViewConfig(), extra="neg").build(ctx)
    with pytest.raises(EclsrError, match="generator"):
        head(make_step(ctx))


# --------------------------------------------------------------------------- generator


def test_draw_mask_only_real_positions_and_at_least_one_per_row():
    lengths = torch.tensor([6, 1, 3, 0])
    for seed in range(20):
        masked = draw_mask(torch.Generator().manual_seed(seed), lengths, 6, 0.01)
        assert not (masked & ~real_mask(lengths, 6)).any()
        assert masked[:3].any(dim=1).all()
        assert not masked[3].any()


def test_generator_loss_is_cross_entropy_at_masked_positions_only():
    ctx = make_ctx()
    head = tiny_generator(ctx)
    step = make_step(ctx)
    loss = head(step)
    out = head.generate(step, 0.5)
    assert out is head.generate(step, 0.5)  # memoised: one pass per step and ratio
    items = step.batch.items
    assert (out.masked_items[out.masked] == N + 1).all()
    assert torch.equal(out.masked_items[~out.masked], items[~out.masked])
    hidden = head.encoder(out.masked_items, step.batch.lengths)
    logits = hidden @ ctx.item_embedding.weight[: N + 1].t()
    expected = F.cross_entropy(logits[out.masked], items[out.masked])
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    # predictions: argmax over real items 1..N at masked positions, originals elsewhere
    best = (hidden @ ctx.item_embedding.weight[1 : N + 1].t()).argmax(-1) + 1
    assert torch.equal(out.predictions[out.masked], best[out.masked])
    assert torch.equal(out.predictions[~out.masked], items[~out.masked])
    assert out.predictions[out.masked].min() >= 1 and out.predictions.max() <= N


def test_generator_predictions_agree_whether_the_loss_ran_first_or_not():
    """The loss hands its argmax to S''; without the loss, S'' scores the states itself."""
    ctx = make_ctx()
    head = tiny_generator(ctx)
    after_loss = make_step(ctx, seed=3)
    head(after_loss)
    offered = head.generate(after_loss, 0.5)
    alone = head.generate(make_step(ctx, seed=3), 0.5)  # same mask, no loss ran
    assert offered._best is not None and alone._best is None
    assert torch.equal(offered.predictions, alone.predictions)
    assert not offered.predictions.requires_grad


def test_generator_trains_shared_embedding_and_its_own_encoder_not_the_ube():
    ctx = make_ctx()
    head = tiny_generator(ctx)
    head(make_step(ctx)).backward()
    assert_has_grad(head.encoder.proj)
    assert ctx.item_embedding.weight.grad.abs().sum() > 0
    assert all(g is None for g in grads_of(ctx.encoder.proj))


def test_generator_publishes_service():
    ctx = make_ctx()
    head = tiny_generator(ctx)
    assert ctx.services["generator"] is head
    assert GeneratorConfig.provides_services == ("generator",)
    assert MaskedSubstitutionConfig.requires_services == ("generator",)


def test_frozen_generator_gives_no_loss_and_no_grad():
    ctx = make_ctx()
    head = tiny_generator(ctx)
    step = make_step(ctx, frozen=True)
    out = head.generate(step, 0.5)
    assert not out.states.requires_grad
    # its substitution still feeds RID, which trains the UBE but not the generator
    rid = RIDConfig(augmentation={"name": "masked_substitution", "mask_ratio": 0.5}).build(ctx)
    rid(step).backward()
    assert all(g is None for g in grads_of(head.encoder.proj))
    assert_has_grad(ctx.encoder)


def test_generator_is_deterministic_for_a_seed():
    ctx = make_ctx()
    head = tiny_generator(ctx)
    a = head.generate(make_step(ctx, seed=5), 0.5)
    b = head.generate(make_step(ctx, seed=5), 0.5)
    assert torch.equal(a.masked, b.masked) and torch.equal(a.predictions, b.predictions)
    torch.testing.assert_close(head(make_step(ctx, seed=5)), head(make_step(ctx, seed=5)))
    others = [head.generate(make_step(ctx, seed=s), 0.5).masked for s in range(6, 12)]
    assert any(not torch.equal(a.masked, m) for m in others)


# --------------------------------------------------------------------------- masked substitution


def test_masked_substitution_correct_prediction_counts_as_original():
    ctx = make_ctx()
    ctx.services["generator"] = EchoGenerator(lambda items: items)
    aug = MaskedSubstitutionConfig(mask_ratio=0.5).build(ctx)
    step = make_step(ctx)
    out = aug(step, step.batch.items, step.batch.lengths)
    assert torch.equal(out.items, step.batch.items)
    assert not out.replaced.any()
    assert torch.equal(out.lengths, step.batch.lengths)


def test_masked_substitution_labels_changed_real_positions_only():
    ctx = make_ctx()
    ctx.services["generator"] = EchoGenerator(lambda items: torch.full_like(items, 2))
    aug = MaskedSubstitutionConfig(mask_ratio=0.5).build(ctx)
    step = make_step(ctx)
    items = step.batch.items
    out = aug(step, items, step.batch.lengths)
    masked = ctx.services["generator"].generate(make_step(ctx), 0.5).masked  # same seed
    assert torch.equal(out.replaced, masked & (items != 2))
    assert not out.replaced[~step.batch.mask].any()
    assert (out.items[~step.batch.mask] == 0).all()  # padding stays padding, no stray [MASK]
    assert not (out.items == N + 1).any()


def test_masked_substitution_without_generator_is_a_clear_error():
    ctx = make_ctx()
    aug = MaskedSubstitutionConfig().build(ctx)
    step = make_step(ctx)
    with pytest.raises(EclsrError, match="generator"):
        aug(step, step.batch.items, step.batch.lengths)


# --------------------------------------------------------------------------- RID


def test_rid_add_is_bce_of_ube_with_offset():
    ctx = make_ctx()
    head = RIDConfig.model_construct(augmentation=FixedSubstitutionConfig()).build(ctx)
    step = make_step(ctx)
    loss = head(step)
    aug = FixedSubstitution()(step, step.batch.items, step.batch.lengths)
    mask = step.batch.mask
    offset = step.hidden * mask.unsqueeze(-1)
    hidden = ctx.encoder(aug.items, aug.lengths, input_offset=offset)
    logits = hidden[mask] @ head.classifier.weight.t()
    labels = aug.replaced[mask].float()
    assert labels.sum() == 2  # first position of rows 0 and 2 (row 1 already starts with 1)
    expected = -(labels * F.logsigmoid(logits[:, 0]) + (1 - labels) * F.logsigmoid(-logits[:, 0]))
    torch.testing.assert_close(loss, expected.mean())


def test_rid_and_generator_epoch_average_divide_the_sum_by_rows_times_the_epoch_figure():
    """average_over = "epoch": sum / (B × per-row figure of the epoch), the same draws as the mean."""
    ctx = make_ctx()
    rid = RIDConfig.model_construct(augmentation=FixedSubstitutionConfig()).build(ctx)
    rid_epoch = RIDConfig.model_construct(
        augmentation=FixedSubstitutionConfig(), average_over="epoch"
    ).build(ctx)
    rid_epoch.load_state_dict(rid.state_dict())
    step = make_step(ctx)
    positions = int(step.batch.mask.sum())
    rows = step.batch.items.size(0)
    step.positions_per_row = 7.5  # the epoch's mean, not this batch's
    torch.testing.assert_close(rid_epoch(step), rid(step) * positions / (rows * 7.5))
    step.positions_per_row = None  # a hand-built step: the plain mean
    torch.testing.assert_close(rid_epoch(step), rid(step))

    generator = tiny_generator(ctx)
    mean = generator(make_step(ctx, seed=3))
    masked = int(generator.generate(make_step(ctx, seed=3), 0.5).masked.sum())
    config = GeneratorConfig.model_construct(
        encoder=TinyEncoderConfig(), mask_ratio=0.5, average_over="epoch"
    )
    epoch = config.build(ctx)
    epoch.load_state_dict(generator.state_dict())
    step = make_step(ctx, seed=3)
    step.positions_per_row = 7.5
    torch.testing.assert_close(epoch(step), mean * masked / (rows * 7.5 * 0.5))


def add_discriminator_bce(ctx, head, step, offset, shift: float = 0.0):
    """The add-condition RID loss recomputed by hand: the UBE over S'' with ``offset`` added to
    its input, the classifier's weight, logits moved by ``shift``, BCE against the labels."""
    aug = FixedSubstitution()(step, step.batch.items, step.batch.lengths)
    mask = step.batch.mask
    hidden = ctx.encoder(aug.items, aug.lengths, input_offset=offset)
    logits = (hidden[mask] @ head.classifier.weight.t()).squeeze(-1) + shift
    return F.binary_cross_entropy_with_logits(logits, aug.replaced[mask].float())


def test_rid_add_bias_is_a_learned_offset_of_every_logit():
    ctx = make_ctx()
    head = RIDConfig.model_construct(augmentation=FixedSubstitutionConfig(), bias=True).build(ctx)
    assert head.classifier.bias is not None and float(head.classifier.bias.detach()) == 0.0
    with torch.no_grad():
        head.classifier.bias.fill_(-1.5)
    step = make_step(ctx)
    loss = head(step)
    offset = step.hidden * step.batch.mask.unsqueeze(-1)
    torch.testing.assert_close(loss, add_discriminator_bce(ctx, head, step, offset, shift=-1.5))
    loss.backward()
    assert head.classifier.bias.grad is not None and head.classifier.bias.grad.abs() > 0
    # the code's classifier stays bias-free by default
    assert RIDConfig().build(make_ctx()).classifier.bias is None


def test_rid_add_only_options_are_refused_for_the_concat_mlp():
    with pytest.raises(ValueError, match='bias = true only works with condition = "add"'):
        RIDConfig(condition="concat", bias=True)
    with pytest.raises(ValueError, match='offset_scale = "embedding" only works with condition'):
        RIDConfig(condition="concat", offset_scale="embedding")
    both = 'bias = true and offset_scale = "embedding" only work with condition = "add"'
    with pytest.raises(ValueError, match=both):
        RIDConfig(condition="concat", bias=True, offset_scale="embedding")


def test_rid_embedding_offset_scale_adds_states_at_the_item_embeddings_norm():
    ctx = make_ctx()
    head = RIDConfig.model_construct(
        augmentation=FixedSubstitutionConfig(), offset_scale="embedding"
    ).build(ctx)
    step = make_step(ctx)
    loss = head(step)
    aug = FixedSubstitution()(step, step.batch.items, step.batch.lengths)
    mask = step.batch.mask
    original = step.hidden * mask.unsqueeze(-1)
    embedded = ctx.item_embedding(aug.items)
    scaled = original / original.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    scaled = scaled * embedded.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(loss, add_discriminator_bce(ctx, head, step, scaled))
    # real positions now carry an offset of the item's own size; padding stays zero
    sizes = to_embedding_norm(original, embedded).norm(dim=-1)
    torch.testing.assert_close(sizes[mask], embedded.norm(dim=-1)[mask])
    assert torch.all(sizes[~mask] == 0)
    loss.backward()
    assert_has_grad(ctx.encoder)  # the offset's direction still trains the UBE


def test_rid_concat_is_bce_of_mlp_over_both_states():
    ctx = make_ctx()
    head = RIDConfig.model_construct(
        augmentation=FixedSubstitutionConfig(), condition="concat"
    ).build(ctx)
    step = make_step(ctx)
    loss = head(step)
    aug = FixedSubstitution()(step, step.batch.items, step.batch.lengths)
    mask = step.batch.mask
    features = torch.cat([ctx.encoder(aug.items, aug.lengths)[mask], step.hidden[mask]], -1)
    expected = F.binary_cross_entropy_with_logits(
        head.classifier(features).squeeze(-1), aug.replaced[mask].float()
    )
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("condition", ["add", "concat"])
def test_rid_gradients_reach_ube_embedding_and_classifier(condition):
    ctx = make_ctx()
    generator = tiny_generator(ctx)
    head = RIDConfig(condition=condition).build(ctx)  # default: masked_substitution
    head(make_step(ctx)).backward()
    assert_has_grad(ctx.encoder)
    assert_has_grad(head.classifier)
    assert ctx.item_embedding.weight.grad.abs().sum() > 0
    # no gradient through the argmax into the generator
    assert all(g is None for g in grads_of(generator.encoder.proj))


def test_rid_with_perfect_generator_has_all_original_labels():
    ctx = make_ctx()
    ctx.services["generator"] = EchoGenerator(lambda items: items)
    head = RIDConfig().build(ctx)  # masked_substitution over the stand-in generator
    step = make_step(ctx)
    loss = head(step)
    mask = step.batch.mask
    hidden = ctx.encoder(step.batch.items, step.batch.lengths, input_offset=step.hidden)
    logits = (hidden[mask] @ head.classifier.weight.t()).squeeze(-1)
    all_original = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))
    torch.testing.assert_close(loss, all_original)
    out = head.augmentation(make_step(ctx), step.batch.items, step.batch.lengths)
    assert not out.replaced.any()


def test_rid_rejects_augmentations_without_labels_or_alignment():
    ctx = make_ctx()
    for config in (DropFirstConfig(), ReverseConfig()):
        head = RIDConfig.model_construct(augmentation=config).build(ctx)
        with pytest.raises(EclsrError, match="aug_prediction"):
            head(make_step(ctx))


# --------------------------------------------------------------------------- aug_prediction


def test_aug_prediction_is_cross_entropy_over_augmentation_identity():
    ctx = make_ctx()
    augs = [DropFirstConfig(), ReverseConfig(), FixedSubstitutionConfig()]
    head = AugPredictionConfig.model_construct(augmentations=augs).build(ctx)
    step = make_step(ctx)
    loss = head(step)
    batch = step.batch
    original = step.hidden[torch.arange(3), batch.lengths - 1]
    logits = []
    for aug_cls in (DropFirst, Reverse, FixedSubstitution):
        out = aug_cls()(step, batch.items, batch.lengths)
        h = ctx.encoder(out.items, out.lengths)[torch.arange(3), out.lengths - 1]
        logits.append(head.classifier(torch.cat([h, original], -1)))
    expected = F.cross_entropy(torch.cat(logits), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2]))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert_has_grad(ctx.encoder)
    assert_has_grad(head.classifier)


def test_aug_prediction_needs_two_augmentations():
    with pytest.raises(ValueError, match="at least 2"):
        AugPredictionConfig(augmentations=[{"name": "crop"}])


# --------------------------------------------------------------------------- real plugins


def real_ctx() -> BuildContext:
    from eclsr.plugins.encoders.sasrec import SASRecConfig

    torch.manual_seed(0)
    emb = nn.Embedding(N + 2, 16, padding_idx=0)
    ctx = BuildContext(
        num_items=N, max_len=L, item_embedding=emb, hidden_size=16,
        item_counts=torch.arange(N + 1).float(),
    )  # fmt: skip
    ctx.encoder = SASRecConfig(hidden=16, dropout=0.1, attn_dropout=0.1).build(ctx)
    return ctx


def test_full_ecl_sr_heads_with_sasrec_and_bert4rec():
    ctx = real_ctx()
    configs = [
        NextItemConfig(),
        InfoNCEConfig(pooling_k=3),  # default view: dropout
        GeneratorConfig(),  # default encoder: bert4rec
        RIDConfig(),  # default: masked_substitution, add
        RIDConfig(condition="concat"),
        InfoNCEConfig(extra="pos"),
        InfoNCEConfig(view={"name": "crop"}, augment_both=True),
        AugPredictionConfig(),  # crop, reorder, insert, delete
    ]
    heads = [c.build(ctx) for c in configs]
    generator = heads[2]
    step = make_step(ctx, seed=1)
    losses = [head(step) for head in heads]
    assert all(torch.isfinite(loss) and loss.ndim == 0 for loss in losses)
    sum(losses).backward()
    assert_has_grad(ctx.encoder)
    assert_has_grad(generator.encoder)  # via L_Gen
    for head in heads[3:5] + heads[-1:]:
        assert_has_grad(head.classifier)


def test_real_plugins_deterministic_for_seed():
    ctx = real_ctx()
    GeneratorConfig().build(ctx)
    rid = RIDConfig().build(ctx)
    torch.manual_seed(0)
    a = rid(make_step(ctx, seed=4))
    torch.manual_seed(0)
    b = rid(make_step(ctx, seed=4))
    torch.testing.assert_close(a, b)


def test_the_model_skips_any_frozen_head_by_its_registered_name():
    from eclsr import Model, validate_recipe

    recipe = validate_recipe(
        {
            "data": {"dataset": "synthetic", "max_len": 8},
            "encoder": {"name": "sasrec", "hidden": 16, "layers": 1},
            "heads": [{"name": "next_item"}, {"name": "infonce", "weight": 0.1}],
        }
    )
    model = Model(recipe, N, torch.ones(N + 1))
    step = Step(make_batch(), model.encoder, model.item_embedding, N, torch.Generator())
    assert set(model.losses(step)) == {"next_item", "infonce"}
    step.frozen = frozenset({"infonce"})
    assert set(model.losses(step)) == {"next_item"}
