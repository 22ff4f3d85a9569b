"""The transformer encoders' ``positions`` option: ``from_start`` (default) and ``from_end``.

``from_end`` must give every real position exactly the state that the authors' left-padded code
computes: rows left-padded to max_len, position index = slot index, padding keys masked.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from pydantic import ValidationError
from torch import Tensor, nn

from eclsr import BuildContext
from eclsr.plugins.encoders._transformer import TransformerEncoder, position_ids
from eclsr.plugins.encoders.bert4rec import BERT4RecConfig
from eclsr.plugins.encoders.sasrec import SASRecConfig
from eclsr.testing import check_encoder

N, L, D = 20, 8, 16
CONFIGS = {"sasrec": SASRecConfig, "bert4rec": BERT4RecConfig}


def make_encoder(name: str, positions: str = "from_end", layers: int = 2) -> TransformerEncoder:
    """A small encoder (eval mode) on a fresh item table of N + 2 rows."""
    torch.manual_seed(0)
    table = nn.Embedding(N + 2, D, padding_idx=0)
    ctx = BuildContext(num_items=N, max_len=L, item_embedding=table, hidden_size=D)
    torch.manual_seed(1)
    config = CONFIGS[name](hidden=D, heads=2, layers=layers, positions=positions)
    return config.build(ctx).eval()


def right_padded() -> tuple[Tensor, Tensor]:
    """``[3, 6]`` right-padded rows of lengths 4, 6, 1 (narrower than max_len on purpose)."""
    items = torch.tensor([[3, 5, 7, 2, 0, 0], [1, 2, 3, 4, 5, 6], [9, 0, 0, 0, 0, 0]])
    return items, torch.tensor([4, 6, 1])


def left_pad(items: Tensor, lengths: Tensor, width: int) -> Tensor:
    """``[B, width]``: each row's real items moved to the end, zeros in front."""
    out = torch.zeros(items.size(0), width, dtype=items.dtype)
    for b, n in enumerate(lengths.tolist()):
        out[b, width - n :] = items[b, :n]
    return out


def reference_left_padded(encoder: TransformerEncoder, items: Tensor, lengths: Tensor) -> Tensor:
    """The authors' computation: ``[B, L, D]`` over rows left-padded to ``L`` (eval mode).

    Position embedding index = slot index; keys at padding slots are masked (plus causal for
    SASRec). A padding query may attend to itself so its row never turns NaN (its output is
    unused, and no real query ever attends to it).
    """
    left = left_pad(items, lengths, L)  # [B, L]
    x = encoder.item_embedding(left) + encoder.position_embedding(torch.arange(L))
    x = encoder.norm(x)  # [B, L, D]
    real_key = (left > 0).unsqueeze(1)  # [B, 1, L]
    allowed = real_key | torch.eye(L, dtype=torch.bool)  # [B, L, L]
    if encoder.causal:
        allowed = allowed & torch.ones(L, L, dtype=torch.bool).tril()
    for block in encoder.blocks:
        x = block(x, allowed.unsqueeze(1), False)
    return x


def real_states_left(states: Tensor, lengths: Tensor) -> list[Tensor]:
    """Per row, the ``[n, D]`` states of the real (last n) slots of a left-padded output."""
    return [states[b, states.size(1) - n :] for b, n in enumerate(lengths.tolist())]


def test_position_ids_from_start_is_the_plain_range():
    lengths = torch.tensor([4, 6, 1])
    assert position_ids("from_start", lengths, 6, L).tolist() == list(range(6))


def test_position_ids_from_end_puts_the_newest_item_last():
    ids = position_ids("from_end", torch.tensor([4, 8, 1, 0]), 8, L)
    assert ids.shape == (4, 8)
    assert ids[0, :4].tolist() == [4, 5, 6, 7]
    assert ids[1].tolist() == list(range(8))
    assert ids[2, 0].item() == L - 1
    assert int(ids.min()) >= 0 and int(ids.max()) == L - 1  # padding clamps inside the table


def test_default_is_from_start_and_validated():
    assert SASRecConfig().positions == "from_start"
    assert BERT4RecConfig().positions == "from_start"
    with pytest.raises(ValidationError):
        SASRecConfig(positions="backwards")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_explicit_from_start_is_bit_identical_to_the_default(name):
    items, lengths = right_padded()
    torch.manual_seed(0)
    table = nn.Embedding(N + 2, D, padding_idx=0)
    ctx = BuildContext(num_items=N, max_len=L, item_embedding=table, hidden_size=D)
    outputs = []
    for fields in ({}, {"positions": "from_start"}):
        torch.manual_seed(1)
        encoder = CONFIGS[name](hidden=D, heads=2, **fields).build(ctx)
        torch.manual_seed(2)  # training mode: the same dropout draws
        outputs.append(encoder(items, lengths))
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_from_end_equals_the_left_padded_reference(name, layers):
    encoder = make_encoder(name, layers=layers)
    items, lengths = right_padded()
    with torch.no_grad():
        ours = encoder(items, lengths)  # [B, 6, D]
        reference = reference_left_padded(encoder, items, lengths)  # [B, L, D]
    for b, expected in enumerate(real_states_left(reference, lengths)):
        torch.testing.assert_close(ours[b, : lengths[b]], expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_from_end_differs_from_from_start_for_short_rows(name):
    items, lengths = right_padded()
    with torch.no_grad():
        start = make_encoder(name, "from_start")(items, lengths)
        end = make_encoder(name, "from_end")(items, lengths)
    assert not torch.allclose(start[0, :4], end[0, :4])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_from_end_padding_never_leaks(name):
    """Extra padding columns, or junk ids in padding slots, leave real states unchanged."""
    encoder = make_encoder(name)
    items, lengths = right_padded()
    real = torch.arange(items.size(1)).unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]
    junk = torch.where(real, items, torch.randint(1, N + 1, items.shape))
    with torch.no_grad():
        base = encoder(items, lengths)
        wider = encoder(F.pad(items, (0, L - items.size(1))), lengths)[:, : items.size(1)]
        # SASRec: real queries see earlier keys only; BERT4Rec masks padding keys by length.
        torch.testing.assert_close(encoder(junk, lengths)[real], base[real])
    torch.testing.assert_close(wider[real], base[real])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_from_end_encode_at_matches_the_full_pass(name):
    encoder = make_encoder(name)
    items, lengths = right_padded()
    positions = torch.tensor([[3, 0, 1, 3], [5, 2, 4, 0], [0, 0, 0, 0]])  # [B, K]
    with torch.no_grad():
        full = encoder(items, lengths)
        got = encoder.encode_at(items, lengths, positions)
    torch.testing.assert_close(got, full[torch.arange(3).unsqueeze(1), positions])


def test_from_end_sasrec_user_vector_is_the_reference_last_slot():
    encoder = make_encoder("sasrec")
    items, lengths = right_padded()
    with torch.no_grad():
        users = encoder.user_vectors(items, lengths)  # [B, D]
        reference = reference_left_padded(encoder, items, lengths)[:, -1]  # [B, D]
    torch.testing.assert_close(users, reference, atol=1e-5, rtol=1e-4)


def test_from_end_bert4rec_ranks_from_the_mask_as_newest_item():
    """The appended [MASK] counts as the newest item: the left-padded reference's last slot."""
    encoder = make_encoder("bert4rec")
    items = torch.tensor(
        [[3, 5, 7, 2, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7, 8], [9, 0, 0, 0, 0, 0, 0, 0]]
    )
    lengths = torch.tensor([4, 8, 1])  # the full row drops its oldest item for the [MASK]
    grown = torch.tensor(
        [[3, 5, 7, 2, N + 1, 0, 0, 0], [2, 3, 4, 5, 6, 7, 8, N + 1], [9, N + 1, 0, 0, 0, 0, 0, 0]]
    )
    with torch.no_grad():
        users = encoder.user_vectors(items, lengths)
        reference = reference_left_padded(encoder, grown, torch.tensor([5, 8, 2]))[:, -1]
    torch.testing.assert_close(users, reference, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_from_end_passes_the_encoder_contract(name):
    check_encoder(CONFIGS[name](positions="from_end"))


def test_from_end_gradients_reach_the_position_table():
    encoder = make_encoder("sasrec").train()
    items, lengths = right_padded()
    weights = torch.randn(D)  # a plain sum of LayerNorm outputs has zero gradient
    (encoder(items, lengths)[0, :4] @ weights).sum().backward()
    grad = encoder.position_embedding.weight.grad  # [L, D]
    assert grad is not None
    touched = grad.abs().sum(dim=1) > 0  # row 0 has 4 items: positions L-4 .. L-1
    assert touched[L - 4 :].all()
