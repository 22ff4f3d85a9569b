from __future__ import annotations

import torch
import torch.nn.functional as F

from eclsr.losses import full_softmax_cross_entropy


def test_chunked_ce_matches_reference_value_and_gradients():
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(37, 8, generator=gen, requires_grad=True)
    w = torch.randn(11, 8, generator=gen, requires_grad=True)
    t = torch.randint(0, 11, (37,), generator=gen)
    loss = full_softmax_cross_entropy(h, w, t, chunk_elements=30)  # 2 rows per chunk
    (2 * loss).backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref = F.cross_entropy(h @ w.t(), t)
    (2 * ref).backward()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gh, h.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, w.grad, rtol=1e-5, atol=1e-6)


def test_hand_computed_two_class_value():
    h = torch.tensor([[1.0, 0.0]])
    w = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # logits [0, 2]
    loss = full_softmax_cross_entropy(h, w, torch.tensor([0]))
    expected = torch.log(1 + torch.exp(torch.tensor(2.0)))
    torch.testing.assert_close(loss, expected)


def test_empty_positions_give_zero_loss_with_grad():
    h = torch.zeros(0, 4, requires_grad=True)
    w = torch.randn(5, 4, requires_grad=True)
    loss = full_softmax_cross_entropy(h, w, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert float(loss.detach()) == 0.0 and w.grad is not None


def test_fast_dropout_statistics_and_eval_identity():
    from eclsr.layers import FastDropout

    layer = FastDropout(0.25)
    x = torch.ones(200_000)
    torch.manual_seed(0)
    y = layer(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - 0.75) < 0.01
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))
    layer.eval()
    assert layer(x) is x


def test_keep_mask_equals_the_plain_formula_for_the_same_draws():
    from eclsr.layers import FastDropout, keep_mask

    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(5)
    mask = keep_mask(x, 0.3)
    torch.manual_seed(5)
    plain = (torch.rand_like(x) >= 0.3) * (1.0 / 0.7)
    assert torch.equal(mask, plain)
    torch.manual_seed(5)
    y = FastDropout(0.3)(x)
    assert torch.equal(y, x * plain)
    y.sum().backward()
    assert torch.equal(x.grad, plain)  # the gradient is the mask itself


def test_auto_chunking_and_argmax_match_the_reference():
    gen = torch.Generator().manual_seed(2)
    h = torch.randn(300, 8, generator=gen, requires_grad=True)
    w = torch.randn(13, 8, generator=gen, requires_grad=True)
    t = torch.randint(0, 13, (300,), generator=gen)
    for chunk in (None, 40):  # auto (one chunk here) and 3-row chunks
        loss, best = full_softmax_cross_entropy(h, w, t, chunk, return_argmax=True)
        torch.testing.assert_close(loss, F.cross_entropy(h @ w.t(), t))
        expected = (h @ w[1:].t()).argmax(dim=1) + 1  # padding row 0 never wins
        assert torch.equal(best, expected)
        assert not best.requires_grad


def test_a_target_far_below_the_best_gets_its_exact_loss():
    """softmax underflows to 0 for the target: the loss must stay finite and exact (≈ 200)."""
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    w = torch.tensor([[100.0, 0.0], [-100.0, 0.0], [0.0, 1.0]], requires_grad=True)
    t = torch.tensor([1, 2])  # row 0: logits [100, -100, 0], target -100
    loss = full_softmax_cross_entropy(h, w, t)
    ref = F.cross_entropy(h @ w.t(), t)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    gh = h.grad.clone()
    h.grad = None
    F.cross_entropy(h @ w.t(), t).backward()
    torch.testing.assert_close(gh, h.grad)
