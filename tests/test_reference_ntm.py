"""Checks that the reference NTM (tests/reference_ntm.py) itself is trustworthy.

Expected values of the worked examples are computed by hand, with plain python numbers, not by calling
the reference's helpers again.
"""

import math

import pytest
import torch
from reference_ntm import (
    circular_shift,
    content_weighting,
    lstm_cell,
    random_weights,
    reference_ntm,
    sharpen,
    write_memory,
)

D = torch.float64


def t(values):
    return torch.tensor(values, dtype=D)


def softmax_list(zs):
    m = max(zs)
    ex = [math.exp(z - m) for z in zs]
    return [v / sum(ex) for v in ex]


# (a) content addressing -----------------------------------------------------------------------------


def test_content_addressing_matches_hand_cosines():
    memory = t([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # (1, 3, 2)
    key = t([[1.0, 0.0]])
    beta = t([[2.0]])
    # cosines by hand: row 0 -> 1, row 1 -> 0, row 2 -> 1 / sqrt(2)
    cos = [1.0, 0.0, 1.0 / math.sqrt(2.0)]
    expected = softmax_list([2.0 * c for c in cos])  # about [0.5466, 0.0740, 0.3794]
    got = content_weighting(key, beta, memory, eps=1e-8)
    assert got.shape == (1, 3)
    assert torch.allclose(got, t([expected]), atol=1e-7)
    # a non-unit key: cosines by hand are 0, -1 and -3 / (3 sqrt(2)) = -1 / sqrt(2)
    key2 = t([[0.0, -3.0]])
    expected2 = softmax_list([0.0, -1.0, -1.0 / math.sqrt(2.0)])
    got2 = content_weighting(key2, t([[1.0]]), memory, eps=1e-8)
    assert torch.allclose(got2, t([expected2]), atol=1e-7)


# (b) circular shift ---------------------------------------------------------------------------------


def test_shift_plus_one_moves_forward_and_wraps():
    shifts = [-1, 0, 1]
    s_plus = t([[0.0, 0.0, 1.0]])
    assert circular_shift(t([[0.0, 1.0, 0.0, 0.0]]), s_plus, shifts).tolist() == [[0.0, 0.0, 1.0, 0.0]]
    assert circular_shift(t([[0.0, 0.0, 0.0, 1.0]]), s_plus, shifts).tolist() == [[1.0, 0.0, 0.0, 0.0]]
    s_minus = t([[1.0, 0.0, 0.0]])
    assert circular_shift(t([[1.0, 0.0, 0.0, 0.0]]), s_minus, shifts).tolist() == [[0.0, 0.0, 0.0, 1.0]]
    s_zero = t([[0.0, 1.0, 0.0]])
    assert circular_shift(t([[0.1, 0.2, 0.3, 0.4]]), s_zero, shifts).tolist() == [[0.1, 0.2, 0.3, 0.4]]


def test_shift_mixture_by_hand():
    # w~(i) = 0.1 w(i + 1) + 0.7 w(i) + 0.2 w(i - 1)  for shifts [-1, 0, 1] and s = [0.1, 0.7, 0.2]
    w = [0.5, 0.3, 0.2, 0.0]
    expected = [
        0.1 * 0.3 + 0.7 * 0.5 + 0.2 * 0.0,  # slot 0: w(1), w(0), w(3)  = 0.38
        0.1 * 0.2 + 0.7 * 0.3 + 0.2 * 0.5,  # slot 1: w(2), w(1), w(0)  = 0.33
        0.1 * 0.0 + 0.7 * 0.2 + 0.2 * 0.3,  # slot 2: w(3), w(2), w(1)  = 0.20
        0.1 * 0.5 + 0.7 * 0.0 + 0.2 * 0.2,  # slot 3: w(0), w(3), w(2)  = 0.09
    ]
    got = circular_shift(t([w]), t([[0.1, 0.7, 0.2]]), [-1, 0, 1])
    assert torch.allclose(got, t([expected]), atol=1e-12)
    assert torch.allclose(got, t([[0.38, 0.33, 0.20, 0.09]]), atol=1e-12)


def test_shift_offsets_other_than_unit():
    # shifts [0, 2] on N = 5 with s = one-hot on +2: slot 1 -> slot 3, slot 4 -> slot 1
    got = circular_shift(t([[0.0, 0.6, 0.0, 0.0, 0.4]]), t([[0.0, 1.0]]), [0, 2])
    assert got.tolist() == [[0.0, 0.4, 0.0, 0.6, 0.0]]


# (c) sharpening -------------------------------------------------------------------------------------


def test_sharpen_gamma_one_is_identity():
    w = [0.2, 0.5, 0.3]
    got = sharpen(t([w]), t([[1.0]]), eps=1e-8)
    # (w + eps) / sum(w + eps) differs from w by O(eps)
    assert torch.allclose(got, t([w]), atol=1e-7)


def test_sharpen_gamma_two_by_hand():
    # [0.2, 0.5, 0.3]^2 = [0.04, 0.25, 0.09], sum 0.38
    got = sharpen(t([[0.2, 0.5, 0.3]]), t([[2.0]]), eps=1e-8)
    assert torch.allclose(got, t([[0.04 / 0.38, 0.25 / 0.38, 0.09 / 0.38]]), atol=1e-7)


def test_sharpen_large_gamma_tends_to_one_hot():
    # with gamma = 50: (0.3 / 0.5)^50 ~ 8e-12, (0.2 / 0.5)^50 ~ 1e-20
    got = sharpen(t([[0.2, 0.5, 0.3]]), t([[50.0]]), eps=1e-8)
    assert torch.allclose(got, t([[0.0, 1.0, 0.0]]), atol=1e-10)
    assert 0.0 < got[0, 2].item() < 1e-10


# (d) erase then add ---------------------------------------------------------------------------------


def test_erase_then_add_by_hand():
    memory = t([[[1.0, 2.0], [3.0, 4.0]]])
    w = t([[0.75, 0.25]])
    e = t([[1.0, 0.5]])
    a = t([[0.2, -0.4]])
    # M'[i][j] = M[i][j] (1 - w_i e_j) + w_i a_j
    expected = [
        [1.0 * (1 - 0.75 * 1.0) + 0.75 * 0.2, 2.0 * (1 - 0.75 * 0.5) + 0.75 * -0.4],  # [0.40, 0.95]
        [3.0 * (1 - 0.25 * 1.0) + 0.25 * 0.2, 4.0 * (1 - 0.25 * 0.5) + 0.25 * -0.4],  # [2.30, 3.40]
    ]
    got = write_memory(memory, [w], [e], [a])
    assert torch.allclose(got, t([expected]), atol=1e-12)
    assert torch.allclose(got, t([[[0.40, 0.95], [2.30, 3.40]]]), atol=1e-12)


# (e) two write heads: simultaneous form -------------------------------------------------------------


def test_two_write_heads_are_simultaneous():
    memory = t([[[2.0], [4.0]]])  # N = 2, M = 1
    w1, e1, a1 = t([[1.0, 0.5]]), t([[0.5]]), t([[1.0]])
    w2, e2, a2 = t([[1.0, 0.0]]), t([[0.5]]), t([[2.0]])
    # simultaneous: slot 0: 2 (1 - 0.5)(1 - 0.5) + 1 + 2 = 3.5 ; slot 1: 4 (1 - 0.25)(1 - 0) + 0.5 + 0 = 3.5
    # (sequential head 1 then head 2 would give slot 0 = (2 * 0.5 + 1) * 0.5 + 2 = 3.0)
    got = write_memory(memory, [w1, w2], [e1, e2], [a1, a2])
    assert torch.allclose(got, t([[[3.5], [3.5]]]), atol=1e-12)
    # order of heads does not matter in the simultaneous form
    got_swapped = write_memory(memory, [w2, w1], [e2, e1], [a2, a1])
    assert torch.allclose(got_swapped, got, atol=1e-12)


# LSTM cell against torch's own LSTMCell -------------------------------------------------------------


def test_lstm_cell_matches_torch():
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(4, 3).to(D)
    inp, h, c = torch.randn(2, 4, dtype=D), torch.randn(2, 3, dtype=D), torch.randn(2, 3, dtype=D)
    h_ref, c_ref = cell(inp, (h, c))
    h_got, c_got = lstm_cell(inp, h, c, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    assert torch.allclose(h_got, h_ref, atol=1e-12)
    assert torch.allclose(c_got, c_ref, atol=1e-12)


# Step order: writes happen before reads within a step -----------------------------------------------


def _zero_weights(n_in, H, n_out, N, M, R, W, S):
    w = random_weights(n_in, H, n_out, slots=N, width=M, read_heads=R, write_heads=W, shifts=list(range(S)), seed=0)
    return {k: torch.zeros_like(v) for k, v in w.items()}


def test_step_order_read_sees_this_steps_write():
    # N = 2, M = 2, one read and one write head, shifts [-1, 0, 1]; all controller weights zero so h_t = 0
    # (i = f = o = 0.5, g = tanh(0) = 0 -> c = 0, h = 0) and every head parameter equals its bias.
    N, M, S, BIG = 2, 2, 3, 50.0
    w = _zero_weights(1, 3, 2, N, M, 1, 1, S)
    # write head: g = sigmoid(-50) ~ 0 keeps write_w_init = [1, 0]; s one-hot on offset 0; gamma = 1 + softplus(-50) ~ 1;
    # erase = sigmoid(50) ~ 1; add = tanh(atanh(0.6)), tanh(atanh(-0.8)) = [0.6, -0.8]
    # layout: k(0:2) beta(2) g(3) s(4:7) gamma(7) e(8:10) a(10:12)
    wb = torch.zeros(12, dtype=D)
    wb[3] = -BIG
    wb[4:7] = torch.tensor([-BIG, BIG, -BIG])
    wb[7] = -BIG
    wb[8:10] = BIG
    wb[10:12] = torch.atanh(t([0.6, -0.8]))
    w["write0.bias"] = wb
    w["write_w_init0"] = t([1.0, 0.0])
    # read head: key [0.6, -0.8], beta = softplus(50) = 50, g ~ 1 (pure content), s on offset 0, gamma ~ 1
    rb = torch.zeros(8, dtype=D)
    rb[0:2] = t([0.6, -0.8])
    rb[2] = BIG
    rb[3] = BIG
    rb[4:7] = torch.tensor([-BIG, BIG, -BIG])
    rb[7] = -BIG
    w["read0.bias"] = rb
    w["read_w_init0"] = t([0.5, 0.5])
    # output = the read vector: out.weight = [0 (H) | I (M)]
    w["out.weight"] = t([[0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    # memory starts as [[0, 0], [0.6, 0.8]] (slot 1 has cosine 0.36 - 0.64 = -0.28 with the key)
    w["mem_init"] = t([[0.0, 0.0], [0.6, 0.8]])
    out = reference_ntm(torch.zeros(1, 1, 1, dtype=D), w, slots=N, width=M, read_heads=1, write_heads=1, shifts=[-1, 0, 1])
    # after the write: slot 0 = 0 * (1 - 1) + [0.6, -0.8] ; slot 1 untouched
    # (slot 1 keeps a ~1e-8 write weight from the eps inside sharpening, hence atol 1e-7)
    assert torch.allclose(out["memory"][0, 0], t([[0.6, -0.8], [0.6, 0.8]]), atol=1e-7)
    assert torch.allclose(out["write_weights"][0, 0, 0], t([1.0, 0.0]), atol=1e-7)
    # read: cosines [1, -0.28], beta 50 -> softmax([50, -14]) ~ [1, e^-64]
    assert torch.allclose(out["read_weights"][0, 0, 0], t([1.0, 0.0]), atol=1e-7)
    # y = r = w(0) M[0] + w(1) M[1] ~ [0.6, -0.8]; had the read come before the write, slot 0 would still be
    # all zero (cosines [0, -0.28] -> weight ~1 on slot 0) and the read would be ~[0, 0]
    assert torch.allclose(out["y"][0, 0], t([0.6, -0.8]), atol=1e-6)


def test_shapes_and_controller_sees_previous_reads():
    N, M, R, W, shifts = 5, 3, 2, 2, [-1, 0, 1]
    w = random_weights(4, 6, 3, slots=N, width=M, read_heads=R, write_heads=W, shifts=shifts, seed=1)
    x = torch.randn(2, 4, 4, dtype=D, generator=torch.Generator().manual_seed(2))
    out = reference_ntm(x, w, slots=N, width=M, read_heads=R, write_heads=W, shifts=shifts)
    assert out["y"].shape == (2, 4, 3)
    assert out["read_weights"].shape == (2, 4, R, N)
    assert out["write_weights"].shape == (2, 4, W, N)
    assert out["memory"].shape == (2, 4, N, M)
    for key in ("read_weights", "write_weights"):
        assert torch.allclose(out[key].sum(-1), torch.ones(2, 4, 2, dtype=D), atol=1e-12)
        assert (out[key] > 0).all()
    # the first output depends on read_init (through the controller input), not only through later steps
    w2 = dict(w)
    w2["read_init1"] = w["read_init1"] + 1.0
    out2 = reference_ntm(x, w2, slots=N, width=M, read_heads=R, write_heads=W, shifts=shifts)
    assert not torch.allclose(out2["y"][:, 0], out["y"][:, 0])
    # outputs at step t do not depend on inputs after t (causality)
    x3 = x.clone()
    x3[:, 2:] += 1.0
    out3 = reference_ntm(x3, w, slots=N, width=M, read_heads=R, write_heads=W, shifts=shifts)
    assert torch.allclose(out3["y"][:, :2], out["y"][:, :2], atol=0)
    assert not torch.allclose(out3["y"][:, 2], out["y"][:, 2])


# (f) stability --------------------------------------------------------------------------------------


def test_zero_memory_and_zero_key_are_finite_with_finite_gradients():
    memory = torch.zeros(1, 3, 2, dtype=D, requires_grad=True)
    key = torch.zeros(1, 2, dtype=D, requires_grad=True)
    beta = t([[5.0]]).requires_grad_()
    wc = content_weighting(key, beta, memory)
    assert torch.isfinite(wc).all()
    assert torch.allclose(wc, t([[1 / 3, 1 / 3, 1 / 3]]), atol=1e-12)
    grads = torch.autograd.grad((wc * t([[1.0, 2.0, 3.0]])).sum(), [memory, key, beta])
    assert all(torch.isfinite(g).all() for g in grads)


def test_sharpen_tiny_entries_huge_gamma_finite():
    w = t([[1.0, 1e-30, 1e-30, 1e-30]]).requires_grad_()
    gamma = t([[1e4]]).requires_grad_()
    ws = sharpen(w, gamma)
    assert torch.isfinite(ws).all()
    assert torch.allclose(ws, t([[1.0, 0.0, 0.0, 0.0]]), atol=1e-12)
    grads = torch.autograd.grad((ws * t([[1.0, 2.0, 3.0, 4.0]])).sum(), [w, gamma])
    assert all(torch.isfinite(g).all() for g in grads)
    # all-tiny weighting also stays finite (becomes uniform)
    w2 = t([[1e-30, 1e-30, 1e-30]]).requires_grad_()
    ws2 = sharpen(w2, gamma)
    assert torch.allclose(ws2, t([[1 / 3, 1 / 3, 1 / 3]]), atol=1e-9)
    assert torch.isfinite(torch.autograd.grad(ws2[0, 0], w2)[0]).all()


def test_full_model_degenerate_state_finite_gradients():
    N, M, R, W, shifts = 4, 3, 2, 2, [-1, 0, 1]
    S = len(shifts)
    w = random_weights(3, 5, 2, slots=N, width=M, read_heads=R, write_heads=W, shifts=shifts, seed=3)
    w["mem_init"] = torch.zeros(N, M, dtype=D)
    for j in range(R):
        w[f"read_init{j}"] = torch.zeros(M, dtype=D)
        w[f"read_w_init{j}"] = t([1.0, 1e-30, 1e-30, 1e-30])
    for j in range(W):
        w[f"write_w_init{j}"] = t([1e-30, 1e-30, 1.0, 1e-30])
    for name in [f"read{j}" for j in range(R)] + [f"write{j}" for j in range(W)]:
        # all-zero keys, gate g -> 0 (keeps the tiny-entry previous weighting), gamma ~ 1e4
        w[f"{name}.weight"][:M] = 0.0
        w[f"{name}.bias"][:M] = 0.0
        w[f"{name}.bias"][M + 1] = -40.0
        w[f"{name}.bias"][M + 2 + S] = 1e4
    for j in range(W):
        w[f"write{j}.bias"][M + 3 + S :] = 0.0  # e = 0.5, a = 0 at zero weight -> memory stays near zero
        w[f"write{j}.weight"][M + 3 + S :] = 0.0
    x = torch.randn(2, 3, 3, dtype=D, generator=torch.Generator().manual_seed(4))
    params = {k: v.clone().requires_grad_() for k, v in w.items()}
    out = reference_ntm(x, params, slots=N, width=M, read_heads=R, write_heads=W, shifts=shifts)
    for v in out.values():
        assert torch.isfinite(v).all()
    assert torch.allclose(out["memory"], torch.zeros_like(out["memory"]))
    names = list(params)
    loss = out["y"].pow(2).sum() + out["read_weights"][..., 0].sum() + out["write_weights"][..., 2].sum()
    grads = torch.autograd.grad(loss, [params[k] for k in names])
    for k, g in zip(names, grads):
        assert torch.isfinite(g).all(), k


# (g) gradcheck --------------------------------------------------------------------------------------


@pytest.mark.parametrize("names", [("lstm.weight_ih", "write0.weight"), ("read1.bias", "mem_init", "write_w_init1")])
def test_gradcheck_full_reference(names):
    N, M, H, R, W, shifts = 4, 3, 5, 2, 2, [-1, 0, 1]
    w = random_weights(2, H, 3, slots=N, width=M, read_heads=R, write_heads=W, shifts=shifts, seed=5)
    x = torch.randn(2, 3, 2, dtype=D, generator=torch.Generator().manual_seed(6))

    def f(*tensors):
        ww = dict(w)
        ww.update(zip(names, tensors))
        out = reference_ntm(x, ww, slots=N, width=M, read_heads=R, write_heads=W, shifts=shifts)
        return out["y"], out["read_weights"], out["memory"]

    inputs = tuple(w[k].clone().requires_grad_() for k in names)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradcheck_input():
    N, M, H, R, W, shifts = 4, 3, 5, 1, 1, [-1, 0, 1]
    w = random_weights(2, H, 3, slots=N, width=M, read_heads=R, write_heads=W, shifts=shifts, seed=7)
    x = torch.randn(2, 3, 2, dtype=D, generator=torch.Generator().manual_seed(8)).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda xx: reference_ntm(xx, w, slots=N, width=M, read_heads=R, write_heads=W, shifts=shifts)["y"], (x,)
    )


def test_random_weights_dtype_and_inits():
    cfg = dict(slots=5, width=2, read_heads=2, write_heads=1, shifts=[-1, 0, 1], seed=0, dtype=torch.float32)
    w = random_weights(2, 4, 3, **cfg)
    assert all(v.dtype == torch.float32 for v in w.values())
    assert w["read0.weight"].shape == (2 + 1 + 1 + 3 + 1, 4)
    assert w["write0.weight"].shape == (8 + 2 * 2, 4)
    assert w["lstm.weight_ih"].shape == (16, 2 + 2 * 2)
    assert w["out.weight"].shape == (3, 4 + 2 * 2)
    for k in ("read_w_init0", "read_w_init1", "write_w_init0"):
        assert (w[k] > 0).all() and abs(w[k].sum().item() - 1.0) < 1e-6
    w_again = random_weights(2, 4, 3, **cfg)
    assert all(torch.equal(w[k], w_again[k]) for k in w)
