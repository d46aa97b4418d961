"""Sweeps: run models over a grid of datasets and repeats into one tidy table.

A *model* is any object with

* ``name`` (str) and ``config()`` -> dict of plain data (its settings, part of the cache key);
* ``run_cell(datasets, seeds)`` -> one list of row dicts per dataset. All datasets of a
  call share their spec (one grid cell, one per repeat), so a model may process them
  together (the trained network batches its repeats). Each row carries at least
  ``model`` and ``nc1``; anything else it returns (``tr_w``, ``tr_b``, diagnostics)
  becomes a column.

:func:`sweep` adds the grid columns (N, d0, class sizes, repeat, seed), the data NC1
and the relative NC1 (App. F), times each cell, caches each cell on disk keyed by the
settings and a hash of the library's source, and reports -- never drops -- runs whose
NC1 is NaN or infinite.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from concurrent.futures import Executor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .datasets import GaussianClasses
from .nc1 import covariance_traces_from_gram, nc1_of_data, relative_nc1

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


def gram_row(model: str, K, class_sizes, **extra) -> dict:
    """A result row from a Gram matrix: NC1 in the paper's weighting and the sample-weighted one."""
    tr_w, tr_b = covariance_traces_from_gram(K, class_sizes, "paper")
    tr_ws, tr_bs = covariance_traces_from_gram(K, class_sizes, "sample")
    return {"model": model, "nc1": tr_w / tr_b, "nc1_sample": tr_ws / tr_bs,
            "tr_w": tr_w, "tr_b": tr_b, **extra}


def _run_cell(model, spec: GaussianClasses, seeds: Sequence[int], data_weighting: str) -> list[dict]:
    t0 = time.perf_counter()
    datasets = [spec.sample(s) for s in seeds]
    results = model.run_cell(datasets, list(seeds))
    if len(results) != len(datasets):
        raise RuntimeError(f"model {model.name!r} returned {len(results)} results for {len(datasets)} datasets")
    seconds = (time.perf_counter() - t0) / len(datasets)
    rows = []
    for r, (ds, seed, res) in enumerate(zip(datasets, seeds, results)):
        data_nc1 = nc1_of_data(ds.X, ds.class_sizes, data_weighting)
        for row in res:
            rows.append({"model": row["model"], "dataset": spec.name, "N": ds.N, "d0": ds.d0,
                         "class_sizes": "/".join(map(str, ds.class_sizes)), "repeat": r, "seed": int(seed),
                         **{k: v for k, v in row.items() if k != "model"},
                         "data_nc1": data_nc1,
                         "rel_nc1": float(relative_nc1(row["nc1"], data_nc1)),
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
    if executor is None:
        for i in todo:
            results[i] = _run_cell(*jobs[i], data_weighting)
            store(jobs[i], results[i])
            bar.update(1)
    else:
        futures = {i: executor.submit(_run_cell, *jobs[i], data_weighting) for i in todo}
        for i, fut in futures.items():
            results[i] = fut.result()
            store(jobs[i], results[i])
            bar.update(1)
    bar.close()

    table = pd.DataFrame([row for rows in results for row in rows])
    return flag_nonfinite(table)


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


class KernelModel:
    """The limiting NNGP and NTK of one activation, as sweep rows (``model`` = "nngp"/"ntk")."""

    def __init__(self, activation: str, get=("nngp", "ntk"), depth: int = 2, sigma_w: float = 1.0,
                 sigma_b: float = 0.0, variant: str = "derived"):
        self.activation, self.get, self.depth = activation, tuple(get), depth
        self.sigma_w, self.sigma_b, self.variant = sigma_w, sigma_b, variant
        self.name = f"kernels-{activation}" + ("" if variant == "derived" else f"-{variant}")

    def config(self) -> dict:
        return {"activation": self.activation, "get": list(self.get), "depth": self.depth,
                "sigma_w": self.sigma_w, "sigma_b": self.sigma_b, "variant": self.variant}

    def run_cell(self, datasets, seeds):
        from .kernels import kernel_fn
        out = []
        for ds in datasets:
            grams = kernel_fn(ds.X, activation=self.activation, get=self.get, depth=self.depth,
                              sigma_w=self.sigma_w, sigma_b=self.sigma_b, variant=self.variant)
            out.append([gram_row(g, grams[g], ds.class_sizes, activation=self.activation,
                                 variant=self.variant) for g in self.get])
        return out
