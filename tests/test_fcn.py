"""The trained network (nc1lib.fcn): update rule, batching, initialisation, divergence, sweep rows."""
import numpy as np
import pytest
import torch

from nc1lib import D1, FourClass, nc1_from_features
from nc1lib.fcn import FCNModel, init_params, train_fcn, train_fcn_loop
from nc1lib.sweep import sweep


def _stack(spec, seeds):
    ds = [spec.sample(s) for s in seeds]
    return np.stack([d.X for d in ds]), np.stack([d.y for d in ds]), ds


@pytest.mark.parametrize("activation", ["erf", "relu"])
@pytest.mark.parametrize("depth", [2, 3])
def test_matches_torch_module_and_sgd(activation, depth):
    """Hand-written batched GD == nn.Module + autograd + torch.optim.SGD (momentum, weight decay, biases)."""
    X, y, _ = _stack(D1(24, 3), [1, 2, 3])
    kw = dict(activation=activation, width=16, depth=depth, lr=0.01, weight_decay=1e-2, momentum=0.5,
              epochs=25, sigma_b=0.3, seed=[7, 8, 9], dtype="float64")
    res = train_fcn(X, y, chunk=10, **kw)                  # three chunks of samples, the last one short
    loss, feats, weights = train_fcn_loop(X, y, **kw)
    np.testing.assert_allclose(res.loss, loss, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.features, feats, rtol=1e-9, atol=1e-12)
    for a, b in zip(res.weights, weights):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert np.all(res.loss[:, -1] < res.loss[:, 0])          # it learns


@pytest.mark.parametrize("activation", ["erf", "relu"])
@pytest.mark.parametrize("depth", [2, 3])
def test_chunked_gradient_equals_one_chunk(activation, depth):
    """Accumulating the full-batch gradient over sample chunks (7 does not divide 24) changes nothing."""
    X, y, _ = _stack(D1(24, 3), [1, 2, 3])
    kw = dict(activation=activation, width=16, depth=depth, lr=0.01, momentum=0.5, epochs=15, record=5,
              seed=[7, 8, 9], dtype="float64")
    a, b = train_fcn(X, y, chunk=7, **kw), train_fcn(X, y, chunk=24, **kw)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)
    np.testing.assert_allclose(a.features, b.features, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(a.nc1, b.nc1, rtol=1e-10)
    np.testing.assert_array_equal(a.accuracy_history, b.accuracy_history)


def test_vector_targets_match_module():
    """k > 1 outputs: the MSE is the mean over samples and outputs, like nn.MSELoss."""
    ds = FourClass(16, 2).sample(0)
    Y = np.eye(4)[ds.labels]
    kw = dict(width=8, lr=0.1, epochs=10, seed=3, dtype="float64")
    res = train_fcn(ds.X, Y, labels=ds.labels, **kw)
    loss, feats, _ = train_fcn_loop(ds.X, Y, **kw)
    np.testing.assert_allclose(res.loss, loss, rtol=1e-10)
    assert res.loss.shape == (1, 11) and res.features.shape == (1, 16, 8)


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 2e-5)])
def test_batched_equals_alone(dtype, rtol):
    """Each repeat of a batch gives the same result as training it alone with its seed."""
    X, y, ds = _stack(D1(32, 4), [10, 11, 12, 13])
    kw = dict(activation="erf", width=20, lr=0.05, epochs=40, record=10, dtype=dtype)
    both = train_fcn(X, y, seed=[5, 6, 7, 8], **kw)
    for r in range(4):
        alone = train_fcn(ds[r].X, ds[r].y, seed=5 + r, **kw)
        np.testing.assert_allclose(both.loss[r], alone.loss[0], rtol=rtol, atol=1e-7)
        np.testing.assert_allclose(both.features[r], alone.features[0], rtol=rtol, atol=1e-6)
        np.testing.assert_allclose(both.nc1[r], alone.nc1[0], rtol=100 * rtol)
        np.testing.assert_allclose(both.W1[r], alone.W1[0], rtol=rtol, atol=1e-7)


def test_initialisation_scales():
    """W1 ~ N(0, sigma_w^2/d0), W2 ~ N(0, sigma_w2^2/h), biases 0: a factor-2 error fails."""
    Ws, Bs = init_params(0, d0=50, widths=[400], sigma_w=1.5, sigma_w2=1.97)
    assert np.var(Ws[0].numpy()) == pytest.approx(1.5 ** 2 / 50, rel=0.03)   # 20000 draws: sd ~1%
    assert np.var(Ws[1].numpy()) == pytest.approx(1.97 ** 2 / 400, rel=0.25)  # 400 draws: sd ~7%
    assert all(float(b.abs().max()) == 0.0 for b in Bs)
    # same seed, same draw; other seed, other draw
    assert torch.equal(init_params(0, 50, [400])[0][0], init_params(0, 50, [400])[0][0])
    assert not torch.equal(init_params(1, 50, [400])[0][0], init_params(0, 50, [400])[0][0])


def test_recorded_nc1_is_nc1_of_features():
    X, y, ds = _stack(D1(40, 2), [0, 1])
    res = train_fcn(X, y, width=30, lr=0.01, epochs=30, record=[0, 15, 30], seed=[1, 2])
    assert list(res.epochs) == [0, 15, 30] and res.nc1.shape == (2, 3)
    for r in range(2):
        f = nc1_from_features(res.features[r].astype(np.float64), ds[r].labels, "paper")
        assert res.nc1[r, -1] == pytest.approx(f.nc1, rel=1e-12)
        assert res.tr_w[r, -1] == pytest.approx(f.tr_w, rel=1e-12)
    assert np.all(res.nc1[:, -1] < res.nc1[:, 0])            # training collapses the features
    traj = res.trajectory()
    assert len(traj) == 6 and {"epoch", "loss", "accuracy", "nc1"} <= set(traj.columns)


def test_accuracy_nearest_target():
    ds = FourClass(40, 1).sample(0)
    res = train_fcn(ds.X, ds.y, width=40, lr=0.02, epochs=300, seed=0)
    out_free = res.accuracy[0, -1]
    assert 0.0 <= out_free <= 1.0
    assert out_free > 0.9       # four well-separated classes on a scalar output are learnt


def test_divergence_is_reported_not_dropped():
    """A repeat whose loss blows up is flagged with its epoch; the others are untouched."""
    X, y, _ = _stack(D1(32, 2), [0, 1, 2])
    X[1] *= 60.0                                   # this repeat's effective step is far too large
    kw = dict(activation="relu", width=16, lr=0.05, epochs=60, record=20)
    res = train_fcn(X, y, seed=[1, 2, 3], **kw)
    assert res.diverged.tolist() == [False, True, False]
    e0 = res.diverged_epoch[1]
    assert 0 < e0 <= 60
    assert np.all(np.isnan(res.loss[1, e0 + 1:])) and np.isfinite(res.loss[1, :e0]).all()
    assert np.isnan(res.nc1[1, -1]) and np.isfinite(res.nc1[[0, 2], -1]).all()
    alone = train_fcn(X[[0, 2]], y[[0, 2]], seed=[1, 3], **kw)
    np.testing.assert_allclose(res.loss[[0, 2]], alone.loss, rtol=1e-5)


def test_sweep_rows_keep_diverged_runs():
    model = FCNModel("erf", width=16, lr=0.05, epochs=20)
    table = sweep(model, [D1(16, 1), D1(16, 4)], repeats=2, cache=False, progress=False)
    assert len(table) == 4 and set(table["model"]) == {"2l-fcn"}
    for col in ("nc1", "tr_w", "tr_b", "final_loss", "train_accuracy", "diverged", "diverged_epoch", "activation"):
        assert col in table.columns
    assert table["finite"].all() and not table["diverged"].any()
    bad = FCNModel("relu", width=16, lr=50.0, epochs=20)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        t2 = sweep(bad, [D1(16, 4)], repeats=2, cache=False, progress=False)
    assert len(t2) == 2 and t2["diverged"].all() and (~t2["finite"]).all()


@pytest.mark.parametrize("kw,match", [
    (dict(activation="tanh"), "activation"), (dict(lr=-1.0), "lr"), (dict(epochs=-2), "epochs"),
    (dict(momentum=1.0), "momentum"), (dict(depth=1), "depth"), (dict(width=[5, 5]), "width"),
    (dict(record=[0, 99]), "record"), (dict(seed=[1, 2]), "seed"), (dict(dtype="float16"), "dtype"),
    (dict(weight_decay=-1e-6), "weight_decay"), (dict(num_threads=0), "num_threads"), (dict(chunk=0), "chunk"),
])
def test_bad_input_names_the_parameter(kw, match):
    ds = D1(8, 2).sample(0)
    with pytest.raises(ValueError, match=match):
        train_fcn(ds.X, ds.y, epochs=kw.pop("epochs", 3), width=kw.pop("width", 4), **kw)


def test_bad_data():
    ds = D1(8, 2).sample(0)
    X = ds.X.copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains"):
        train_fcn(X, ds.y, epochs=1, width=4)
    with pytest.raises(ValueError, match="y has"):
        train_fcn(ds.X[None], ds.y[None, :4], epochs=1, width=4)
    with pytest.raises(ValueError, match="at least 2"):
        train_fcn(ds.X, np.ones(8), epochs=1, width=4)


def test_batched_nc1_stats_equal_nc1_from_features():
    """The in-training NC1 (torch, batched, float64) equals nc1lib.nc1_from_features, both weightings."""
    from nc1lib.fcn import nc1_stats_batched
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [5, 9, 16])                  # imbalanced: the weightings differ
    H = rng.standard_normal((2, 30, 7)) + 3.0 * labels[None, :, None]
    onehot = torch.as_tensor(np.eye(3)[labels][None].repeat(2, axis=0))
    st = nc1_stats_batched(torch.as_tensor(H, dtype=torch.float32), onehot)
    for r in range(2):
        Hr = torch.as_tensor(H[r], dtype=torch.float32).double().numpy()
        p, s = nc1_from_features(Hr, labels, "paper"), nc1_from_features(Hr, labels, "sample")
        assert float(st["nc1"][r]) == pytest.approx(p.nc1, rel=1e-12)
        assert float(st["tr_w"][r]) == pytest.approx(p.tr_w, rel=1e-12)
        assert float(st["tr_b"][r]) == pytest.approx(p.tr_b, rel=1e-12)
        assert float(st["nc1_sample"][r]) == pytest.approx(s.nc1, rel=1e-12)
        assert float(st["nc1_classical"][r]) == pytest.approx(p.nc1_classical, rel=1e-9)
    assert abs(float(st["nc1"][0]) / float(st["nc1_sample"][0]) - 1) > 1e-3   # imbalance shows
    dead = nc1_stats_batched(torch.zeros(1, 30, 7), onehot[:1])              # Tr Sigma_B = 0
    assert np.isnan(float(dead["nc1"][0]))


# ----------------------------------------------------------------------------- independent recomputations

def _forward(res, X, activation):
    """Outputs of the trained networks rebuilt from the returned weights and biases (numpy)."""
    from scipy.special import erf
    phi = erf if activation == "erf" else (lambda z: np.maximum(z, 0.0))
    A = X
    for l, (W, b) in enumerate(zip(res.weights, res.biases)):
        Z = np.einsum("rni,roi->rno", A, W) + b[:, None, :]
        A = phi(Z) if l < len(res.weights) - 1 else Z
    return A                                                       # (R, N, k)


@pytest.mark.parametrize("spec,activation", [(D1(48, 2), "erf"), (D1(48, 2), "relu"), (FourClass(48, 1), "erf")])
def test_loss_and_accuracy_history_from_returned_weights(spec, activation):
    """loss[:, e] and accuracy_history[:, e] equal the MSE and the nearest-target accuracy of the
    network rebuilt from the weights that training for e epochs returns; zero_error_epoch is the
    first epoch of accuracy 1 in that history."""
    X, y, ds = _stack(spec, [3, 4])
    labels = np.stack([d.labels for d in ds])
    kw = dict(labels=labels, activation=activation, width=24, lr=0.01, seed=[1, 2], dtype="float64")
    full = train_fcn(X, y, epochs=40, **kw)
    assert np.all(full.accuracy_history[:, :2] < 1) and np.all(full.accuracy_history[:, -1] == 1)
    targets = np.unique(y)
    for e in (0, 1, 2, 5, 17, 40):
        res = train_fcn(X, y, epochs=e, **kw)
        out = _forward(res, X, activation)[:, :, 0]
        np.testing.assert_allclose(full.loss[:, e], np.mean((out - y) ** 2, axis=1), rtol=1e-10)
        nearest = targets[np.argmin(np.abs(out[..., None] - targets), axis=2)]
        acc = np.mean(nearest == y, axis=1)
        np.testing.assert_allclose(full.accuracy_history[:, e], acc, rtol=0, atol=1e-6)   # one sample: 0.02
        np.testing.assert_allclose(res.accuracy[:, -1], acc, rtol=0, atol=1e-6)
    for r in range(2):
        z = full.zero_error_epoch[r]
        assert z >= 2 and full.accuracy_history[r, z] == 1 and np.all(full.accuracy_history[r, :z] < 1)
    never = train_fcn(X, y, epochs=1, **kw)
    assert never.zero_error_epoch.tolist() == [-1, -1]


def test_nc1_of_every_hidden_layer():
    """depth 3: nc1_layers[:, l] is the NC1 of hidden layer l's post-activations (not of the last one)."""
    X, y, ds = _stack(D1(40, 3), [0, 1])
    res = train_fcn(X, y, depth=3, width=[20, 12], lr=0.05, epochs=30, seed=[5, 6], dtype="float64")
    assert res.nc1_layers.shape == (2, 2, 1)
    for r in range(2):
        for l in range(2):
            f = nc1_from_features(res.hidden[l][r], ds[r].labels, "paper")
            assert res.nc1_layers[r, l, -1] == pytest.approx(f.nc1, rel=1e-12)
        assert res.nc1_layers[r, 1, -1] == res.nc1[r, -1]
    assert abs(res.nc1_layers[0, 0, -1] / res.nc1_layers[0, 1, -1] - 1) > 1e-3   # the layers differ


def test_sweep_row_is_train_fcn_of_its_seed():
    """A sweep row is train_fcn on spec.sample(row.seed) with seed=row.seed: each repeat has its own
    seed, and nc1_init / nc1_before / nc1 are NC1 at epochs 0, epochs - epochs // 10 and epochs."""
    spec = D1(24, 2)
    model = FCNModel("erf", width=12, lr=0.05, epochs=30, dtype="float64")
    table = sweep(model, [spec], repeats=3, cache=False, progress=False)
    assert table.seed.nunique() == 3 and table.nc1.nunique() == 3
    for _, row in table.iterrows():
        d = spec.sample(int(row.seed))
        r = train_fcn(d.X, d.y, labels=d.labels, activation="erf", width=12, lr=0.05, epochs=30,
                      seed=int(row.seed), dtype="float64", record=[0, 27, 30])
        assert row.nc1 == pytest.approx(r.nc1[0, 2], rel=1e-9)
        assert row.nc1_before == pytest.approx(r.nc1[0, 1], rel=1e-9) and row.epoch_before == 27
        assert row.nc1_init == pytest.approx(r.nc1[0, 0], rel=1e-9)
        assert row.final_loss == pytest.approx(r.loss[0, -1], rel=1e-9)
        assert row.zero_error_epoch == r.zero_error_epoch[0]
    assert (table.nc1_init != table.nc1_before).all()


def test_divergence_by_growth_while_finite():
    """Erf at a step just too large: the loss grows geometrically but stays finite for long. The run
    diverges at the first epoch whose loss exceeds divergence_factor x the initial loss, not later."""
    X, y, _ = _stack(D1(32, 2), [0, 0])
    X[0] *= 0.1                                      # repeat 0: small inputs, stable; repeat 1 diverges
    factor = 1e3
    res = train_fcn(X, y, activation="erf", width=16, lr=0.1, epochs=40, seed=[1, 1], dtype="float64",
                    divergence_factor=factor)
    assert res.diverged.tolist() == [False, True]
    e0 = res.diverged_epoch[1]
    L = res.loss[1]
    assert e0 >= 3                                   # several epochs of growth first
    assert np.isfinite(L[e0]) and L[e0] > factor * L[0]          # the offending value, finite
    assert np.all(L[:e0] <= factor * L[0])                       # every earlier epoch is fine
    assert np.all(np.isnan(L[e0 + 1:])) and np.isnan(res.accuracy_history[1, e0:]).all()
    assert res.diverged_epoch[0] == -1 and np.isfinite(res.loss[0]).all()


def test_initial_bias_scale():
    """sigma_b > 0: biases start N(0, sigma_b^2) (hidden: 4000 draws, sd of the variance ~2%)."""
    Ws, Bs = init_params(0, d0=2, widths=[4000], sigma_b=0.5)
    assert np.var(Bs[0].numpy()) == pytest.approx(0.25, rel=0.08)
    assert float(Bs[1].abs().max()) > 0
    ds = D1(8, 2).sample(0)
    res = train_fcn(ds.X, ds.y, width=4000, epochs=0, sigma_b=0.5, seed=0, dtype="float64")
    np.testing.assert_array_equal(res.biases[0][0], Bs[0].numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_cuda_matches_cpu(activation):
    """device='cuda' trains the same networks as the CPU (float64; float32 differs by rounding only)."""
    X, y, _ = _stack(D1(40, 3), [0, 1, 2])
    kw = dict(activation=activation, width=32, lr=0.05, momentum=0.5, epochs=60, record=20, seed=[1, 2, 3])
    for dtype, rtol in (("float64", 1e-9), ("float32", 1e-3)):
        cpu = train_fcn(X, y, dtype=dtype, **kw)
        gpu = train_fcn(X, y, dtype=dtype, device="cuda", **kw)
        np.testing.assert_allclose(gpu.loss, cpu.loss, rtol=rtol, atol=1e-6)
        np.testing.assert_allclose(gpu.nc1, cpu.nc1, rtol=10 * rtol)
        np.testing.assert_allclose(gpu.features, cpu.features, rtol=rtol, atol=1e-5)
        assert gpu.config["device"].startswith("cuda") and not gpu.diverged.any()
    X[1] *= 60.0                                     # divergence is detected on the GPU too
    gpu = train_fcn(X, y, device="cuda", **{**kw, "activation": "relu"})
    assert gpu.diverged.tolist() == [False, True, False]
