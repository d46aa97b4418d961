"""Sweeps: run models over a grid of datasets and repeats into one tidy table.

A *model* is any object with

* ``name`` (str) and ``config()`` -> dict of plain data (its settings, part of the cache key);
* ``run_cell(datasets, seeds)`` -> one list of row dicts per dataset. All datasets of a
  call share their spec (one grid cell, one per repeat), so a model may process them
  together (the trained network batches its repeats). Each row carries at least
  ``model`` and ``nc1``; anything else it returns (``tr_w``, ``tr_b``, diagnostics)
  becomes a column;
* optionally ``cost(spec, repeats)`` -> float, the relative compute cost of one cell (any
  unit, only the order matters). With an executor, cells are submitted most expensive
  first, so that a long cell does not start last and leave the other workers idle; the
  table keeps the grid order. Without ``cost`` a cell's cost is taken as ``N * d0``.

:func:`sweep` adds the grid columns (N, d0, class sizes, repeat, seed), the data NC1
and the relative NC1 (App. F), times each cell, caches each cell on disk keyed by the
settings and a hash of the library's source, and reports -- never drops -- runs whose
NC1 is NaN or infinite.

:class:`KernelModel` is the model of the limiting NNGP and NTK. At one hidden layer it
uses :func:`kernel_block_sums`, which evaluates each Gram in row chunks, upper triangle
only, and keeps just its trace and class-block sums (all Theorem 4.1 needs); the
benchmark ``benchmarks/bench_kernels.py`` times it against the Gram-matrix routes.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import warnings
from concurrent.futures import Executor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .datasets import GaussianClasses
from ._validate import as_float_array, check_choice, check_class_sizes, check_gram, check_positive
from .nc1 import nc1_of_data, relative_nc1, traces_from_block_sums

_PKG_DIR = Path(__file__).resolve().parent


def code_version() -> str:
    """Hash of every source file of nc1lib: a change to the code invalidates cached results."""
    h = hashlib.sha256()
    for p in sorted(_PKG_DIR.rglob("*.py")):
        h.update(p.relative_to(_PKG_DIR).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$NC1LIB_CACHE`` if set, else ``.nc1cache`` in the current directory's repository root."""
    env = os.environ.get("NC1LIB_CACHE")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").exists() and (p / "nc1lib").is_dir():
            return p / ".nc1cache"
    return here / ".nc1cache"


def repeat_seed(base_seed: int, spec: GaussianClasses, repeat: int) -> int:
    """The seed of one repeat: a deterministic function of the base seed, the cell and the repeat."""
    key = [int(base_seed), *spec.class_sizes, int(spec.d0), int(repeat),
           int.from_bytes(hashlib.sha256(spec.name.encode()).digest()[:4], "little")]
    return int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint32)[0])


def class_indicator(class_sizes) -> np.ndarray:
    """``Z`` (N, C): ``Z[i, c] = 1`` if row i of an organised dataset is in class c."""
    cs = np.asarray(class_sizes, dtype=np.int64)
    return (np.repeat(np.arange(cs.size), cs)[:, None] == np.arange(cs.size)[None, :]).astype(np.float64)


def _ratio(a: float, b: float) -> float:
    return a / b if b != 0 else float("inf")


def row_from_block_sums(model: str, trace_K: float, B, class_sizes, **extra) -> dict:
    """A result row from a Gram's trace and class-block sums: NC1 in both weightings."""
    cs = [int(c) for c in class_sizes]
    tr_w, tr_b = (float(t) for t in traces_from_block_sums(trace_K, B, cs, "paper"))
    tr_ws, tr_bs = (float(t) for t in traces_from_block_sums(trace_K, B, cs, "sample"))
    return {"model": model, "nc1": _ratio(tr_w, tr_b), "nc1_sample": _ratio(tr_ws, tr_bs),
            "tr_w": tr_w, "tr_b": tr_b, **extra}


def gram_row(model: str, K, class_sizes, **extra) -> dict:
    """A result row from a Gram matrix: NC1 in the paper's weighting and the sample-weighted one.

    ``K`` is validated once (square, finite, symmetric) and summed over its class blocks once.
    """
    K = check_gram(K)
    cs = check_class_sizes(class_sizes, K.shape[0])
    B = class_indicator(cs).T @ (K @ class_indicator(cs))     # C x C block sums
    return row_from_block_sums(model, float(np.trace(K)), B, cs, **extra)


#: NC1 of the raw inputs (App. F); the same function as :func:`nc1lib.nc1.nc1_of_data`.
data_nc1 = nc1_of_data


def _run_cell(model, spec: GaussianClasses, seeds: Sequence[int], data_weighting: str,
              datasets=None) -> list[dict]:
    if datasets is None:
        datasets = [spec.sample(s) for s in seeds]
    t0 = time.perf_counter()
    results = model.run_cell(datasets, list(seeds))
    seconds = (time.perf_counter() - t0) / len(datasets)
    if len(results) != len(datasets):
        raise RuntimeError(f"model {model.name!r} returned {len(results)} results for {len(datasets)} datasets")
    rows = []
    for r, (ds, seed, res) in enumerate(zip(datasets, seeds, results)):
        dnc1 = data_nc1(ds.X, ds.class_sizes, data_weighting)
        for row in res:
            if "model" not in row or "nc1" not in row:
                raise RuntimeError(f"model {model.name!r} returned a row without 'model' and 'nc1': {sorted(row)}")
            rows.append({"model": row["model"], "dataset": spec.name, "N": ds.N, "d0": ds.d0,
                         "class_sizes": "/".join(map(str, ds.class_sizes)), "repeat": r, "seed": int(seed),
                         **{k: v for k, v in row.items() if k != "model"},
                         "data_nc1": dnc1,
                         "rel_nc1": float(relative_nc1(row["nc1"], dnc1)),
                         "seconds": seconds / max(len(res), 1)})
    return rows


def _cell_key(model, spec, seeds, data_weighting, version) -> str:
    payload = json.dumps({"model": model.name, "config": model.config(), "spec": spec.config(),
                          "seeds": list(map(int, seeds)), "data_weighting": data_weighting,
                          "code": version}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def sweep(models, specs: Iterable[GaussianClasses], repeats: int, *, seed: int = 0,
          executor: Executor | None = None, cache: bool | str | Path = True, force: bool = False,
          progress: bool = True, data_weighting: str = "paper") -> pd.DataFrame:
    """Run every model on every spec, ``repeats`` times, and return one row per run.

    Parameters
    ----------
    models : a model or a sequence of models (see the module docstring).
    specs : dataset specs (one per grid cell), e.g. ``[D1(N, d0) for N in Ns for d0 in d0s]``.
    repeats : independent repeats per cell; repeat ``r`` of a cell uses
        ``repeat_seed(seed, spec, r)`` for its data and its model.
    executor : optional ``concurrent.futures.Executor``; cells are submitted to it.
        ``None`` runs in-process.
    cache : ``True`` (default directory), a directory, or ``False``.
    force : recompute even when a cached cell exists.
    data_weighting : NC1 convention of the data NC1 (``"paper"``, Theorem 4.1 as stated, or
        ``"sample"``); part of the cache key.

    Returns
    -------
    A DataFrame, one row per run (and per kernel a model returns): ``model``, ``dataset``,
    ``N``, ``d0``, ``class_sizes`` ("n1/n2/..."), ``repeat``, ``seed``, the model's own
    columns (``nc1``, ``nc1_sample``, ``tr_w``, ``tr_b``, ``activation``, ``variant``, ...),
    ``data_nc1``, ``rel_nc1`` (App. F, tau = 1e-8), ``seconds`` (the model's compute time per
    run, sampling excluded; for a cached cell, the time it took when it was computed) and
    ``finite`` (False where NC1 is NaN or infinite; ``table.attrs["n_nonfinite"]`` counts them
    and a ``RuntimeWarning`` says how many). Progress is shown with a tqdm bar unless
    ``progress=False``.
    """
    if isinstance(models, (list, tuple)):
        models = list(models)
    else:
        models = [models]
    specs = list(specs)
    if int(repeats) != repeats or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if not specs:
        raise ValueError("specs is empty: nothing to sweep")
    check_choice(data_weighting, ("paper", "sample"), "data_weighting")
    cache_dir = None
    if cache:
        cache_dir = default_cache_dir() if cache is True else Path(cache)
        cache_dir.mkdir(parents=True, exist_ok=True)
    version = code_version()

    jobs = []
    for model in models:
        for spec in specs:
            seeds = [repeat_seed(seed, spec, r) for r in range(repeats)]
            jobs.append((model, spec, seeds))

    def load(job):
        if cache_dir is None or force:
            return None
        p = cache_dir / f"{_cell_key(*job, data_weighting, version)}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def store(job, rows):
        if cache_dir is not None:
            p = cache_dir / f"{_cell_key(*job, data_weighting, version)}.json"
            tmp = p.with_suffix(".tmp")
            tmp.write_text(json.dumps(rows, default=_json_default))
            tmp.replace(p)

    results: list[list[dict] | None] = [load(j) for j in jobs]
    todo = [i for i, r in enumerate(results) if r is None]
    bar = _progress(len(todo), progress, desc=f"sweep ({len(jobs) - len(todo)}/{len(jobs)} cells cached)")
    try:
        if executor is None:
            # spec-major order, so that the models of one cell share its sampled datasets
            memo_key, memo = None, None
            for i in sorted(todo, key=lambda i: (i % len(specs), i)):
                model, spec, seeds = jobs[i]
                if memo_key != i % len(specs):
                    memo_key, memo = i % len(specs), [spec.sample(s) for s in seeds]
                results[i] = _run_cell(model, spec, seeds, data_weighting, memo)
                store(jobs[i], results[i])
                bar.update(1)
        else:
            # longest first (the classic LPT schedule): the pool's tail is then a short cell
            order = sorted(todo, key=lambda i: -cell_cost(jobs[i][0], jobs[i][1], repeats))
            futures = {executor.submit(_run_cell, *jobs[i], data_weighting): i for i in order}
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                store(jobs[i], results[i])
                bar.update(1)
    finally:
        bar.close()

    table = pd.DataFrame([row for rows in results for row in rows])
    return flag_nonfinite(table)


def cell_cost(model, spec: GaussianClasses, repeats: int) -> float:
    """Relative cost of one cell: ``model.cost(spec, repeats)`` if the model defines it, else
    ``repeats * N * d0``. Used only to order the cells submitted to an executor."""
    cost = getattr(model, "cost", None)
    c = float(cost(spec, repeats)) if callable(cost) else float(repeats) * spec.N * spec.d0
    if not np.isfinite(c):
        raise ValueError(f"model {model.name!r} gave a non-finite cost {c!r} for {spec.name} (N={spec.N}, d0={spec.d0})")
    return c


def flag_nonfinite(table: pd.DataFrame, column: str = "nc1") -> pd.DataFrame:
    """Add a ``finite`` column and warn with the count of runs whose NC1 is NaN or infinite."""
    finite = np.isfinite(table[column].to_numpy(dtype=float))
    table["finite"] = finite
    bad = int((~finite).sum())
    if bad:
        warnings.warn(f"{bad} of {len(table)} runs have a non-finite {column}; they are kept "
                      f"in the table with finite=False", RuntimeWarning, stacklevel=3)
    table.attrs["n_nonfinite"] = bad
    return table


def _json_default(o):
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot store {type(o).__name__} in the sweep cache")


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total, show, desc):
    if not show or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc)


def grid(dataset: Callable[..., GaussianClasses], Ns: Iterable[int], d0s: Iterable[int], **kwargs):
    """The specs of an N x d0 grid, e.g. ``grid(D1, [128, 256], [1, 2, 8])``."""
    return [dataset(N, d0, **kwargs) for N in Ns for d0 in d0s]


_BLAS_API = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
             ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
             ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
             ("openblas_get_num_threads", "openblas_set_num_threads"))
_blas_libs = None


def _openblas_libs():
    """(get, set) thread-count functions of the OpenBLAS libraries loaded in this process.

    Found the way threadpoolctl finds them (the process's memory map), without the dependency;
    an empty list where that is not possible (not Linux, another BLAS)."""
    global _blas_libs
    if _blas_libs is None:
        import ctypes
        _blas_libs = []
        try:
            with open("/proc/self/maps") as f:
                paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and ".so" in ln})
        except OSError:
            paths = []
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for get, set_ in _BLAS_API:
                if hasattr(lib, get) and hasattr(lib, set_):
                    _blas_libs.append((getattr(lib, get), getattr(lib, set_)))
                    break
    return _blas_libs


_blas_lock = threading.Lock()
_blas_state = {"depth": 0, "before": []}


@contextmanager
def limit_blas_threads(n: int | None):
    """Run a block with OpenBLAS limited to ``n`` threads (``None``: leave it alone).

    The fused kernels make many small matrix products; with two or more BLAS threads on a
    busy machine each product waits for a core, and the sweep runs several times slower.
    Only the speed changes, never the numbers. Nested and concurrent uses (threads of an
    executor) share one setting; the first to enter saves the old count, the last to leave
    restores it."""
    if n is None:
        yield
        return
    with _blas_lock:
        libs = _openblas_libs()
        if _blas_state["depth"] == 0:
            _blas_state["before"] = [get() for get, _ in libs]
            for _, set_ in libs:
                set_(int(n))
        _blas_state["depth"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_state["depth"] -= 1
            if _blas_state["depth"] == 0:
                for (_, set_), b in zip(libs, _blas_state["before"]):
                    set_(b)


_TWO_OVER_PI = 2.0 / np.pi


def kernel_block_sums(X, class_sizes, activation: str, *, sigma_w: float = 1.0, sigma_b: float = 0.0,
                      variants=("derived",), get=("nngp", "ntk"), chunk: int = 128,
                      blas_threads: int | None = 1) -> dict:
    """Trace and class-block sums of the one-hidden-layer NNGP and NTK Grams, without storing them.

    Returns ``{(g, variant): (trace, B)}`` for ``g`` in ``get`` and each variant, where ``B`` is
    the C x C matrix of class-block sums: all that Theorem 4.1 needs. The Gram is evaluated
    ``chunk`` rows at a time (the temporaries stay in cache) with the same formulas as
    :func:`nc1lib.kernels.kernel_fn` at depth 2, rearranged so that each entry costs one
    inverse trig function and one square root: the variances enter through the vectors
    ``(1 + 2 S_ii)^(-1/2)`` (Erf) or ``S_ii^(1/2)`` (ReLU), never through an N x N product.
    NNGP, NTK and the reference variant (MATH.md 8.1) share one pass. ``blas_threads``: see
    :func:`limit_blas_threads` (``None`` leaves the BLAS thread count alone).
    """
    with limit_blas_threads(blas_threads):
        return _kernel_block_sums(X, class_sizes, activation, sigma_w, sigma_b, variants, get, chunk)


def _kernel_block_sums(X, class_sizes, activation, sigma_w, sigma_b, variants, get, chunk):
    check_choice(activation, ("erf", "relu"), "activation")
    variants = (variants,) if isinstance(variants, str) else tuple(variants)
    gets = (get,) if isinstance(get, str) else tuple(get)
    for v in variants:
        check_choice(v, ("derived", "reference"), "variant")
    for g in gets:
        check_choice(g, ("nngp", "ntk"), "get")
    sw2 = check_positive(sigma_w, "sigma_w") ** 2
    sb2 = check_positive(sigma_b, "sigma_b", allow_zero=True) ** 2
    X = as_float_array(X, "X", ndim=2)
    cs = check_class_sizes(class_sizes, X.shape[0])
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    N, d0 = X.shape
    C = cs.size
    starts = np.concatenate([[0], np.cumsum(cs)[:-1]])          # first row of each class
    want_ntk = "ntk" in gets
    d = sb2 + sw2 * np.einsum("ij,ij->i", X, X) / d0           # eq. 10 on the diagonal: S(x, x)
    keys = [("nngp", "derived")] + ([("ntk", v) for v in variants] if want_ntk else [])
    if activation == "relu":                                     # ReLU has no reference departure
        keys = [("nngp", "derived")] + ([("ntk", "derived")] if want_ntk else [])
    Bs = {k: np.zeros((C, C)) for k in keys}                     # class-block sums
    tr = {k: 0.0 for k in keys}
    if activation == "erf":
        r = 1.0 / np.sqrt(1.0 + 2.0 * d)                         # (1 + 2 S_ii)^(-1/2)
        P_ref = float(np.sum((1.0 + 2.0 * d) ** 2))              # MATH.md 8.1: sum_k (1 + 2 S_kk)^2
    else:
        rt = np.sqrt(d)                                          # S_ii^(1/2)
        rinv = np.where(rt > 0, 1.0 / np.where(rt > 0, rt, 1.0), 0.0)
    XT = np.ascontiguousarray(X.T)
    # work buffers, reused by every chunk (fresh N x N temporaries would cost a page fault per 4 KiB)
    m_max = min(chunk, N)
    work = {nm: np.empty(m_max * N) for nm in ("S", "u", "K", "kd", "aux")}
    # The Grams are symmetric: each chunk of rows [i0, i1) is evaluated from column i0 on only
    # (its diagonal square once, the rectangle to its right standing for itself and its transpose).
    for i0 in range(0, N, chunk):
        i1 = min(i0 + chunk, N)
        m, w = i1 - i0, N - i0
        S, u, K, kd, aux = (work[nm][:m * w].reshape(m, w) for nm in ("S", "u", "K", "kd", "aux"))
        if d0 == 1:
            np.multiply.outer(X[i0:i1, 0], X[i0:, 0], out=S)
        else:
            np.matmul(X[i0:i1], XT[:, i0:], out=S)
        S *= sw2 / d0                                            # eq. 10: Sigma0 = sb2 + sw2 x.x'/d0
        if sb2:
            S += sb2
        k = np.arange(m)                                         # the diagonal entries of the chunk
        plan = (m, _segments(i0, i1, starts), _segments(i1, N, starts))
        if activation == "erf":
            # eq. 11 (Williams 1996): K1 = (2/pi) arcsin(u), u = 2 S12 / sqrt((1 + 2 S11)(1 + 2 S22))
            np.multiply(S, 2.0 * r[i0:i1, None], out=u)
            u *= r[None, i0:]
            np.clip(u, -1.0, 1.0, out=u)
            np.arcsin(u, out=K)
            K *= _TWO_OVER_PI
            if want_ntk:
                for v in variants:
                    if v == "derived":
                        # eq. 15: Kdot = (4/pi) ((1+2S11)(1+2S22) - 4 S12^2)^(-1/2)
                        #              = (4/pi) r_i r_j / sqrt(1 - u^2)
                        np.multiply(u, u, out=kd)
                        np.subtract(1.0, kd, out=kd)
                        np.sqrt(kd, out=kd)
                        np.divide(2.0 * _TWO_OVER_PI * r[i0:i1, None], kd, out=kd)
                        kd *= r[None, i0:]
                    else:
                        # MATH.md 8.1: (4/pi) (sum_k (1 + 2 S_kk)^2 - 4 S12^2)^(-1/2)
                        np.multiply(S, S, out=kd)
                        kd *= -4.0
                        kd += P_ref
                        np.sqrt(kd, out=kd)
                        np.divide(2.0 * _TWO_OVER_PI, kd, out=kd)
                    _accumulate_ntk(Bs, tr, ("ntk", v), K, kd, S, sw2, sb2, plan)
        else:
            # App. B (Cho & Saul 2009): cos t = S12 / sqrt(S11 S22),
            # K1 = (1/2pi) sqrt(S11 S22) (sin t + (pi - t) cos t), Kdot = (pi - t) / (2 pi)
            np.multiply(S, rinv[i0:i1, None], out=u)
            u *= rinv[None, i0:]
            np.clip(u, -1.0, 1.0, out=u)
            # cos t = 1 exactly on the diagonal: arccos would turn a rounding error of 1e-16
            # into t ~ 1e-8, and Kdot(x, x) = 1/2 with it
            u[k, k] = np.where(d[i0:i1] > 0, 1.0, 0.0)
            pmt = kd
            np.arccos(u, out=pmt)
            np.subtract(np.pi, pmt, out=pmt)                     # pi - t
            np.multiply(u, u, out=K)
            np.subtract(1.0, K, out=K)
            np.sqrt(K, out=K)                                    # sin t
            np.multiply(u, pmt, out=aux)
            K += aux                                             # sin t + (pi - t) cos t
            K *= rt[i0:i1, None] / (2.0 * np.pi)
            K *= rt[None, i0:]
            if want_ntk:
                pmt *= 1.0 / (2.0 * np.pi)                       # Kdot
                _accumulate_ntk(Bs, tr, ("ntk", "derived"), K, pmt, S, sw2, sb2, plan)
        _accumulate(Bs, tr, ("nngp", "derived"), K, plan)
    out = dict((key, (tr[key], Bs[key])) for key in keys)
    if activation == "relu" or not want_ntk:                     # the variant changes only the Erf NTK
        for v in variants:
            for g in gets:
                out[(g, v)] = out[(g, "derived")]
    for v in variants:                                           # NNGP is the same in both variants
        out[("nngp", v)] = out[("nngp", "derived")]
    return {(g, v): out[(g, v)] for g in gets for v in variants}


def _segments(lo: int, hi: int, starts: np.ndarray):
    """The classes met by positions [lo, hi) of an organised dataset: offsets from lo, class ids."""
    c_lo = int(np.searchsorted(starts, lo, side="right")) - 1
    c_hi = int(np.searchsorted(starts, hi, side="left"))
    cls = np.arange(c_lo, c_hi)
    offs = np.maximum(starts[cls], lo) - lo
    return offs, cls


def _accumulate(Bs, tr, key, G, plan):
    """Add the upper part of a chunk of rows, ``K[i0:i1, i0:]``, to the class-block sums and trace.

    Sums over class segments use ``np.add.reduceat`` (no BLAS call, so no thread hand-offs)."""
    m, (ro, rc), (co, cc) = plan
    B = Bs[key]
    sq = np.add.reduceat(np.add.reduceat(G[:, :m], ro, axis=1), ro, axis=0)   # the diagonal square
    B[np.ix_(rc, rc)] += sq
    if G.shape[1] > m:                                           # the rectangle right of it ...
        rect = np.add.reduceat(np.add.reduceat(G[:, m:], co, axis=1), ro, axis=0)
        B[np.ix_(rc, cc)] += rect
        B[np.ix_(cc, rc)] += rect.T                              # ... and its mirror image
    tr[key] += float(np.trace(G[:, :m]))


def _accumulate_ntk(Bs, tr, key, K, kdot, S, sw2, sb2, plan):
    # eq. 13 (one hidden layer): Theta = Sigma1 + Sigma0 * sw2 * Kdot, Sigma1 = sb2 + sw2 K1 (eq. 14),
    # evaluated as sw2 (K1 + Sigma0 Kdot) + sb2, in place (kdot is overwritten)
    kdot *= S
    kdot += K
    if sw2 != 1.0:
        kdot *= sw2
    if sb2:
        kdot += sb2
    _accumulate(Bs, tr, key, kdot, plan)


class KernelModel:
    """The limiting NNGP and NTK of one activation, as sweep rows (``model`` = "nngp"/"ntk").

    ``variant`` is ``"derived"``, ``"reference"`` (MATH.md 8.1) or a tuple of both; with a
    tuple every dataset gives one NNGP and one NTK row per variant (column ``variant``),
    computed in one pass. At ``depth=2`` (the paper's 2L-FCN) the rows come from
    :func:`kernel_block_sums`, which never stores the Gram; ``fused=False`` or a deeper
    network forms each Gram with :func:`nc1lib.kernels.kernel_fn` instead (same numbers to
    rounding; the tests check it).
    """

    def __init__(self, activation: str, get=("nngp", "ntk"), depth: int = 2, sigma_w: float = 1.0,
                 sigma_b: float = 0.0, variant="derived", fused: bool = True):
        check_choice(activation, ("erf", "relu"), "activation")
        variants = (variant,) if isinstance(variant, str) else tuple(variant)
        if not variants:
            raise ValueError("variant must name at least one variant")
        for v in variants:
            check_choice(v, ("derived", "reference"), "variant")
        gets = (get,) if isinstance(get, str) else tuple(get)
        for g in gets:
            check_choice(g, ("nngp", "ntk"), "get")
        if int(depth) != depth or depth < 2:
            raise ValueError(f"depth must be an integer >= 2 (one hidden layer or more), got {depth!r}")
        self.activation, self.get, self.depth = activation, gets, int(depth)
        self.sigma_w = check_positive(sigma_w, "sigma_w")
        self.sigma_b = check_positive(sigma_b, "sigma_b", allow_zero=True)
        self.variant, self.variants, self.fused = variant, variants, bool(fused)
        self.name = f"kernels-{activation}" + ("" if variants == ("derived",) else "-" + "+".join(variants))

    def cost(self, spec: GaussianClasses, repeats: int) -> float:
        """Relative cost of a cell: N^2 Gram entries, each a d0-term product and ~30 flops of
        inverse trig and square roots (deeper networks: once per layer)."""
        return float(repeats) * spec.N ** 2 * (spec.d0 + 30.0) * (self.depth - 1)

    def config(self) -> dict:
        return {"activation": self.activation, "get": list(self.get), "depth": self.depth,
                "sigma_w": self.sigma_w, "sigma_b": self.sigma_b, "variant": list(self.variants),
                "fused": self.fused and self.depth == 2}

    def run_cell(self, datasets, seeds):
        with limit_blas_threads(1 if self.fused and self.depth == 2 else None):
            return self._run_cell(datasets)

    def _run_cell(self, datasets):
        from .kernels import kernel_fn
        out = []
        for ds in datasets:
            rows = []
            if self.fused and self.depth == 2:
                sums = kernel_block_sums(ds.X, ds.class_sizes, self.activation, sigma_w=self.sigma_w,
                                         sigma_b=self.sigma_b, variants=self.variants, get=self.get)
                for v in self.variants:
                    for g in self.get:
                        rows.append(row_from_block_sums(g, *sums[(g, v)], ds.class_sizes,
                                                        activation=self.activation, variant=v))
            else:
                for v in self.variants:
                    grams = kernel_fn(ds.X, activation=self.activation, get=self.get, depth=self.depth,
                                      sigma_w=self.sigma_w, sigma_b=self.sigma_b, variant=v)
                    rows += [gram_row(g, grams[g], ds.class_sizes, activation=self.activation, variant=v)
                             for g in self.get]
            out.append(rows)
        return out
