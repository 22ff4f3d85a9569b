from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eclsr.ops.losses import full_softmax_cross_entropy


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
    from eclsr.ops.layers import FastDropout

    layer = FastDropout(0.25)
    x = torch.ones(200_000)
    torch.manual_seed(0)
    y = layer(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - 0.75) < 0.01
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))
    layer.eval()
    assert layer(x) is x


def test_keep_mask_float_path_equals_the_plain_formula_for_the_same_draws():
    from eclsr.ops.layers import FastDropout, float_dropout_masks, keep_mask

    x = torch.randn(64, 33, requires_grad=True)
    with float_dropout_masks():  # what CUDA tensors take
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


def test_keep_mask_sixteen_bit_path_drops_p_with_mean_one_and_follows_the_torch_seed():
    from eclsr.ops.layers import FastDropout, keep_mask

    x = torch.empty(1000, 1000)
    torch.manual_seed(7)
    mask = keep_mask(x, 0.2)
    scale = 65536 / (65536 - 13107)  # the rate actually drawn: 13107 / 65536
    values = mask.unique()
    assert values.numel() == 2 and values[0] == 0.0
    assert float(values[1]) == pytest.approx(scale, rel=1e-7)
    assert abs(float((mask == 0).float().mean()) - 0.2) < 0.002
    assert abs(float(mask.mean()) - 1.0) < 0.005
    torch.manual_seed(7)
    assert torch.equal(keep_mask(x, 0.2), mask)  # torch.manual_seed fixes it
    assert not torch.equal(keep_mask(x, 0.2), mask)  # and each call draws afresh
    h = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(1)
    y = FastDropout(0.5)(h)
    y.sum().backward()
    torch.testing.assert_close(y, h.detach() * h.grad)  # the gradient is the mask


def test_keep_mask_rate_that_sixteen_bits_cannot_hold_uses_the_float_path():
    from eclsr.ops.layers import keep_mask

    x = torch.empty(200, 200)
    mask = keep_mask(x, 1e-6)  # 16 bits would round it to 0 (no dropout at all)
    kept = mask[mask != 0]
    assert kept.numel() > 0 and float(kept.max()) == float(kept.min())
    assert float(kept.max()) == pytest.approx(1.0 / (1.0 - 1e-6), rel=1e-7)
    assert float(kept.max()) > 1.0  # 16 bits would have given exactly 1 (nothing dropped)


def test_fast_dropout_add_to_equals_residual_plus_dropout_for_the_same_draws():
    from eclsr.ops.layers import FastDropout

    layer = FastDropout(0.3)
    residual, x = torch.randn(8, 5, 16), torch.randn(8, 5, 16, requires_grad=True)
    torch.manual_seed(3)
    fused = layer.add_to(residual, x)
    torch.manual_seed(3)
    plain = residual + layer(x)
    torch.testing.assert_close(fused, plain)
    assert (fused - residual).eq(0).float().mean() > 0.2  # something was dropped
    layer.eval()
    assert torch.equal(layer.add_to(residual, x), residual + x)
