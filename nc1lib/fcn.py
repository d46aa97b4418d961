"""Trained fully connected networks: the finite-width side of the paper (Sec. 5.4, App. G).

A network of ``depth`` L has L - 1 hidden layers (depth 2 is the paper's 2L-FCN,
MATH.md section 4)::

    f(x) = W_L phi( ... phi(W_1 x + b_1) ... ) + b_L

with ``W_1 ~ N(0, sigma_w^2 / d0)``, hidden ``W_l ~ N(0, sigma_w^2 / h_{l-1})``, the
output ``W_L ~ N(0, sigma_w2^2 / h)`` and biases ``N(0, sigma_b^2)`` (``sigma_b = 0``:
biases start at 0 and are trained). Training is full-batch gradient descent on the mean
squared error (mean over samples and outputs, like ``torch.nn.MSELoss``), with the
update rule of ``torch.optim.SGD(lr, momentum, weight_decay)`` applied to every
parameter, biases included.

All repeats of a call train *together*: parameters carry a leading repeat dimension and
every step is a handful of batched matrix products (``torch.baddbmm``/``bmm``) with a
hand-written backward pass. Repeat ``r`` draws its initialisation from its own seed, so
it gives the same result as training it alone (``tests/test_fcn.py`` checks both this
and the agreement with ``torch.nn.Module`` + ``torch.optim.SGD``).

Public entry point: :func:`train_fcn`. Sweep model: :class:`FCNModel`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ._validate import as_float_array, check_choice, check_positive

ACTIVATIONS = ("erf", "relu")

#: The paper's settings for the 2L-FCN (EXPERIMENTS.md, "Models and their settings").
PAPER_DEFAULTS = dict(width=500, depth=2, sigma_w=1.0, sigma_w2=1.97, sigma_b=0.0, lr=1e-3,
                      weight_decay=1e-6, momentum=0.0, epochs=1000)


@dataclass
class FCNResult:
    """What :func:`train_fcn` returns. Every array has a leading repeat dimension ``R``.

    ``loss[r, e]`` is the training MSE after ``e`` updates (``e = 0 .. epochs``), and
    ``accuracy_history[r, e]`` the training accuracy then (the predicted class is the one whose
    target is nearest to the output: the sign of the output for targets -1/+1);
    ``epochs`` lists the epochs at which NC1 and accuracy were recorded (``T`` of them).
    A repeat that diverged keeps its row: ``diverged[r]`` is True, ``diverged_epoch[r]``
    is the first epoch whose loss was NaN/inf or above ``divergence_factor`` times the
    initial loss, and its loss, NC1 and accuracy from that epoch on are NaN.
    """

    epochs: np.ndarray              # (T,) recorded epochs
    nc1: np.ndarray                 # (R, T) NC1 of the last hidden layer, paper weighting (eq. 7)
    nc1_sample: np.ndarray          # (R, T) same, sample-weighted (MATH.md section 2)
    nc1_classical: np.ndarray       # (R, T) (1/C) Tr(Sigma_W Sigma_B^+) (Papyan et al. 2020)
    tr_w: np.ndarray                # (R, T) Tr Sigma_W, paper weighting
    tr_b: np.ndarray                # (R, T) Tr Sigma_B, paper weighting
    nc1_layers: np.ndarray          # (R, L-1, T) NC1 (paper weighting) of every hidden layer
    accuracy: np.ndarray            # (R, T) training accuracy: nearest class target to the output
    loss: np.ndarray                # (R, epochs + 1) training MSE
    accuracy_history: np.ndarray    # (R, epochs + 1) training accuracy after e updates
    zero_error_epoch: np.ndarray    # (R,) first epoch with 100% training accuracy (-1: never)
    diverged: np.ndarray            # (R,) bool
    diverged_epoch: np.ndarray      # (R,) int, -1 where the run did not diverge
    features: np.ndarray | None     # (R, N, h) last hidden post-activations after training
    hidden: list | None             # every hidden layer's post-activations, (R, N, h_l) each
    weights: list                   # [W_1 (R, h, d0), ..., W_L (R, k, h)] after training
    biases: list                    # [b_1 (R, h), ..., b_L (R, k)] after training
    seeds: list
    config: dict = field(default_factory=dict)
    seconds: float = float("nan")

    @property
    def W1(self) -> np.ndarray:
        """The trained first-layer weights, (R, h, d0) (rows are the hidden units)."""
        return self.weights[0]

    @property
    def final_loss(self) -> np.ndarray:
        return self.loss[:, -1]

    @property
    def final_nc1(self) -> np.ndarray:
        return self.nc1[:, -1]

    @property
    def final_accuracy(self) -> np.ndarray:
        return self.accuracy[:, -1]

    def trajectory(self):
        """The recorded trajectory as a tidy DataFrame: one row per (repeat, recorded epoch)."""
        import pandas as pd
        R, T = self.nc1.shape
        rows = []
        for r in range(R):
            for t, e in enumerate(self.epochs):
                rows.append({"repeat": r, "seed": self.seeds[r], "epoch": int(e), "loss": self.loss[r, e],
                             "accuracy": self.accuracy[r, t], "nc1": self.nc1[r, t],
                             "nc1_classical": self.nc1_classical[r, t], "tr_w": self.tr_w[r, t],
                             "tr_b": self.tr_b[r, t], **{f"nc1_layer{l + 1}": self.nc1_layers[r, l, t]
                                                         for l in range(self.nc1_layers.shape[1])}})
        return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- inputs

def _torch_dtype(dtype):
    import torch
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    names = {"float32": torch.float32, "float64": torch.float64, "float": torch.float32, "double": torch.float64}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of ['float32', 'float64']")
    return names[dtype]


def _widths(width, depth: int) -> list[int]:
    if int(depth) != depth or depth < 2:
        raise ValueError(f"depth must be an integer >= 2 (2 is the 2L-FCN), got {depth!r}")
    ws = [width] * (depth - 1) if np.ndim(width) == 0 else list(width)
    if len(ws) != depth - 1:
        raise ValueError(f"width lists {len(ws)} hidden widths, but depth {depth} has {depth - 1} hidden layers")
    for w in ws:
        if int(w) != w or w < 1:
            raise ValueError(f"width must be positive integers, got {width!r}")
    return [int(w) for w in ws]


def _record_epochs(record, epochs: int) -> np.ndarray:
    if record is None:
        rec = [epochs]
    elif np.ndim(record) == 0:
        k = int(record)
        if k != record or k < 1:
            raise ValueError(f"record must be a positive integer (record every k epochs) or a list of epochs, got {record!r}")
        rec = list(range(0, epochs + 1, k)) + [epochs]
    else:
        rec = [int(e) for e in record]
        bad = [e for e in rec if e < 0 or e > epochs]
        if bad:
            raise ValueError(f"record: epochs must lie in [0, epochs={epochs}], got {bad}")
    return np.array(sorted(set(rec)), dtype=np.int64)


def _prepare(X, y, labels):
    """Stack to (R, N, d0) inputs, (R, N, k) targets, (R, N) labels and the class targets."""
    X = as_float_array(X, "X")
    single = X.ndim == 2
    if X.ndim == 2:
        X = X[None]
    if X.ndim != 3:
        raise ValueError(f"X must be (N, d0) or a stack (R, N, d0), got shape {X.shape}")
    R, N, _ = X.shape
    y = as_float_array(y, "y")
    if single:
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2:
            raise ValueError(f"y must be (N,) or (N, k) for X of shape {X.shape}, got shape {y.shape}")
        y = y[None]
    else:
        if y.ndim == 1:                       # one target vector shared by all repeats
            y = np.broadcast_to(y[None, :, None], (R, y.shape[0], 1))
        elif y.ndim == 2:
            y = y[:, :, None]
        if y.ndim != 3:
            raise ValueError(f"y must be (N,), (R, N) or (R, N, k) for X of shape {X.shape}, got shape {y.shape}")
    if y.shape[:2] != (R, N):
        raise ValueError(f"y has {y.shape[:2]} (repeats, samples) but X has {(R, N)}")
    if labels is None:
        labs = []
        for r in range(R):
            _, inv = np.unique(y[r], axis=0, return_inverse=True)
            labs.append(inv.reshape(N))
        labels = np.stack(labs)
    else:
        labels = np.asarray(labels)
        if labels.ndim == 1:
            labels = np.broadcast_to(labels, (R, labels.shape[0]))
        if labels.shape != (R, N):
            raise ValueError(f"labels must be (N,) or (R, N) = {(R, N)}, got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    # the target of each class (first sample's), per repeat: (R, C, k)
    targets = []
    for r in range(R):
        cls = np.unique(labels[r])
        if cls.size < 2:
            raise ValueError(f"labels of repeat {r} contain {cls.size} class(es); NC1 needs at least 2")
        targets.append(np.stack([y[r][labels[r] == c][0] for c in cls]))
    if len({t.shape for t in targets}) != 1:
        raise ValueError("every repeat must have the same number of classes")
    return X, np.ascontiguousarray(y), labels, np.stack(targets), single


def init_params(seed: int, d0: int, widths: Sequence[int], k: int = 1, sigma_w: float = 1.0,
                sigma_w2: float = 1.97, sigma_b: float = 0.0):
    """One network's initial parameters from its own seed, in float64 on the CPU (MATH.md section 4).

    Returns ``(weights, biases)``: ``W_1 ~ N(0, sigma_w^2/d0)``, hidden ``W_l ~ N(0, sigma_w^2/h_{l-1})``,
    output ``W_L ~ N(0, sigma_w2^2/h)``, hidden biases ``N(0, sigma_b^2)``, output bias ``N(0, sigma_b^2)``.
    Drawn in a fixed order from ``torch.Generator().manual_seed(seed)``, independent of device and dtype.
    """
    import torch
    g = torch.Generator().manual_seed(int(seed))
    dims = [int(d0), *[int(w) for w in widths], int(k)]
    weights, biases = [], []
    for l in range(len(dims) - 1):
        fan_in, fan_out = dims[l], dims[l + 1]
        scale = (sigma_w2 if l == len(dims) - 2 else sigma_w) / math.sqrt(fan_in)
        weights.append(torch.randn(fan_out, fan_in, generator=g, dtype=torch.float64) * scale)
        b = torch.randn(fan_out, generator=g, dtype=torch.float64) * sigma_b
        biases.append(b if sigma_b > 0 else torch.zeros(fan_out, dtype=torch.float64))
    return weights, biases


# ----------------------------------------------------------------------------- training

_ERF_DERIV = 2.0 / math.sqrt(math.pi)   # d/dz erf(z) = (2/sqrt(pi)) exp(-z^2)
_CHUNK_ELEMS = 1 << 19                  # float entries per activation buffer chunk on the CPU (2 MB in float32)


def nc1_stats_batched(A, onehot):
    """NC1 of a stack of feature matrices at once, in float64 (paper eqs. 5-7; same numbers as
    :func:`nc1lib.nc1_from_features`, which the tests check).

    ``A`` (R, N, p) features, ``onehot`` (R, N, C) class indicators (float64, same device).
    Returns a dict of (R,) float64 tensors: ``nc1`` and ``tr_w``, ``tr_b`` (paper weighting),
    ``nc1_sample`` (sample weighting) and ``nc1_classical`` ((1/C) Tr(Sigma_W Sigma_B^+)).
    NaN where the features are not finite or Tr Sigma_B = 0.
    """
    import torch
    H = A.to(torch.float64)
    R, N, _ = H.shape
    counts = onehot.sum(dim=1)                                         # (R, C)
    C = counts.shape[1]
    means = torch.bmm(onehot.transpose(1, 2), H) / counts[:, :, None]  # class means mu_c (R, C, p)
    mu_G = H.mean(dim=1)                                               # global mean (R, p)
    Res = H - torch.bmm(onehot, means)                                 # h - mu_c
    tr_w_s = Res.square().sum(dim=(1, 2)) / N                          # Tr Sigma_W, eq. 5
    D = means - mu_G[:, None, :]
    tr_b_s = D.square().sum(dim=(1, 2)) / C                            # Tr Sigma_B, eq. 5
    # Tr(Sigma~_T - Sigma~_B), Tr(Sigma~_B - Sigma_G) (eq. 6), as nc1.nc1_from_features writes them
    tr_w = tr_w_s + ((counts / N - 1.0 / C) * means.square().sum(dim=2)).sum(dim=1)
    tr_b = tr_b_s + 2.0 * (mu_G * (means.mean(dim=1) - mu_G)).sum(dim=1)
    Dp = torch.linalg.pinv(D)                                          # (R, p, C)
    classical = torch.bmm(Res, Dp).square().sum(dim=(1, 2)) / N
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=H.device)
    ok = torch.isfinite(H).all(dim=2).all(dim=1) & (tr_b != 0) & (tr_b_s != 0)

    def safe(x):
        return torch.where(ok, x, nan)
    return {"nc1": safe(tr_w / tr_b), "nc1_sample": safe(tr_w_s / tr_b_s), "nc1_classical": safe(classical),
            "tr_w": safe(tr_w), "tr_b": safe(tr_b)}


def train_fcn(X, y, *, labels=None, activation: str = "erf", width=500, depth: int = 2,
              sigma_w: float = 1.0, sigma_w2: float = 1.97, sigma_b: float = 0.0,
              lr: float = 1e-3, weight_decay: float = 1e-6, momentum: float = 0.0, epochs: int = 1000,
              record=None, seed=0, device: str = "cpu", dtype="float32",
              divergence_factor: float = 1e3, return_features: bool = True,
              num_threads: int | None = None, chunk: int | None = None) -> FCNResult:
    """Train fully connected networks by full-batch gradient descent; all repeats at once.

    Parameters
    ----------
    X : (N, d0) one dataset, or (R, N, d0) a stack of R same-shaped datasets (one network each).
    y : scalar targets (N,) / (R, N), or vector targets (N, k) / (R, N, k).
    labels : integer class of each sample, (N,) or (R, N). Default: classes are the distinct targets.
    activation : "erf" or "relu".
    width : hidden width h (or a list of widths, one per hidden layer); depth : number of weight
        layers (2 is the paper's 2L-FCN; App. G goes deeper).
    sigma_w, sigma_w2, sigma_b : initialisation scales (MATH.md section 4; paper: 1, 1.97, 0).
    lr, weight_decay, momentum, epochs : ``torch.optim.SGD``'s full-batch update on every parameter.
        Defaults are the paper's (lr 1e-3, weight decay 1e-6, momentum 0, 1000 epochs).
    record : epochs at which to record NC1 and accuracy: None (only the last), an int k (every k
        epochs and the last) or a list of epochs in [0, epochs]. The loss is recorded every epoch.
    seed : an int (repeat r uses seed + r) or one seed per repeat.
    device, dtype : where and in what precision to train ("cuda" works; float32 default).
        NC1 is always computed in float64 from the features.
    divergence_factor : a repeat diverges at the first epoch whose loss is NaN/inf or exceeds
        this factor times its initial loss; it is reported, never dropped.
    return_features : keep the final hidden features in the result (they are (R, N, h) each).
    num_threads : CPU threads for torch during this call (restored afterwards); None keeps torch's
        setting. On a shared machine, 1 thread per process (and a process pool over cells) is
        usually fastest.
    chunk : samples per chunk of the (full-batch) gradient computation. None: on the CPU, enough
        for the activations of all repeats to stay in cache (about 2 MB each); on a GPU, all samples.
        It changes only the order of floating-point summation.

    Returns
    -------
    :class:`FCNResult`, with a leading repeat dimension on every array (R = 1 for one dataset).
    """
    import torch

    if num_threads is not None:
        if int(num_threads) != num_threads or num_threads < 1:
            raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
        before = torch.get_num_threads()
        torch.set_num_threads(int(num_threads))
        try:
            return train_fcn(X, y, labels=labels, activation=activation, width=width, depth=depth,
                             sigma_w=sigma_w, sigma_w2=sigma_w2, sigma_b=sigma_b, lr=lr,
                             weight_decay=weight_decay, momentum=momentum, epochs=epochs, record=record,
                             seed=seed, device=device, dtype=dtype, divergence_factor=divergence_factor,
                             return_features=return_features, num_threads=None, chunk=chunk)
        finally:
            torch.set_num_threads(before)
    check_choice(activation, ACTIVATIONS, "activation")
    widths = _widths(width, depth)
    for v, nm in ((lr, "lr"), (sigma_w, "sigma_w"), (sigma_w2, "sigma_w2"), (divergence_factor, "divergence_factor")):
        check_positive(v, nm)
    for v, nm in ((weight_decay, "weight_decay"), (sigma_b, "sigma_b")):
        check_positive(v, nm, allow_zero=True)
    if not (0.0 <= float(momentum) < 1.0):
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
    if int(epochs) != epochs or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    epochs = int(epochs)
    tdt = _torch_dtype(dtype)
    dev = torch.device(device)
    rec = _record_epochs(record, epochs)

    Xn, Yn, labels, targets, _ = _prepare(X, y, labels)
    R, N, d0 = Xn.shape
    k = Yn.shape[2]
    if np.ndim(seed) == 0:
        if int(seed) != seed:
            raise ValueError(f"seed must be an integer, got {seed!r}")
        seeds = [int(seed) + r for r in range(R)]
    else:
        seeds = [int(s) for s in seed]
        if len(seeds) != R:
            raise ValueError(f"seed lists {len(seeds)} seeds for {R} repeats")

    t_start = time.perf_counter()
    # Parameters with a leading repeat dimension; repeat r is initialised from seeds[r] alone.
    # Hidden layers are stored transposed, Wt_l = W_l^T (R, in, out), so that the forward
    # (A @ Wt) and the gradient (A^T @ dZ) are plain row-major GEMMs; the output layer keeps
    # W_L (R, k, h), whose gradient G^T @ A is one too.
    inits = [init_params(s, d0, widths, k, sigma_w, sigma_w2, sigma_b) for s in seeds]
    L = depth
    Ws = [torch.stack([w[l].T if l < L - 1 else w[l] for w, _ in inits]).to(dev, tdt).contiguous()
          for l in range(L)]
    Bs = [torch.stack([b[l] for _, b in inits]).to(dev, tdt).contiguous() for l in range(L)]
    params = [*Ws, *Bs]
    bufs = [None] * len(params)                                  # momentum buffers (SGD)
    Xt = torch.as_tensor(Xn, dtype=tdt, device=dev).contiguous()
    Yt = torch.as_tensor(Yn, dtype=tdt, device=dev).contiguous()
    Tt = torch.as_tensor(targets, dtype=tdt, device=dev)        # (R, C, k)
    Lt = torch.as_tensor(np.array(labels), device=dev)

    # Samples are processed in chunks small enough for the activations of all repeats to stay in
    # the CPU cache; the gradient is accumulated over the chunks, so each step is still full-batch.
    if chunk is None:
        chunk = N if dev.type != "cpu" else max(8, _CHUNK_ELEMS // (R * max(widths)))
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be a positive integer (samples per chunk) or None, got {chunk!r}")
    n_c = min(int(chunk), N)
    bounds = [(s, min(s + n_c, N)) for s in range(0, N, n_c)]
    # preallocated chunk buffers: Z_l pre-activations, A_l post-activations, dZ scratch
    Zs = [torch.empty(R, n_c, w, dtype=tdt, device=dev) for w in widths]
    As = [torch.empty(R, n_c, w, dtype=tdt, device=dev) for w in widths]
    dZs = [torch.empty(R, n_c, w, dtype=tdt, device=dev) for w in widths]
    out = torch.empty(R, N, k, dtype=tdt, device=dev)            # residual out - y of the whole batch
    Gc = torch.empty(R, n_c, k, dtype=tdt, device=dev)           # dLoss/d out of a chunk
    # full-batch post-activations, filled at recorded epochs (NC1) and at the end (features)
    As_full = [torch.empty(R, N, w, dtype=tdt, device=dev) for w in widths]
    gWs = [torch.zeros_like(W) for W in Ws]
    gBs = [torch.zeros_like(b) for b in Bs]
    loss_hist = torch.full((R, epochs + 1), float("nan"), dtype=torch.float64, device=dev)
    acc_hist = torch.full((R, epochs + 1), float("nan"), dtype=torch.float32, device=dev)
    classes = torch.as_tensor(np.stack([np.unique(labels[r]) for r in range(R)]), device=dev)   # (R, C)
    onehot = (Lt[:, :, None] == classes[:, None, :]).to(torch.float64)                           # (R, N, C)
    grad_scale = 2.0 / (N * k)                                   # d/d out of mean((out - y)^2)
    relu = activation == "relu"
    zero = torch.zeros((), dtype=tdt, device=dev)

    T = rec.size
    res = {nm: np.full((R, T), np.nan) for nm in ("nc1", "nc1_sample", "nc1_classical", "tr_w", "tr_b", "accuracy")}
    nc1_layers = np.full((R, L - 1, T), np.nan)
    diverged = np.zeros(R, dtype=bool)
    div_epoch = np.full(R, -1, dtype=np.int64)
    frozen = None                                                # (R,) mask of repeats still training
    check_every = 1 if dev.type == "cpu" else 25
    rec_set = {int(e): t for t, e in enumerate(rec)}

    def chunk_step(s, t, backward, keep):
        """Forward (and backward) of samples [s, t) for all repeats; accumulates loss, accuracy, grads."""
        m = t - s
        Zc, Ac, dZc = [z[:, :m] for z in Zs], [a[:, :m] for a in As], [d[:, :m] for d in dZs]
        o = out[:, s:t]
        A_prev = Xt[:, s:t]
        for l in range(L - 1):
            if A_prev.shape[2] == 1:                             # d0 = 1: an outer product
                torch.addcmul(Bs[l].unsqueeze(1), A_prev, Ws[l], out=Zc[l])
            else:
                torch.baddbmm(Bs[l].unsqueeze(1), A_prev, Ws[l], out=Zc[l])
            if relu:
                torch.clamp_min(Zc[l], 0.0, out=Ac[l])
            else:
                torch.erf(Zc[l], out=Ac[l])
            if keep:
                As_full[l][:, s:t].copy_(Ac[l])
            A_prev = Ac[l]
        torch.baddbmm(Bs[L - 1].unsqueeze(1), A_prev, Ws[L - 1].transpose(1, 2), out=o)
        o.sub_(Yt[:, s:t])                                        # residual, in place: (R, m, k)
        if not backward:
            return
        # ---- backward (hand-written chain rule through the layers), gradients accumulated
        G = torch.mul(o, grad_scale, out=Gc[:, :m])               # dLoss/d out
        gWs[L - 1].baddbmm_(G.transpose(1, 2), A_prev)            # (R, k, h)
        gBs[L - 1].add_(G.sum(dim=1))
        if not relu:
            G = G * _ERF_DERIV                                    # erf'(z) = (2/sqrt(pi)) exp(-z^2): the constant here
        if k == 1:
            torch.mul(G, Ws[L - 1], out=dZc[L - 2])               # dLoss/dA = G W_L, an outer product
        else:
            torch.bmm(G, Ws[L - 1], out=dZc[L - 2])
        for l in range(L - 2, -1, -1):
            dZ = dZc[l]
            if relu:
                # relu'(z) = 1[z > 0], as torch's own relu backward (one fused pass, in place)
                torch.ops.aten.threshold_backward.grad_input(dZ, Ac[l], 0.0, grad_input=dZ)
            else:
                Z = Zc[l]                                         # -z^2 in one pass, then exp(-z^2) in place
                torch.addcmul(zero, Z, Z, value=-1.0, out=Z).exp_()
                dZ.mul_(Z)                                        # times erf'(z) / (2/sqrt(pi))
            A_in = Xt[:, s:t] if l == 0 else Ac[l - 1]
            gWs[l].baddbmm_(A_in.transpose(1, 2), dZ)             # (R, in, out)
            gBs[l].add_(dZ.sum(dim=1))
            if l > 0:                                             # dLoss/dA_{l-1}, times erf's constant
                torch.baddbmm(dZc[l - 1], dZ, Ws[l].transpose(1, 2), beta=0.0,
                              alpha=1.0 if relu else _ERF_DERIV, out=dZc[l - 1])

    checked = [0]                                                # epochs [0, checked) already checked

    def check_divergence(upto: int):
        nonlocal frozen
        lo = checked[0]
        hist = loss_hist[:, lo: upto + 1].cpu().numpy()
        base = loss_hist[:, :1].cpu().numpy()
        bad = ~np.isfinite(hist) | (hist > divergence_factor * base)
        checked[0] = upto + 1
        for r in np.flatnonzero(bad.any(axis=1) & ~diverged):
            diverged[r] = True
            div_epoch[r] = lo + int(np.argmax(bad[r]))
        if diverged.any():
            frozen = torch.as_tensor(~diverged, device=dev)

    for e in range(epochs + 1):
        last = e == epochs
        keep = e in rec_set or last
        if not last:
            for g in (*gWs, *gBs):
                g.zero_()
        for s, t in bounds:
            chunk_step(s, t, backward=not last, keep=keep)
        loss_hist[:, e] = out.square().mean(dim=(1, 2)).to(torch.float64)   # MSE, mean over samples
        out.add_(Yt)                                              # the outputs again
        if k == 1:                                                # nearest class target: (R, N)
            pred = (out - Tt.transpose(1, 2)).abs_().argmin(dim=2)
        else:
            pred = torch.cdist(out, Tt).argmin(dim=2)
        acc_hist[:, e] = (torch.gather(classes, 1, pred) == Lt).float().mean(dim=1)
        if e in rec_set:
            _record(e, rec_set[e], acc_hist, onehot, As_full, res, nc1_layers, loss_hist, divergence_factor)
        if (e % check_every == 0) or last:
            check_divergence(e)
            if diverged.all():
                break
        if last:
            break
        # ---- torch.optim.SGD's update: d = g + wd p; buf = m buf + d (buf = d at first); p -= lr buf
        grads = [*gWs, *gBs]
        for i, (p, g) in enumerate(zip(params, grads)):
            d = g.add_(p, alpha=weight_decay) if weight_decay != 0 else g
            if momentum != 0:
                if bufs[i] is None:
                    bufs[i] = d.clone()
                else:
                    bufs[i].mul_(momentum).add_(d)
                d = bufs[i]
            if frozen is not None:                                # diverged repeats stop moving
                d = torch.where(frozen.view(-1, *([1] * (d.dim() - 1))), d, zero)
            p.add_(d, alpha=-lr)

    loss = loss_hist.cpu().numpy()
    acc_h = acc_hist.double().cpu().numpy()
    for r in np.flatnonzero(diverged):
        e0 = div_epoch[r]
        loss[r, e0 + 1:] = np.nan                                 # loss[r, e0] is the offending value
        acc_h[r, e0:] = np.nan
        after = rec >= e0
        for a in res.values():
            a[r, after] = np.nan
        nc1_layers[r, :, after] = np.nan

    full = acc_h >= 1.0
    zero_err = np.where(full.any(axis=1), np.argmax(full, axis=1), -1)
    feats = [A.cpu().numpy() for A in As_full] if return_features else None
    cfg = dict(activation=activation, widths=widths, depth=depth, sigma_w=sigma_w, sigma_w2=sigma_w2,
               sigma_b=sigma_b, lr=lr, weight_decay=weight_decay, momentum=momentum, epochs=epochs,
               dtype=str(tdt).replace("torch.", ""), device=str(dev), divergence_factor=divergence_factor)
    return FCNResult(epochs=rec, nc1_layers=nc1_layers, loss=loss, accuracy_history=acc_h,
                     zero_error_epoch=zero_err, diverged=diverged, diverged_epoch=div_epoch,
                     features=feats[-1] if feats else None, hidden=feats,
                     weights=[(W.transpose(1, 2) if l < L - 1 else W).cpu().numpy().copy() for l, W in enumerate(Ws)], biases=[b.cpu().numpy() for b in Bs],
                     seeds=seeds, config=cfg, seconds=time.perf_counter() - t_start, **res)


def _record(e, t, acc_hist, onehot, As, res, nc1_layers, loss_hist, factor):
    """Record accuracy and NC1 of every hidden layer at epoch ``e`` (column ``t``)."""
    acc = acc_hist[:, e].double().cpu().numpy()
    base = loss_hist[:, 0].cpu().numpy()
    now = loss_hist[:, e].cpu().numpy()
    ok = np.isfinite(now) & (now <= factor * base)                    # diverging: NaN, reported by the caller
    res["accuracy"][ok, t] = acc[ok]
    for l, A in enumerate(As):
        st = {k: v.cpu().numpy() for k, v in nc1_stats_batched(A, onehot).items()}
        nc1_layers[ok, l, t] = st["nc1"][ok]
        if l == len(As) - 1:
            for nm, v in st.items():
                res[nm][ok, t] = v[ok]


# ----------------------------------------------------------------------------- sweep model

class FCNModel:
    """The trained network as a sweep model: ``run_cell`` trains all repeats of a cell at once.

    Rows: ``model`` ("2l-fcn" for depth 2, "3l-fcn" ...), ``nc1``, ``nc1_sample``, ``nc1_classical``,
    ``tr_w``, ``tr_b``, ``final_loss``, ``train_accuracy``, ``zero_error_epoch`` (first epoch with
    100% training accuracy, -1 if never), ``nc1_init`` (NC1 at initialisation, epoch 0),
    ``nc1_before`` (NC1 at ``epochs - epochs // 10``: with ``nc1`` it says whether NC1 was still
    falling at the end), ``diverged``, ``diverged_epoch``,
    ``activation``, ``width``; for deeper networks also ``nc1_layer1`` ... A diverged run keeps
    its row with NC1 NaN.
    """

    def __init__(self, activation: str = "erf", width=500, depth: int = 2, lr: float = 1e-3,
                 weight_decay: float = 1e-6, momentum: float = 0.0, epochs: int = 1000,
                 sigma_w: float = 1.0, sigma_w2: float = 1.97, sigma_b: float = 0.0,
                 device: str = "cpu", dtype: str = "float32", divergence_factor: float = 1e3,
                 num_threads: int | None = None):
        check_choice(activation, ACTIVATIONS, "activation")
        _widths(width, depth)
        self.kw = dict(activation=activation, width=width, depth=depth, lr=lr, weight_decay=weight_decay,
                       momentum=momentum, epochs=epochs, sigma_w=sigma_w, sigma_w2=sigma_w2, sigma_b=sigma_b,
                       dtype=dtype, divergence_factor=divergence_factor)
        self.device, self.num_threads = device, num_threads      # where/how to run: not part of the cache key
        self.row_model = f"{depth}l-fcn"
        self.name = f"{self.row_model}-{activation}"

    #: elementwise work per hidden unit and sample and epoch, in flops of matrix products that take
    #: as long (forward activation, backward derivative; measured with one thread, float32, CPU)
    ELEMENTWISE_FLOPS = {"erf": 250.0, "relu": 80.0}

    def cost(self, spec, repeats: int) -> float:
        """Relative cost of a cell for the sweep's scheduler: matrix-product flops per sample and
        epoch (forward, weight gradient, and the backward product of every layer above the first)
        plus the elementwise work, counted as :attr:`ELEMENTWISE_FLOPS` per hidden unit."""
        widths = _widths(self.kw["width"], self.kw["depth"])
        dims = [int(spec.d0), *widths, 1]
        mm = sum(6.0 * a * b for a, b in zip(dims[:-1], dims[1:])) - 2.0 * dims[0] * dims[1]
        elem = self.ELEMENTWISE_FLOPS[self.kw["activation"]] * sum(widths)
        return float(repeats) * self.kw["epochs"] * spec.N * (mm + elem)

    def config(self) -> dict:
        c = dict(self.kw)
        c["width"] = list(c["width"]) if np.ndim(c["width"]) else c["width"]
        return c

    def run_cell(self, datasets, seeds):
        X = np.stack([ds.X for ds in datasets])
        y = np.stack([ds.y for ds in datasets])
        labels = np.stack([ds.labels for ds in datasets])
        ep = int(self.kw["epochs"])
        r = train_fcn(X, y, labels=labels, seed=list(seeds), device=self.device, return_features=False,
                      record=[0, ep - ep // 10, ep],
                      num_threads=self.num_threads,
                      **self.kw)
        rows = []
        for i in range(len(datasets)):
            layers = {f"nc1_layer{l + 1}": float(r.nc1_layers[i, l, -1]) for l in range(r.nc1_layers.shape[1])} \
                if r.nc1_layers.shape[1] > 1 else {}
            rows.append([{"model": self.row_model, "nc1": float(r.nc1[i, -1]),
                          "nc1_init": float(r.nc1[i, 0]),
                          "nc1_before": float(r.nc1[i, -2]) if len(r.epochs) > 2 else float(r.nc1[i, 0]),
                          "epoch_before": int(r.epochs[-2]) if len(r.epochs) > 2 else 0,
                          "zero_error_epoch": int(r.zero_error_epoch[i]), **layers,
                          "nc1_sample": float(r.nc1_sample[i, -1]), "nc1_classical": float(r.nc1_classical[i, -1]),
                          "tr_w": float(r.tr_w[i, -1]), "tr_b": float(r.tr_b[i, -1]),
                          "final_loss": float(r.loss[i, -1]), "train_accuracy": float(r.accuracy[i, -1]),
                          "diverged": bool(r.diverged[i]), "diverged_epoch": int(r.diverged_epoch[i]),
                          "activation": self.kw["activation"], "width": self.config()["width"]}])
        return rows


# ----------------------------------------------------------------------------- the plain baseline

def train_fcn_loop(X, y, *, activation: str = "erf", width=500, depth: int = 2, sigma_w: float = 1.0,
                   sigma_w2: float = 1.97, sigma_b: float = 0.0, lr: float = 1e-3, weight_decay: float = 1e-6,
                   momentum: float = 0.0, epochs: int = 1000, seed=0, dtype="float32", device: str = "cpu"):
    """The straightforward way, for tests and benchmarks: one ``torch.nn.Module`` per repeat,
    autograd and ``torch.optim.SGD``, one repeat after another. Same initialisation as
    :func:`train_fcn`. Returns ``(loss (R, epochs + 1), features (R, N, h), weights)``
    (weights as a list per layer, (R, out, in)); no NC1, no divergence handling.
    """
    import torch
    from torch import nn

    check_choice(activation, ACTIVATIONS, "activation")
    widths = _widths(width, depth)
    tdt, dev = _torch_dtype(dtype), torch.device(device)
    Xn, Yn, _, _, _ = _prepare(X, y, None)
    R, N, d0 = Xn.shape
    k = Yn.shape[2]
    seeds = [int(seed) + r for r in range(R)] if np.ndim(seed) == 0 else [int(s) for s in seed]
    phi = nn.ReLU() if activation == "relu" else _Erf()
    losses, feats, weights = [], [], []
    for r in range(R):
        Ws, Bs = init_params(seeds[r], d0, widths, k, sigma_w, sigma_w2, sigma_b)
        layers = []
        for l, (W, b) in enumerate(zip(Ws, Bs)):
            lin = nn.Linear(W.shape[1], W.shape[0], dtype=tdt, device=dev)
            with torch.no_grad():
                lin.weight.copy_(W)
                lin.bias.copy_(b)
            layers += [lin] + ([phi] if l < len(Ws) - 1 else [])
        net = nn.Sequential(*layers).to(dev, tdt)
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        Xr = torch.as_tensor(Xn[r], dtype=tdt, device=dev)
        Yr = torch.as_tensor(Yn[r], dtype=tdt, device=dev)
        mse = nn.MSELoss()
        hist = []
        for e in range(epochs + 1):
            loss = mse(net(Xr), Yr)
            hist.append(float(loss.detach()))
            if e == epochs:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            feats.append(net[:-1](Xr).cpu().numpy())
        losses.append(hist)
        weights.append([m.weight.detach().cpu().numpy() for m in net if isinstance(m, nn.Linear)])
    return (np.array(losses), np.stack(feats),
            [np.stack([w[l] for w in weights]) for l in range(depth)])


class _Erf:
    """erf as a module-like callable for nn.Sequential (kept tiny; autograd differentiates torch.erf)."""

    def __new__(cls):
        import torch
        from torch import nn

        class Erf(nn.Module):
            def forward(self, x):
                return torch.erf(x)
        return Erf()


def train_flops(N: int, d0: int, width: int, epochs: int, repeats: int = 1, k: int = 1) -> float:
    """Floating-point operations of the matrix products of training a 2L-FCN (multiply-adds count 2).

    Per epoch and sample: forward ``2 d0 h + 2 h k``; backward ``2 d0 h`` (dW1) + ``2 h k`` (dW2)
    + ``h k`` (dA); the elementwise work (activation, its derivative) is not counted.
    """
    return float(repeats) * epochs * N * width * (4.0 * d0 + 5.0 * k)
