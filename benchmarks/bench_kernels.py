"""Benchmark: the limiting-kernel sweep behind Figures 2(a,b), 3(a,b) and 6.

    .venv/bin/python benchmarks/bench_kernels.py [--repeats 10] [--trials 3] [--baseline-repeats 1]

Times, in one run and on the same data:

1. the full-profile sweep (N in 128..1024 x d0 in 1..128 x 10 repeats x {NNGP, NTK} x
   {Erf, ReLU}) with nc1lib's fused kernels (``KernelModel``, no cache), alone and with
   the Erf reference variant (MATH.md 8.1) in the same pass, as the book's chapter runs it;
2. the same sweep forming each Gram with ``kernel_fn`` (``KernelModel(fused=False)``), and
   as the sweep engine did before (each Gram validated and block-summed once per weighting);
3. a direct transcription of the reference implementation's style, which scales every
   kernel by dense products with diagonal matrices, ``diag(v) @ K @ diag(v)`` (O(N^3) per
   kernel). It is slow, so it runs on ``--baseline-repeats`` repeats per cell, and its time
   is compared with the fused kernels on exactly the same runs and extrapolated to the full sweep.

It prints a table of seconds and ratios (baseline / fused) and the largest difference
in NC1 between the implementations. Timings on a shared machine are noisy: each fast
timing is the best of ``--trials``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nc1lib import D1, covariance_traces_from_gram  # noqa: E402
from nc1lib.sweep import KernelModel, grid, repeat_seed, sweep  # noqa: E402

NS, D0S = (128, 256, 512, 1024), (1, 2, 8, 32, 128)


def diag_product_kernels(X, activation):
    """NNGP and NTK Grams (sigma_w = 1, sigma_b = 0) written as the reference writes them:
    every rescaling is a dense product with a diagonal matrix."""
    d0 = X.shape[1]
    S = X @ X.T / d0                                                  # eq. 10
    if activation == "erf":
        Dv = np.diag(1.0 / np.sqrt(1.0 + 2.0 * np.diag(S)))
        U = Dv @ (2.0 * S) @ Dv                                       # 2 S12 / sqrt((1+2S11)(1+2S22))
        K = (2.0 / np.pi) * np.arcsin(np.clip(U, -1.0, 1.0))          # eq. 11
        Kdot = (4.0 / np.pi) * (Dv @ (1.0 / np.sqrt(1.0 - U ** 2)) @ Dv)  # eq. 15
    else:
        Dn = np.diag(np.sqrt(np.diag(S)))
        Dinv = np.diag(1.0 / np.sqrt(np.diag(S)))
        C = np.clip(Dinv @ S @ Dinv, -1.0, 1.0)                       # cos t
        t = np.arccos(C)
        K = Dn @ ((np.sin(t) + (np.pi - t) * C) / (2.0 * np.pi)) @ Dn  # App. B
        C2 = np.clip(Dinv @ S @ Dinv, -1.0, 1.0)                      # the derivative kernel forms
        Kdot = (np.pi - np.arccos(C2)) / (2.0 * np.pi)                # its own cos t, as the reference does
    return {"nngp": K, "ntk": K + S * Kdot}                           # eq. 13


class PreviousKernelModel(KernelModel):
    """The sweep engine as it was before this benchmark's work: ``kernel_fn`` Grams, each
    validated and block-summed twice (once per NC1 weighting) by ``covariance_traces_from_gram``."""

    def config(self):
        return {**super().config(), "implementation": "previous"}

    def run_cell(self, datasets, seeds):
        from nc1lib import kernel_fn
        out = []
        for ds in datasets:
            grams = kernel_fn(ds.X, activation=self.activation, get=self.get)
            rows = []
            for g in self.get:
                tr_w, tr_b = covariance_traces_from_gram(grams[g], ds.class_sizes, "paper")
                tr_ws, tr_bs = covariance_traces_from_gram(grams[g], ds.class_sizes, "sample")
                rows.append({"model": g, "nc1": tr_w / tr_b, "nc1_sample": tr_ws / tr_bs,
                             "activation": self.activation})
            out.append(rows)
        return out


def best_of(trials, fn):
    best, out = float("inf"), None
    for _ in range(trials):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--baseline-repeats", type=int, default=1)
    args = ap.parse_args(argv)

    specs = grid(D1, NS, D0S)
    acts = ("erf", "relu")
    run = lambda models, reps: sweep(models, specs, reps, cache=False, progress=False)  # noqa: E731

    t_fused, tab_fused = best_of(args.trials, lambda: run([KernelModel(a) for a in acts], args.repeats))
    t_both, _ = best_of(args.trials, lambda: run([KernelModel("erf", variant=("derived", "reference")),
                                                  KernelModel("relu")], args.repeats))
    t_gram, tab_gram = best_of(1, lambda: run([KernelModel(a, fused=False) for a in acts], args.repeats))
    t_prev, tab_prev = best_of(1, lambda: run([PreviousKernelModel(a) for a in acts], args.repeats))

    # the diagonal-product baseline and the fused kernels on the same (fewer) runs
    nb = args.baseline_repeats
    t_fused_sub, tab_sub = best_of(args.trials, lambda: run([KernelModel(a) for a in acts], nb))
    t0 = time.perf_counter()
    worst = 0.0
    for spec in specs:
        for r in range(nb):
            ds = spec.sample(repeat_seed(0, spec, r))
            for a in acts:
                G = diag_product_kernels(ds.X, a)
                for g in ("nngp", "ntk"):
                    tw, tb = covariance_traces_from_gram(G[g], ds.class_sizes)
                    ref = tab_sub[(tab_sub.activation == a) & (tab_sub.model == g) & (tab_sub.N == spec.N)
                                  & (tab_sub.d0 == spec.d0) & (tab_sub.repeat == r)]["nc1"].item()
                    worst = max(worst, abs(tw / tb - ref) / abs(ref))
    t_diag = time.perf_counter() - t0

    n_runs = len(tab_fused)
    diff_gram = float(np.max(np.abs(tab_gram["nc1"].to_numpy() / tab_fused["nc1"].to_numpy() - 1.0)))
    diff_prev = float(np.max(np.abs(tab_prev["nc1"].to_numpy() / tab_fused["nc1"].to_numpy() - 1.0)))
    scale = args.repeats / nb
    rows = [
        ("fused kernels (nc1lib KernelModel)", t_fused, 1.0, ""),
        ("fused, Erf derived + reference variant", t_both, t_both / t_fused, ""),
        ("kernel_fn Grams + gram_row (fused=False)", t_gram, t_gram / t_fused, f"max rel. NC1 diff {diff_gram:.1e}"),
        ("previous engine: kernel_fn + 2 Theorem 4.1 passes", t_prev, t_prev / t_fused,
         f"max rel. NC1 diff {diff_prev:.1e}"),
        (f"diag-matrix products ({nb} repeat/cell), measured", t_diag, t_diag / t_fused_sub,
         f"vs fused on the same runs: {t_fused_sub:.3f} s; max rel. NC1 diff {worst:.1e}"),
        ("diag-matrix products, extrapolated to full sweep", t_diag * scale, t_diag * scale / t_fused, "estimate"),
    ]
    print(f"Sweep: N {NS} x d0 {D0S} x {args.repeats} repeats x {{NNGP, NTK}} x {{Erf, ReLU}} "
          f"= {n_runs} runs; best of {args.trials} for the fused timings\n")
    w = max(len(r[0]) for r in rows)
    print(f"{'implementation':<{w}}  {'seconds':>9}  {'ratio':>8}  notes")
    for name, sec, ratio, note in rows:
        print(f"{name:<{w}}  {sec:9.3f}  {ratio:8.1f}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
