"""Tests for the built-in encoders: sasrec, bert4rec, gru4rec, pop."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import eclsr
import eclsr.engine.model
from eclsr import BuildContext, EclsrError, Encoder, EncoderConfig
from eclsr.plugins.encoders.bert4rec import BERT4RecConfig, append_mask
from eclsr.plugins.encoders.gru4rec import GRU4RecConfig
from eclsr.plugins.encoders.pop import PopConfig
from eclsr.plugins.encoders.sasrec import SASRecConfig
from eclsr.registry.manager import collect_registries

N, L, D = 20, 8, 16
NEURAL = {"sasrec": SASRecConfig, "bert4rec": BERT4RecConfig, "gru4rec": GRU4RecConfig}
ALL = {**NEURAL, "pop": PopConfig}


def make_ctx(hidden: int = D, counts: torch.Tensor | None = None) -> BuildContext:
    torch.manual_seed(0)
    emb = nn.Embedding(N + 2, hidden, padding_idx=0)
    if counts is None:
        counts = torch.arange(N + 1)
    return BuildContext(
        num_items=N, max_len=L, item_embedding=emb, hidden_size=hidden, item_counts=counts
    )


def build(name: str, ctx: BuildContext | None = None, seed: int = 0, **fields) -> Encoder:
    ctx = ctx or make_ctx()
    torch.manual_seed(seed)
    return ALL[name](**fields).build(ctx)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    items = torch.tensor([[3, 5, 7, 2, 0, 0], [1, 2, 3, 4, 5, 6], [9, 0, 0, 0, 0, 0]])
    return items, torch.tensor([4, 6, 1])


def test_registry_lists_the_four_encoders():
    names = collect_registries().encoders.names()
    assert {"sasrec", "bert4rec", "gru4rec", "pop"} <= set(names)
    for name, cls in ALL.items():
        assert collect_registries().encoders.get(name) is cls
        assert issubclass(cls, EncoderConfig)


@pytest.mark.parametrize("name", sorted(ALL))
def test_output_shape_and_dtype(name):
    enc = build(name)
    items, lengths = batch()
    out = enc(items, lengths)
    assert out.shape == (3, 6, D)
    assert out.dtype == torch.float32
    assert enc.hidden_size == D
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(NEURAL))
def test_explicit_hidden_overrides_context(name):
    ctx = make_ctx(hidden=32)
    enc = build(name, ctx, hidden=32)
    items, lengths = batch()
    assert enc(items, lengths).shape == (3, 6, 32)
    assert enc.hidden_size == 32


@pytest.mark.parametrize("name", sorted(NEURAL))
def test_shared_table_is_not_an_own_parameter(name):
    ctx = make_ctx()
    enc = build(name, ctx)
    assert enc.item_embedding is ctx.item_embedding
    own = {id(p) for p in enc.parameters()}
    assert id(ctx.item_embedding.weight) not in own
    assert not any("item_embedding" in key for key in enc.state_dict())
    # A parent owning both the table and the encoder holds the table once.
    parent = nn.ModuleDict({"item_embedding": ctx.item_embedding, "encoder": enc})
    keys = [k for k in parent.state_dict() if k.endswith("item_embedding.weight")]
    assert keys == ["item_embedding.weight"]


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_causal_encoders_ignore_later_items(name):
    enc = build(name).eval()
    items, lengths = batch()
    changed = items.clone()
    changed[1, 4] = 17  # change the 5th item of row 1
    before, after = enc(items, lengths), enc(changed, lengths)
    torch.testing.assert_close(before[1, :4], after[1, :4])
    assert not torch.allclose(before[1, 4:], after[1, 4:])
    torch.testing.assert_close(before[[0, 2]], after[[0, 2]])


@pytest.mark.parametrize("name", sorted(NEURAL))
def test_padding_does_not_reach_real_positions(name):
    enc = build(name).eval()
    short = torch.tensor([[3, 5, 7]])
    padded = torch.tensor([[3, 5, 7, 0, 0, 0, 0]])
    lengths = torch.tensor([3])
    torch.testing.assert_close(enc(short, lengths), enc(padded, lengths)[:, :3])


def test_bert4rec_is_bidirectional():
    enc = build("bert4rec").eval()
    items, lengths = batch()
    changed = items.clone()
    changed[1, 4] = 17
    assert not torch.allclose(enc(items, lengths)[1, :4], enc(changed, lengths)[1, :4])


@pytest.mark.parametrize("name", sorted(NEURAL))
def test_same_seed_same_output(name):
    items, lengths = batch()
    outs = []
    for _ in range(2):
        enc = build(name, seed=3).train()
        torch.manual_seed(7)  # the training loop seeds the global RNG dropout draws from
        outs.append(enc(items, lengths))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    other = build(name, seed=4).eval()
    assert not torch.allclose(other(items, lengths), build(name, seed=3).eval()(items, lengths))


@pytest.mark.parametrize("name", sorted(NEURAL))
def test_gradient_reaches_shared_item_table(name):
    ctx = make_ctx()
    enc = build(name, ctx)
    items, lengths = batch()
    out = enc(items, lengths)
    mask = torch.arange(items.size(1)) < lengths.unsqueeze(1)
    out[mask].pow(2).sum().backward()
    grad = ctx.item_embedding.weight.grad
    assert grad is not None
    used = items[mask].unique()
    assert (grad[used].abs().sum(1) > 0).all()
    assert grad[0].abs().sum() == 0  # padding_idx row gets no gradient
    assert all(p.grad is not None for p in enc.parameters())


@pytest.mark.parametrize("name", sorted(NEURAL))
def test_input_offset_changes_output(name):
    enc = build(name).eval()
    items, lengths = batch()
    offset = torch.randn(3, 6, D, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(enc(items, lengths), enc(items, lengths, offset))
    torch.testing.assert_close(enc(items, lengths, torch.zeros(3, 6, D)), enc(items, lengths))


@pytest.mark.parametrize("cls", [SASRecConfig, BERT4RecConfig])
def test_hidden_not_divisible_by_heads_is_rejected(cls):
    with pytest.raises(ValidationError, match=r"hidden \(15\) must be divisible by heads \(2\)"):
        cls(hidden=15, heads=2)
    cls(hidden=16, heads=4)
    with pytest.raises(EclsrError, match="divisible by heads"):  # hidden from the context
        cls(heads=3).build(make_ctx())


@pytest.mark.parametrize("cls", [SASRecConfig, BERT4RecConfig, GRU4RecConfig])
def test_field_constraints(cls):
    with pytest.raises(ValidationError):
        cls(dropout=1.0)
    with pytest.raises(ValidationError):
        cls(layers=0)
    with pytest.raises(ValidationError):
        cls(unknown=1)


def test_defaults():
    s, b, g = SASRecConfig(), BERT4RecConfig(), GRU4RecConfig()
    assert (s.layers, s.heads, s.inner_size, s.dropout, s.attn_dropout) == (2, 2, 256, 0.5, 0.5)
    assert s.layer_norm_eps == 1e-12
    assert (b.dropout, b.attn_dropout) == (0.2, 0.2)
    assert g.layers == 1


def test_too_long_batch_is_an_error():
    enc = build("sasrec")
    items = torch.ones(2, L + 1, dtype=torch.long)
    with pytest.raises(EclsrError, match="max_len"):
        enc(items, torch.tensor([L + 1, L + 1]))


def reference_attention(block, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """RecBole-style attention written out: softmax(QKᵀ/√d + mask) V, then the output Linear."""
    b, t, d = x.shape
    h = block.heads
    q, k, v = block.qkv(x).split(d, dim=-1)
    q, k, v = (z.view(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    scores = scores.masked_fill(~allowed, float("-inf"))
    return block.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d))


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_block_matches_written_out_transformer(name):
    enc = build(name, heads=4).eval()
    items, lengths = batch()
    real = torch.arange(6) < lengths.unsqueeze(1)  # [B, T]
    if name == "sasrec":
        allowed = torch.ones(6, 6).tril().bool()[None, None]
    else:
        allowed = real[:, None, None, :]
    positions = enc.position_embedding(torch.arange(6))
    x = enc.norm(enc.item_embedding(items) + positions)
    for block in enc.blocks:
        x = block.norm1(x + reference_attention(block, x, allowed))
        x = block.norm2(x + block.ffn[2](torch.nn.functional.gelu(block.ffn[0](x))))
    out = enc(items, lengths)
    torch.testing.assert_close(out[real], x[real], rtol=1e-5, atol=1e-5)


def test_transformer_init():
    enc = build("sasrec", make_ctx(hidden=64), hidden=64, inner_size=256)
    enc.item_embedding.weight.data.fill_(3.0)  # untouched by the encoder: owned by the model
    weight = enc.blocks[0].ffn[0].weight
    assert abs(weight.std().item() - 0.02) < 0.003
    assert enc.blocks[0].qkv.bias.abs().sum() == 0
    torch.testing.assert_close(enc.norm.weight, torch.ones(64))
    assert abs(enc.position_embedding.weight.std().item() - 0.02) < 0.005


def test_append_mask_grows_or_shifts():
    items = torch.tensor([[3, 5, 0, 0], [1, 2, 3, 4]])
    out, lengths = append_mask(items, torch.tensor([2, 4]), mask_token=N + 1, max_len=4)
    assert out.tolist() == [[3, 5, N + 1, 0], [2, 3, 4, N + 1]]
    assert lengths.tolist() == [3, 4]
    out, lengths = append_mask(items[:1, :3], torch.tensor([2]), mask_token=N + 1, max_len=8)
    assert out.tolist() == [[3, 5, N + 1, 0]]


def test_bert4rec_user_vector_is_the_appended_mask_state():
    enc = build("bert4rec").eval()
    items, lengths = batch()
    with_mask = torch.tensor(
        [[3, 5, 7, 2, 21, 0, 0], [1, 2, 3, 4, 5, 6, 21], [9, 21, 0, 0, 0, 0, 0]]
    )
    hidden = enc(with_mask, lengths + 1)
    expected = hidden[torch.arange(3), lengths]
    torch.testing.assert_close(enc.user_vectors(items, lengths), expected)


def test_sasrec_user_vector_is_last_real_state():
    enc = build("sasrec").eval()
    items, lengths = batch()
    hidden = enc(items, lengths)
    torch.testing.assert_close(
        enc.user_vectors(items, lengths), hidden[torch.arange(3), lengths - 1]
    )


def test_pop_ranks_by_counts():
    counts = torch.tensor([0, 5, 1, 9, 0, 3] + [0] * (N - 5))
    ctx = make_ctx(counts=counts)
    enc = build("pop", ctx)
    items, lengths = batch()
    scores = enc.user_vectors(items, lengths) @ enc.item_vectors(ctx.item_embedding, N).T
    assert scores.shape == (3, N + 1)
    assert scores[:, 0].eq(float("-inf")).all()
    assert scores[0, 1:6].tolist() == [5.0, 1.0, 9.0, 0.0, 3.0]
    assert scores[0].argsort(descending=True)[:3].tolist() == [3, 1, 5]
    assert list(enc.parameters()) == []
    assert "scores" not in enc.state_dict()


def test_pop_needs_counts():
    with pytest.raises(EclsrError, match="item_counts"):
        build("pop", make_ctx(counts=torch.zeros(0)))


@pytest.mark.parametrize("name", sorted(NEURAL))
def test_deepcopy_of_parent_keeps_the_table_shared(name):
    ctx = make_ctx()
    parent = nn.ModuleDict({"item_embedding": ctx.item_embedding, "encoder": build(name, ctx)})
    clone = copy.deepcopy(parent)
    assert clone["encoder"].item_embedding is clone["item_embedding"]
    assert clone["item_embedding"] is not parent["item_embedding"]


# ------------------------------------------------------------------ attention with dropout (CPU)


def _qkv(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(3, 2, 7, 4, generator=generator) for _ in range(3))  # type: ignore[return-value]


@pytest.mark.parametrize("causal", [True, False])
def test_attention_with_dropout_matches_sdpa_when_nothing_drops(causal):
    from eclsr.plugins.encoders._transformer import attention_with_dropout, key_padding_mask

    q, k, v = _qkv()
    mask = None if causal else key_padding_mask(torch.tensor([7, 3, 1]), 7)
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=causal
    )
    got = attention_with_dropout(q, k, v, mask, causal, p=1e-12)  # keeps every weight
    torch.testing.assert_close(got, expected)


def test_attention_with_dropout_is_unbiased_and_drops_p():
    from eclsr.plugins.encoders._transformer import attention_with_dropout

    q, k, v = _qkv(1)
    v = torch.eye(7).expand(3, 2, 7, 7)  # output row = attention probabilities (after dropout)
    q, k = q[..., :4], k[..., :4]
    torch.manual_seed(0)
    draws = torch.stack([attention_with_dropout(q, k, v, None, True, p=0.5) for _ in range(2000)])
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    # each mean has std <= 1 / sqrt(2000) = 0.022: 0.1 is over four standard deviations
    torch.testing.assert_close(draws.mean(0), expected, atol=0.1, rtol=0)
    allowed = torch.ones(7, 7).tril().bool().expand_as(expected)
    dropped = (draws[:, allowed] == 0).float().mean().item()
    assert 0.45 < dropped < 0.55
    assert (draws[:, ~allowed] == 0).all()  # future items never attended


def test_training_block_uses_dropout_and_keeps_causality():
    # a later item must not change earlier outputs in training mode either (same random draw)
    encoder = build("sasrec", attn_dropout=0.3, dropout=0.0).train()
    items, lengths = batch()
    changed = items.clone()
    changed[1, 4] = 17
    torch.manual_seed(3)
    first = encoder(items, lengths)
    torch.manual_seed(3)
    second = encoder(changed, lengths)
    torch.testing.assert_close(first[1, :4], second[1, :4])
    torch.manual_seed(4)
    assert not torch.allclose(encoder(items, lengths), first)  # dropout is active


# --------------------------------------------------------------------------- states at some positions


def some_positions() -> torch.Tensor:
    """[B, K] positions with repeats and out-of-order slots (all inside each row's width)."""
    return torch.tensor([[3, 0, 1, 3], [5, 2, 4, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_encode_at_equals_the_full_pass_at_those_positions(name, layers):
    enc = build(name, layers=layers).eval()
    items, lengths = batch()
    positions = some_positions()
    full = enc(items, lengths)  # [B, T, D]
    expected = full[torch.arange(3).unsqueeze(1), positions]
    torch.testing.assert_close(enc.encode_at(items, lengths, positions), expected)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_encode_at_in_training_takes_the_cpu_dropout_path_and_matches_without_drops(
    name, monkeypatch
):
    """Training with p > 0 runs ``attention_with_dropout`` on a [B, 1, K, T] mask; with every
    draw kept (the mask patched to ones, residual dropout off) it must equal the full pass."""
    import eclsr.plugins.encoders._transformer as transformer

    enc = build(name, dropout=0.0, attn_dropout=0.3).train()
    calls = []

    def keep_all(x, p):
        calls.append(p)
        return torch.ones_like(x)

    monkeypatch.setattr(transformer, "keep_mask", keep_all)
    items, lengths = batch()
    positions = some_positions()
    expected = enc(items, lengths)[torch.arange(3).unsqueeze(1), positions]
    got = enc.encode_at(items, lengths, positions)
    torch.testing.assert_close(got, expected)
    assert calls == [0.3] * 4  # two blocks per pass, two passes: the dropout path ran


def test_encode_at_gradients_reach_every_weight_of_the_last_block():
    enc = build("sasrec").train()
    items, lengths = batch()
    enc.encode_at(items, lengths, some_positions()).sum().backward()
    last = enc.blocks[-1]
    for param_name, param in last.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, param_name


def test_gru4rec_uses_the_default_gather():
    enc = build("gru4rec").eval()
    items, lengths = batch()
    positions = some_positions()
    expected = enc(items, lengths)[torch.arange(3).unsqueeze(1), positions]
    torch.testing.assert_close(enc.encode_at(items, lengths, positions), expected)


def test_encode_at_with_no_positions_gives_an_empty_result():
    enc = build("bert4rec").train()
    items, lengths = batch()
    out = enc.encode_at(items, lengths, torch.zeros(3, 0, dtype=torch.long))
    assert out.shape == (3, 0, D)


def test_selected_positions_lists_rows_like_boolean_indexing():
    from eclsr import gather_positions, selected_positions

    selected = torch.tensor(
        [[False, True, False, True, True], [False] * 5, [True, False, False, False, False]]
    )
    hidden = torch.randn(3, 5, 4)
    positions, valid = selected_positions(selected)
    assert positions.shape == (3, 3)
    assert valid.tolist() == [[True] * 3, [False] * 3, [True, False, False]]
    assert positions[0].tolist() == [1, 3, 4] and positions[2, 0] == 0
    torch.testing.assert_close(gather_positions(hidden, positions)[valid], hidden[selected])


def test_last_k_positions_covers_the_last_real_items():
    from eclsr import last_k_positions

    positions, valid = last_k_positions(torch.tensor([5, 2, 0]), k=3, width=6)
    assert positions.tolist() == [[2, 3, 4], [0, 1, 2], [0, 1, 2]]
    assert valid.tolist() == [[True] * 3, [True, True, False], [False] * 3]
    positions, valid = last_k_positions(torch.tensor([2]), k=10, width=2)
    assert positions.tolist() == [[0, 1]] and valid.all()


def test_an_encoder_whose_hidden_size_differs_from_the_item_table_is_refused_at_validate(tmp_path):
    from eclsr.cli.main import main

    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'data = { dataset = "synthetic", max_len = 8 }\n'
        'encoder = { name = "sasrec", hidden = 64 }\n'
        '[[heads]]\nname = "next_item"\n'
        '[[heads]]\nname = "generator"\nencoder = { name = "bert4rec", hidden = 32 }\n'
    )
    assert main(["validate", str(recipe)]) == 2
    with pytest.raises(eclsr.RecipeError, match=r"heads\[1\] \(generator\): hidden size 32"):
        eclsr.engine.model.check_build(eclsr.load_recipe(recipe))
