"""Benchmark: the batched 2L-FCN trainer (nc1lib.train_fcn) against the straightforward loop.

The loop (nc1lib.fcn.train_fcn_loop) is what one would write first: one torch.nn.Module per
repeat, autograd, torch.optim.SGD, one repeat after another. Both start from the same
initialisation and run the same number of epochs on the same data, with the same number of
torch threads, in this one run; the table gives seconds per epoch, the ratio, and the achieved
GFLOP/s of the matrix products (nc1lib.fcn.train_flops; elementwise work not counted). It
then projects the full-profile sweep of Figures 2(c)/3(c) (4 N x 5 d0 x 10 repeats x 2
activations, h = 500, 1000 epochs) from per-epoch timings of every one of its cells, in one
process and on 2 worker processes in the sweep engine's order (most expensive cells first);
the full sweep itself is not run.

    .venv/bin/python benchmarks/bench_fcn.py [--epochs 30] [--threads 1] [--no-projection]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from nc1lib import D1
from nc1lib.fcn import FCNModel, train_fcn, train_fcn_loop, train_flops

CELLS = [(128, 1), (128, 32), (512, 8), (1024, 1), (1024, 128)]   # (N, d0): small and large


def data(N, d0, R):
    ds = [D1(N, d0).sample(1000 + r) for r in range(R)]
    return np.stack([d.X for d in ds]), np.stack([d.y for d in ds])


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return time.perf_counter() - t, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=30, help="epochs per timed run (default 30)")
    ap.add_argument("--repeats", type=int, default=10, help="repeats per cell (the paper: 10)")
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's)")
    ap.add_argument("--no-projection", action="store_true", help="skip the full-sweep projection")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    E, R, h = args.epochs, args.repeats, args.width
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores (a shared machine: "
          f"timings are only as good as the load allows)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); h = {h}, {R} repeats, "
          f"{E} epochs per timed run; float32; times are seconds per epoch (all repeats)")
    rows = []
    for act in ("erf", "relu"):
        for N, d0 in CELLS:
            X, y = data(N, d0, R)
            kw = dict(activation=act, width=h, epochs=E, seed=0)
            train_fcn(X[:1], y[:1], **{**kw, "epochs": 2})                       # warm-up
            tb, res = timed(train_fcn, X, y, **kw)
            tl, (loss_loop, _, _) = timed(train_fcn_loop, X, y, **kw)
            agree = float(np.max(np.abs(res.loss / loss_loop - 1)))
            fl = train_flops(N, d0, h, E, R)
            rows.append((act, N, d0, tb / E, tl / E, tl / tb, fl / tb / 1e9, fl / tl / 1e9, agree))
    hdr = f"{'act':5} {'N':>5} {'d0':>4} {'batched':>9} {'loop':>9} {'loop/b':>7} {'GF/s b':>7} {'GF/s l':>7} {'max rel dloss':>13}"
    print(hdr)
    print("-" * len(hdr))
    for act, N, d0, b, l, ratio, gb, gl, agree in rows:
        print(f"{act:5} {N:5d} {d0:4d} {b:9.4f} {l:9.4f} {ratio:7.1f} {gb:7.1f} {gl:7.1f} {agree:13.1e}")
    if args.no_projection:
        return
    project(E)


def lpt_makespan(times, workers):
    """Wall time of running ``times`` on ``workers`` processes, each job to the first free worker."""
    free = [0.0] * workers
    for t in times:
        i = int(np.argmin(free))
        free[i] += t
    return max(free)


def project(E, workers=2):
    """Project the full-profile sweep of Figs. 2(c)/3(c) (40 cells x 10 repeats, h = 500, 1000
    epochs) from E-epoch timings of each of its cells; nothing is run at full length."""
    cells, times, flops = [], [], 0.0
    for act in ("erf", "relu"):
        model = FCNModel(act, width=500, epochs=1000)
        for N in (128, 256, 512, 1024):
            for d0 in (1, 2, 8, 32, 128):
                X, y = data(N, d0, 10)
                t, _ = timed(train_fcn, X, y, activation=act, width=500, epochs=E, seed=0, record=[])
                cells.append((act, N, d0, model.cost(D1(N, d0), 10)))
                times.append(t / E * 1000)
                flops += train_flops(N, d0, 500, 1000, 10)
    total = sum(times)
    by_cost = [times[i] for i in np.argsort([-c[3] for c in cells], kind="stable")]   # the sweep's order
    lpt, grid_order = lpt_makespan(by_cost, workers), lpt_makespan(times, workers)
    big = int(np.argmax(times))
    print(f"\nprojected full-profile sweep (Figs. 2(c)/3(c): 40 cells x 10 repeats, h=500, 1000 epochs; "
          f"from {E}-epoch timings of every cell, NC1 recording not included):")
    print(f"  one process: {total:.0f} s = {total / 60:.1f} min; {flops:.2e} flops of matrix products "
          f"-> {flops / total / 1e9:.1f} GFLOP/s")
    print(f"  {workers} worker processes, most expensive cells first (the sweep engine's order): "
          f"{lpt:.0f} s = {lpt / 60:.1f} min (perfect balance: {total / workers / 60:.1f} min); "
          f"in grid order instead: {grid_order / 60:.1f} min")
    print(f"  longest cell: {cells[big][0]} N={cells[big][1]} d0={cells[big][2]}, {times[big]:.0f} s; "
          f"target < 10 min: {'met' if lpt < 600 else 'NOT met'} in this projection")

if __name__ == "__main__":
    main()
