"""The Equations of State (EoS) of the data-aware GP kernel (paper Section 6, Definition 6.1).

A two-layer Erf network ``f(x) = sum_c a_c erf(w_c . x)`` with no bias and a scalar output,
``h`` hidden units, first-layer rows ``w_c`` with prior ``N(0, (sigma_w^2/d0) I)`` and
output weights ``a_c ~ N(0, sigma_a^2 / h)``, fitted to ``y`` with noise ``sigma^2``
(Seroussi et al. 2023). The unknown is ``Sigma``, the covariance of one row of ``W1``:

* ``K(Sigma) = X Sigma X^T``                                                   (Def. 6.1)
* ``Q(Sigma)_ij = sigma_a^2 (2/pi) arcsin(2 K_ij / sqrt((1 + 2 K_ii)(1 + 2 K_jj)))``  (Def. 6.1)
* ``fbar = Q (Q + sigma^2 I)^-1 y``, ``tbar = y - fbar = sigma^2 (Q + sigma^2 I)^-1 y``
* fixed point ``Sigma^-1 = (d0/sigma_w^2) I + (1/h) dTr[A Q(Sigma)]/dSigma`` (A held fixed).

Derivation (the book's chapter 5 restates it): a Gaussian variational posterior over the
``h`` i.i.d. rows, ``w ~ N(0, Sigma)``, with the output weights integrated out and the
random-feature kernel replaced by its mean ``Q(Sigma)``, has the free energy

    F(Sigma) = (h/2) [(d0/sigma_w^2) Tr Sigma - log det Sigma]
             + (1/2) [y^T (Q + sigma^2 I)^-1 y + log det(Q + sigma^2 I)].

Since ``d/dQ`` of the second bracket is ``A = (Q + sigma^2 I)^-1 - alpha alpha^T`` with
``alpha = (Q + sigma^2 I)^-1 y = tbar / sigma^2``, ``dF/dSigma = 0`` is exactly the fixed
point above with ``A = (Q + sigma^2 I)^-1 - tbar tbar^T / sigma^4`` (``variant="derived"``).

``variant="reference"`` reproduces the reference implementation's update (MATH.md 8.2,
8.3): ``A = (Q + sigma^2 I)^-1 - sigma^2 M M^T`` with ``M_ij = y_j - fbar_i``. It has no
free energy; it is solved with Newton-Krylov on ``Sigma - G(Sigma)`` as the paper does.

Speed: ``dTr[A Q]/dSigma`` is computed in closed form (:func:`trace_grad`), as
``X^T G X`` with ``O(N^2)`` elementwise work, and ``(Q + sigma^2 I)^-1`` from a Cholesky
factor (LAPACK ``potrf``/``potri``) -- no autograd, no general inverse.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.optimize
from scipy.linalg import lapack

from ._validate import as_float_array, check_choice, check_class_sizes, check_positive

VARIANTS = ("derived", "reference")
METHODS = ("auto", "fixed-point", "newton-krylov", "lbfgs")

#: The paper's Newton-Krylov ``f_tol`` (an absolute bound on max|Sigma - G(Sigma)|). The library's
#: default is tighter (tol=1e-6 and rtol=1e-5): at d0 = 128 the NNGP point itself already meets the
#: paper's tolerance (scipy's newton_krylov still takes one step; a method that tests its start stops
#: there), and at d0 = 1 it accepts the spurious point Sigma ~ 0 (see the book's chapters 5 and 7).
PAPER_TOL = 5e-4

#: The reference's 24-step annealing schedule (paper Sec. 6.2; MATH.md 7).
REFERENCE_SCHEDULE = (tuple(float(f) for f in range(100000, 9999, -10000))
                      + tuple(float(f) for f in range(9000, 999, -1000))
                      + (900.0, 800.0, 700.0, 600.0, 500.0))


def annealing_schedule(h: float, base=REFERENCE_SCHEDULE) -> tuple[float, ...]:
    """The paper's schedule for a target width ``h``: the factors of ``base`` down to ``h`` (Sec. 6.2).

    If ``h`` is not itself in ``base`` it is appended as the last factor.
    """
    h = check_positive(h, "h")
    out = tuple(float(f) for f in base if f >= h)
    if not out or out[-1] != h:
        out = out + (h,)
    return out


class EoSConvergenceError(RuntimeError):
    """An annealing step of the EoS did not reach the residual tolerance."""

    def __init__(self, step: int, factor: float, residual: float, iterations: int, tol: float, detail: str = ""):
        self.step, self.factor, self.residual, self.iterations, self.tol = step, factor, residual, iterations, tol
        msg = (f"EoS annealing step {step} (factor h = {factor:g}) did not converge: residual "
               f"max|Sigma - G(Sigma)| = {residual:.3g} > tol = {tol:.3g} after {iterations} iterations")
        super().__init__(msg + (f" ({detail})" if detail else ""))


# --------------------------------------------------------------------------------------
# The kernel Q(Sigma) and the closed-form gradient of Tr[A Q(Sigma)]
# --------------------------------------------------------------------------------------

def _kernel_parts(X, Sigma, sigma_a2):
    """K = X Sigma X^T, r_i = (1 + 2 K_ii)^-1/2, u = 2 K_ij r_i r_j and Q = sigma_a^2 (2/pi) arcsin(u)."""
    K = X @ Sigma @ X.T
    K = 0.5 * (K + K.T)
    a = 1.0 + 2.0 * np.diag(K)
    if np.any(a <= 0):
        raise ValueError("Sigma gives a negative pre-activation variance K_ii < -1/2; Sigma must be positive definite")
    r = 1.0 / np.sqrt(a)
    u = np.clip(2.0 * K * r[:, None] * r[None, :], -1.0, 1.0)
    Q = sigma_a2 * (2.0 / np.pi) * np.arcsin(u)          # Def. 6.1: Q(Sigma)
    return a, r, u, Q


def adaptive_kernel(X, Sigma, sigma_a2: float = 1.0 / 128):
    """The post-activation kernel ``Q(Sigma)`` of Definition 6.1 (Erf, no bias)."""
    X = as_float_array(X, "X", ndim=2)
    Sigma = _check_sigma(Sigma, X.shape[1])
    return _kernel_parts(X, Sigma, check_positive(sigma_a2, "sigma_a2"))[3]


def _trace_grad_parts(X, A, a, r, u, sigma_a2):
    """dTr[A Q]/dSigma = X^T G X, with G = dTr[A Q]/dK including the K_ii, K_jj dependence."""
    # dQ_ij = sigma_a^2 (2/pi) (1-u^2)^-1/2 du,  du = 2 dK_ij r_i r_j - u_ij (dK_ii/a_i + dK_jj/a_j)
    B = A * (sigma_a2 * (2.0 / np.pi)) / np.sqrt(np.maximum(1.0 - u * u, 1e-300))
    G = 2.0 * B * r[:, None] * r[None, :]
    G[np.diag_indices_from(G)] -= ((B * u).sum(axis=1) + (B * u).sum(axis=0)) / a
    return X.T @ G @ X


def trace_grad(X, Sigma, A, sigma_a2: float = 1.0 / 128):
    """Closed-form ``dTr[A Q(Sigma)]/dSigma`` with ``A`` held fixed (the EoS right-hand side)."""
    X = as_float_array(X, "X", ndim=2)
    Sigma = _check_sigma(Sigma, X.shape[1])
    A = as_float_array(A, "A", ndim=2)
    if A.shape != (X.shape[0], X.shape[0]):
        raise ValueError(f"A must have shape ({X.shape[0]}, {X.shape[0]}), got {A.shape}")
    a, r, u, _ = _kernel_parts(X, Sigma, sigma_a2)
    A = 0.5 * (A + A.T)
    return _trace_grad_parts(X, A, a, r, u, sigma_a2)


def _cho_inverse(C):
    """Cholesky factor (lower) and inverse of an SPD matrix via LAPACK potrf/potri."""
    L, info = lapack.dpotrf(C, lower=1, clean=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"Q + sigma^2 I is not numerically positive definite (potrf info {info})")
    Ci, info = lapack.dpotri(L, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverting Q + sigma^2 I failed (potri info {info})")
    Ci = np.tril(Ci) + np.tril(Ci, -1).T
    return L, Ci


@dataclass
class _State:
    """Everything one evaluation at ``Sigma`` produces."""

    Sigma: np.ndarray
    Q: np.ndarray
    fbar: np.ndarray
    alpha: np.ndarray        # (Q + sigma^2 I)^-1 y
    logdet: float            # log det(Q + sigma^2 I)
    yalpha: float            # y^T (Q + sigma^2 I)^-1 y
    A: np.ndarray
    rhs_grad: np.ndarray     # dTr[A Q]/dSigma


def _evaluate(X, y, Sigma, sigma_a2, sigma2, variant) -> _State:
    a, r, u, Q = _kernel_parts(X, Sigma, sigma_a2)
    N = X.shape[0]
    C = Q.copy()
    C[np.diag_indices(N)] += sigma2
    L, Ci = _cho_inverse(C)
    alpha = Ci @ y
    fbar = Q @ alpha                                      # GP prediction fbar = Q (Q + sigma^2 I)^-1 y
    logdet = 2.0 * float(np.sum(np.log(np.diag(L))))
    if variant == "derived":
        # A = (Q + sigma^2 I)^-1 - tbar tbar^T / sigma^4 = C^-1 - alpha alpha^T  (tbar = sigma^2 alpha)
        A = Ci - np.outer(alpha, alpha)
    else:
        # MATH.md 8.2-8.3: A = C^-1 - sigma^2 M M^T, M_ij = y_j - fbar_i, so that
        # (M M^T)_ik = sum_j y_j^2 - S_y (fbar_i + fbar_k) + N fbar_i fbar_k  (rank <= 3)
        sy2, sy = float(y @ y), float(y.sum())
        MMt = sy2 - sy * (fbar[:, None] + fbar[None, :]) + N * np.outer(fbar, fbar)
        A = Ci - sigma2 * MMt
    g = _trace_grad_parts(X, A, a, r, u, sigma_a2)
    return _State(Sigma, Q, fbar, alpha, logdet, float(y @ alpha), A, 0.5 * (g + g.T))


def _eos_map(state: _State, h, d0, sigma_w2):
    """G(Sigma) = [(d0/sigma_w^2) I + (1/h) dTr[A Q]/dSigma]^-1 (Def. 6.1); a d0 x d0 inverse."""
    P = state.rhs_grad / h
    P[np.diag_indices(d0)] += d0 / sigma_w2
    Gs = np.linalg.inv(P)
    return 0.5 * (Gs + Gs.T)


def _check_sigma(Sigma, d0):
    Sigma = as_float_array(Sigma, "Sigma", ndim=2)
    if Sigma.shape != (d0, d0):
        raise ValueError(f"Sigma must have shape ({d0}, {d0}), got {Sigma.shape}")
    return 0.5 * (Sigma + Sigma.T)


def _check_problem(X, y, sigma_w2, sigma_a2, sigma2):
    X = as_float_array(X, "X", ndim=2)
    y = as_float_array(y, "y", ndim=1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} entries but X has N = {X.shape[0]} rows")
    return (X, y, check_positive(sigma_w2, "sigma_w2"), check_positive(sigma_a2, "sigma_a2"),
            check_positive(sigma2, "sigma2"))


def eos_residual(X, y, Sigma, h: float, sigma_w2: float = 1.0, sigma_a2: float = 1.0 / 128,
                 sigma2: float = 1e-6, variant: str = "derived") -> np.ndarray:
    """``Sigma - G(Sigma)``: zero at a solution of the EoS (the function Newton-Krylov solves)."""
    X, y, sigma_w2, sigma_a2, sigma2 = _check_problem(X, y, sigma_w2, sigma_a2, sigma2)
    check_choice(variant, VARIANTS, "variant")
    Sigma = _check_sigma(Sigma, X.shape[1])
    s = _evaluate(X, y, Sigma, sigma_a2, sigma2, variant)
    return Sigma - _eos_map(s, check_positive(h, "h"), X.shape[1], sigma_w2)


def free_energy(X, y, Sigma, h: float, sigma_w2: float = 1.0, sigma_a2: float = 1.0 / 128,
                sigma2: float = 1e-6) -> float:
    """The derived variant's free energy ``F(Sigma)`` (module docstring); the EoS is ``dF/dSigma = 0``."""
    X, y, sigma_w2, sigma_a2, sigma2 = _check_problem(X, y, sigma_w2, sigma_a2, sigma2)
    Sigma = _check_sigma(Sigma, X.shape[1])
    s = _evaluate(X, y, Sigma, sigma_a2, sigma2, "derived")
    return _free_energy_value(s, check_positive(h, "h"), X.shape[1], sigma_w2)


def _free_energy_value(s: _State, h, d0, sigma_w2):
    sign, ld = np.linalg.slogdet(s.Sigma)
    if sign <= 0:
        return np.inf
    # F = (h/2)[(d0/sigma_w^2) Tr Sigma - log det Sigma] + (1/2)[y^T C^-1 y + log det C], C = Q + sigma^2 I
    return 0.5 * h * ((d0 / sigma_w2) * float(np.trace(s.Sigma)) - ld) + 0.5 * (s.yalpha + s.logdet)


def _free_energy_grad(s: _State, h, d0, sigma_w2):
    """dF/dSigma = (h/2)[(d0/sigma_w^2) I - Sigma^-1] + (1/2) dTr[A Q]/dSigma."""
    g = 0.5 * s.rhs_grad - 0.5 * h * np.linalg.inv(s.Sigma)
    g[np.diag_indices(d0)] += 0.5 * h * d0 / sigma_w2
    return 0.5 * (g + g.T)


# --------------------------------------------------------------------------------------
# The annealed solver
# --------------------------------------------------------------------------------------

@dataclass
class EoSStep:
    """Diagnostics of one annealing step (one factor of the schedule)."""

    step: int
    factor: float
    residual: float          # max |Sigma - G(Sigma)| at the returned Sigma (newton_krylov's f_tol norm)
    rel_residual: float      # residual / max |Sigma|
    iterations: int
    fevals: int              # evaluations of Q, (Q + sigma^2 I)^-1 and the gradient
    seconds: float
    converged: bool
    method: str
    nc1: float = np.nan      # NC1 of Q at the end of the step (Theorem 4.1, paper weighting)
    tr_w: float = np.nan
    tr_b: float = np.nan
    nc1_sample: float = np.nan  # the same with the sample-weighted traces (MATH.md 2)
    train_mse: float = np.nan  # mean (y - fbar)^2
    message: str = ""


@dataclass
class EoSResult:
    """The solution of the annealed EoS and the diagnostics of every step."""

    Sigma: np.ndarray        # the covariance of one row of W1 at the last factor
    Q: np.ndarray            # the adaptive kernel Q(Sigma)
    fbar: np.ndarray         # the GP prediction Q (Q + sigma^2 I)^-1 y
    steps: list[EoSStep]
    variant: str
    settings: dict
    path: dict = field(default_factory=dict)   # factor -> Sigma, when keep_path=True

    @property
    def converged(self) -> bool:
        return all(s.converged for s in self.steps)

    def table(self) -> pd.DataFrame:
        """One row per annealing step."""
        return pd.DataFrame([s.__dict__ for s in self.steps])


def _nk_step(F, Sigma, tol, maxiter, inner_maxiter):
    """One Newton-Krylov solve of F(Sigma) = 0 (the paper's solver); returns (Sigma, iterations, message)."""
    its = [0]

    def cb(x, f):
        its[0] += 1

    try:
        # errstate: scipy's own x_rtol test divides by x_rtol = inf and warns; our F raises on real trouble
        with np.errstate(invalid="ignore", divide="ignore"):
            out = scipy.optimize.newton_krylov(F, Sigma, f_tol=tol, maxiter=maxiter, inner_maxiter=inner_maxiter,
                                               callback=cb)
        return np.asarray(out), its[0], ""
    except scipy.optimize.NoConvergence as e:
        return np.asarray(e.args[0]), its[0], "newton_krylov: no convergence"


def solve_eos(X, y, *, h: float = 500.0, sigma_w2: float = 1.0, sigma_a2: float = 1.0 / 128,
              sigma2: float = 1e-6, schedule=None, variant: str = "derived", method: str = "auto",
              tol: float = 1e-6, rtol: float | None = 1e-5, maxiter: int = 100, inner_maxiter: int = 100,
              class_sizes=None, Sigma0=None, on_failure: str = "raise", keep_path: bool = False) -> EoSResult:
    """Solve the EoS of the 2-layer Erf network with annealing (paper Sec. 6.2).

    Parameters
    ----------
    X, y : data (N, d0) and scalar labels (N,), organised by class when ``class_sizes`` is given.
    h : target width; ``schedule`` defaults to :func:`annealing_schedule` ``(h)``, the paper's
        24 factors 1e5, 9e4, ..., 500 cut at ``h``. Any decreasing sequence may be passed.
    sigma_w2, sigma_a2, sigma2 : prior variances of W1 rows (times d0), of the readout (times h),
        and the noise. The paper: 1, 1/128, 1e-6.
    variant : ``"derived"`` (free-energy stationarity) or ``"reference"`` (MATH.md 8.2-8.3).
    method : ``"newton-krylov"`` (scipy, as the paper), ``"lbfgs"`` (derived only: minimise the free
        energy over a Cholesky factor of Sigma), ``"fixed-point"`` (Anderson-accelerated, safeguarded:
        see :func:`_fixed_point_step`) or ``"auto"`` (= fixed-point, the fastest in benchmarks/bench_eos.py).
    tol : residual tolerance on ``max |Sigma - G(Sigma)|`` every step (the paper's ``f_tol`` is
        :data:`PAPER_TOL` = 5e-4; pass ``tol=PAPER_TOL, rtol=None`` for its criterion).
    rtol : if given, also require ``max |Sigma - G(Sigma)| <= rtol * max |Sigma|``. The paper's
        absolute ``f_tol = 5e-4`` is loose where Sigma's entries are small (large d0: ~1/d0) and
        accepts the spurious point Sigma ~ 0 (where Sigma and G(Sigma) are both tiny).
    maxiter, inner_maxiter : Newton iterations and Krylov iterations per step (L-BFGS: iterations).
    class_sizes : if given, the NC1 of Q is recorded at every step.
    Sigma0 : starting point; default the NNGP point ``(sigma_w2/d0) I``.
    on_failure : ``"raise"`` an :class:`EoSConvergenceError` naming the step, or ``"flag"``: keep
        going and mark the step ``converged=False`` (a failed evaluation ends the path; later steps
        are reported with NaN and the error message).
    keep_path : keep Sigma at every factor in ``result.path``.
    """
    X, y, sigma_w2, sigma_a2, sigma2 = _check_problem(X, y, sigma_w2, sigma_a2, sigma2)
    check_choice(variant, VARIANTS, "variant")
    check_choice(method, METHODS, "method")
    check_choice(on_failure, ("raise", "flag"), "on_failure")
    h = check_positive(h, "h")
    tol = check_positive(tol, "tol")
    if rtol is not None:
        rtol = check_positive(rtol, "rtol")

    def tol_at(S):
        return tol if rtol is None else min(tol, rtol * float(np.max(np.abs(S))))
    if int(maxiter) != maxiter or maxiter < 1:
        raise ValueError(f"maxiter must be a positive integer, got {maxiter!r}")
    if int(inner_maxiter) != inner_maxiter or inner_maxiter < 1:
        raise ValueError(f"inner_maxiter must be a positive integer, got {inner_maxiter!r}")
    if method == "lbfgs" and variant == "reference":
        raise ValueError("method='lbfgs' minimises the derived free energy; variant='reference' has none "
                         "(use method='newton-krylov')")
    if method == "auto":
        method = "fixed-point"
    sched = annealing_schedule(h) if schedule is None else tuple(float(f) for f in schedule)
    if not sched or any(not np.isfinite(f) or f <= 0 for f in sched):
        raise ValueError(f"schedule must be a non-empty sequence of positive factors, got {schedule!r}")
    cs = None if class_sizes is None else check_class_sizes(class_sizes, X.shape[0])
    N, d0 = X.shape
    Sigma = (sigma_w2 / d0) * np.eye(d0) if Sigma0 is None else _check_sigma(Sigma0, d0)

    steps: list[EoSStep] = []
    path = {}
    state = None
    failed = ""
    for k, factor in enumerate(sched, start=1):
        if failed:
            steps.append(EoSStep(k, factor, np.nan, np.nan, 0, 0, 0.0, False, method, message=failed))
            continue
        t0 = time.perf_counter()
        nfev = [0]
        fallback = ""
        try:
            if method != "fixed-point":
                state = None
            if method == "newton-krylov":
                def F(S, factor=factor):
                    nfev[0] += 1
                    S = 0.5 * (S + S.T)
                    return S - _eos_map(_evaluate(X, y, S, sigma_a2, sigma2, variant), factor, d0, sigma_w2)
                Sigma, its, msg = _nk_step(F, Sigma, tol_at(Sigma), maxiter, inner_maxiter)
            elif method == "fixed-point":
                Sigma, its, msg, state, fallback = _fixed_point_step(X, y, Sigma, state, factor, d0, sigma_w2,
                                                                     sigma_a2, sigma2, variant, tol_at, maxiter, nfev)
            else:
                Sigma, its, msg = _lbfgs_step(X, y, Sigma, factor, d0, sigma_w2, sigma_a2, sigma2, tol_at, maxiter,
                                              nfev)
            if state is None or state.Sigma is not Sigma:
                Sigma = 0.5 * (Sigma + Sigma.T)
                nfev[0] += 1
                state = _evaluate(X, y, Sigma, sigma_a2, sigma2, variant)
            res = float(np.max(np.abs(Sigma - _eos_map(state, factor, d0, sigma_w2))))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as e:
            failed = f"step {k} (h = {factor:g}) failed: {e}"
            if on_failure == "raise":
                raise EoSConvergenceError(k, factor, np.nan, 0, tol, str(e)) from e
            steps.append(EoSStep(k, factor, np.nan, np.nan, 0, nfev[0], time.perf_counter() - t0, False, method,
                                 message=failed))
            state = None
            continue
        secs = time.perf_counter() - t0
        ok = bool(np.isfinite(res) and res <= tol_at(Sigma))
        if not ok and on_failure == "raise":
            raise EoSConvergenceError(k, factor, res, its, tol_at(Sigma), msg)
        st = EoSStep(k, factor, res, res / float(np.max(np.abs(Sigma))), its, nfev[0], secs, ok,
                     method + (f"+{fallback}" if fallback else ""),
                     train_mse=float(np.mean((y - state.fbar) ** 2)), message=msg if not ok else "")
        if cs is not None:
            from .nc1 import covariance_traces_from_gram
            tw, tb = covariance_traces_from_gram(state.Q, cs, "paper")
            st.nc1, st.tr_w, st.tr_b = tw / tb, tw, tb
            tws, tbs = covariance_traces_from_gram(state.Q, cs, "sample")
            st.nc1_sample = tws / tbs
        steps.append(st)
        if keep_path:
            path[factor] = Sigma.copy()
    if state is None:
        Q = fbar = None
    else:
        Q, fbar = state.Q, state.fbar
    settings = dict(h=h, sigma_w2=sigma_w2, sigma_a2=sigma_a2, sigma2=sigma2, schedule=list(sched), variant=variant,
                    method=method, tol=tol, rtol=rtol, maxiter=maxiter, inner_maxiter=inner_maxiter)
    return EoSResult(Sigma, Q, fbar, steps, variant, settings, path)


def _lbfgs_step(X, y, Sigma, h, d0, sigma_w2, sigma_a2, sigma2, tol_at, maxiter, nfev):
    """Minimise F over Sigma = L L^T (L lower triangular, scaled by the prior's sqrt(sigma_w^2/d0)).

    Stops as soon as the EoS residual max|Sigma - G(Sigma)| (from the same evaluation) is below ``tol``.
    """
    s0 = np.sqrt(sigma_w2 / d0)
    il = np.tril_indices(d0)
    L0 = np.linalg.cholesky(Sigma)
    last = {}

    def unpack(x):
        L = np.zeros((d0, d0))
        L[il] = x * s0
        return L

    def fun(x):
        nfev[0] += 1
        L = unpack(x)
        S = L @ L.T
        st = _evaluate(X, y, S, sigma_a2, sigma2, "derived")
        f = _free_energy_value(st, h, d0, sigma_w2)
        gS = _free_energy_grad(st, h, d0, sigma_w2)
        gL = 2.0 * gS @ L                                # dF/dL for Sigma = L L^T
        res = float(np.max(np.abs(S - _eos_map(st, h, d0, sigma_w2))))
        last["x"], last["res"] = x.copy(), res
        if res <= tol_at(S):
            last["best"] = x.copy()
        return f, gL[il] * s0

    its = [0]

    def cb(intermediate_result):
        its[0] += 1
        if "best" in last:
            raise StopIteration

    # first evaluation: already converged?
    x0 = L0[il] / s0
    fun(x0)
    nfev[0] -= 1
    if "best" in last:
        return Sigma, 0, ""
    r = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", callback=cb,
                                options=dict(maxiter=maxiter, maxfun=10 * maxiter, ftol=0.0, gtol=0.0, maxcor=20))
    x = last.get("best", r.x)
    L = unpack(x)
    msg = "" if "best" in last else f"L-BFGS: {r.message}"
    return L @ L.T, its[0], msg



def _is_pd(S):
    try:
        np.linalg.cholesky(S)
        return True
    except np.linalg.LinAlgError:
        return False


def _fixed_point_step(X, y, Sigma, state, h, d0, sigma_w2, sigma_a2, sigma2, variant, tol_at, maxiter, nfev,
                      memory: int = 5, stall: int = 10):
    """Anderson-accelerated fixed-point iteration Sigma <- G(Sigma) (type II, ``memory`` past steps).

    Each evaluation at Sigma gives both the residual at Sigma and the next Picard iterate, so a step
    whose start already satisfies the tolerance costs no evaluation beyond the previous step's last.
    An iterate that is not positive definite is replaced by the Picard step, shortened until it is.
    Safeguards, because G is expansive near some solutions (small h): for the derived variant an
    iterate that raises the free energy hands the step over to L-BFGS on F (from the best point);
    for the reference variant, ``stall`` iterations without a smaller residual hand it to Newton-Krylov.
    Returns (Sigma, iterations, message, state, fallback), fallback being "" or the method used.
    """
    if state is None or state.Sigma is not Sigma:
        nfev[0] += 1
        state = _evaluate(X, y, Sigma, sigma_a2, sigma2, variant)
    derived = variant == "derived"
    fval = _free_energy_value(state, h, d0, sigma_w2) if derived else None
    best = (np.inf, Sigma, state)
    since_best = 0
    xs, fs = [], []
    for it in range(maxiter + 1):
        Gs = _eos_map(state, h, d0, sigma_w2)
        f = (Gs - Sigma).ravel()
        res = float(np.max(np.abs(f)))
        if res <= tol_at(Sigma):
            return Sigma, it, "", state, ""
        if res < best[0]:
            best, since_best = (res, Sigma, state), 0
        else:
            since_best += 1
        if it == maxiter or (not derived and since_best >= stall):
            break
        x = Sigma.ravel()
        xs.append(x)
        fs.append(f)
        xs, fs = xs[-(memory + 1):], fs[-(memory + 1):]
        x_new = x + f
        if len(fs) > 1:
            dF = np.stack([fs[i + 1] - fs[i] for i in range(len(fs) - 1)], axis=1)
            dX = np.stack([xs[i + 1] - xs[i] for i in range(len(xs) - 1)], axis=1)
            gamma = np.linalg.lstsq(dF, f, rcond=None)[0]
            x_new = x + f - (dX + dF) @ gamma
        S_new = x_new.reshape(d0, d0)
        S_new = 0.5 * (S_new + S_new.T)
        if not _is_pd(S_new):
            xs, fs = [], []
            t = 1.0
            S_new = Gs
            while not _is_pd(S_new) and t > 1e-8:
                t *= 0.5
                S_new = Sigma + t * (Gs - Sigma)
            if not _is_pd(S_new):
                raise np.linalg.LinAlgError("no positive definite step towards G(Sigma) was found")
        nfev[0] += 1
        new_state = _evaluate(X, y, S_new, sigma_a2, sigma2, variant)
        if derived:
            f_new = _free_energy_value(new_state, h, d0, sigma_w2)
            if not f_new <= fval + 1e-12 * abs(fval):
                # the fixed-point iterate went uphill on F: minimise F directly from here
                S_l, its_l, msg = _lbfgs_step(X, y, Sigma, h, d0, sigma_w2, sigma_a2, sigma2, tol_at, maxiter, nfev)
                return S_l, it + its_l, msg, None, "lbfgs"
            fval = f_new
        Sigma, state = S_new, new_state
    if not derived:
        its = [0]

        def F(S):
            nfev[0] += 1
            S = 0.5 * (S + S.T)
            return S - _eos_map(_evaluate(X, y, S, sigma_a2, sigma2, variant), h, d0, sigma_w2)
        S_nk, its_nk, msg = _nk_step(F, best[1], tol_at(best[1]), maxiter, 100)
        return S_nk, it + its_nk, msg, None, "newton-krylov"
    res = float(np.max(np.abs(_eos_map(state, h, d0, sigma_w2) - Sigma)))
    return Sigma, maxiter, f"fixed-point: residual {res:.3g} after {maxiter} iterations", state, ""


class EoSModel:
    """The EoS as a sweep model: one row per dataset and stop factor, model ``eos-<variant>-h<factor>``.

    Every row carries the solver's diagnostics (residual, converged, iterations, fevals,
    solve_seconds, cumulative up to that factor); a step that fails is kept, flagged
    ``converged=False`` with its message, and its NC1 is NaN if no kernel was obtained.
    """

    def __init__(self, variant: str = "derived", h_stops=(1e5, 500.0), schedule=None, method: str = "auto",
                 tol: float = 1e-6, rtol: float | None = 1e-5, maxiter: int = 100, inner_maxiter: int = 100,
                 sigma_w2: float = 1.0, sigma_a2: float = 1.0 / 128, sigma2: float = 1e-6, label: str = ""):
        check_choice(variant, VARIANTS, "variant")
        check_choice(method, METHODS, "method")
        self.h_stops = tuple(sorted((check_positive(f, "h_stops") for f in h_stops), reverse=True))
        if not self.h_stops:
            raise ValueError("h_stops must list at least one factor")
        self.schedule = annealing_schedule(self.h_stops[-1]) if schedule is None else tuple(float(f) for f in schedule)
        missing = [f for f in self.h_stops if f not in self.schedule]
        if missing:
            raise ValueError(f"h_stops {missing} are not factors of the schedule {self.schedule}")
        self.variant, self.method, self.tol = variant, method, float(tol)
        self.rtol = None if rtol is None else float(rtol)
        self.maxiter, self.inner_maxiter = int(maxiter), int(inner_maxiter)
        self.sigma_w2, self.sigma_a2, self.sigma2 = float(sigma_w2), float(sigma_a2), float(sigma2)
        self.label = label
        self.name = f"eos-{variant}" + (f"-{label}" if label else "")

    def config(self) -> dict:
        return {"variant": self.variant, "h_stops": list(self.h_stops), "schedule": list(self.schedule),
                "method": self.method, "tol": self.tol, "rtol": self.rtol, "maxiter": self.maxiter,
                "inner_maxiter": self.inner_maxiter, "sigma_w2": self.sigma_w2, "sigma_a2": self.sigma_a2,
                "sigma2": self.sigma2}

    def run_cell(self, datasets, seeds):
        out = []
        for ds in datasets:
            res = solve_eos(ds.X, ds.y, h=self.h_stops[-1], schedule=self.schedule, variant=self.variant,
                            method=self.method, tol=self.tol, rtol=self.rtol, maxiter=self.maxiter,
                            inner_maxiter=self.inner_maxiter, sigma_w2=self.sigma_w2, sigma_a2=self.sigma_a2,
                            sigma2=self.sigma2, class_sizes=ds.class_sizes, on_failure="flag")
            tb = res.table()
            rows = []
            for f in self.h_stops:
                upto = tb[tb.factor >= f]
                st = upto.iloc[-1]
                rows.append({"model": f"{self.name}-h{f:g}", "nc1": float(st.nc1), "nc1_sample": float(st.nc1_sample),
                             "tr_w": float(st.tr_w), "tr_b": float(st.tr_b), "h": f, "variant": self.variant,
                             "residual": float(st.residual), "converged": bool(upto.converged.all()),
                             "iterations": int(upto.iterations.sum()), "fevals": int(upto.fevals.sum()),
                             "solve_seconds": float(upto.seconds.sum()), "train_mse": float(st.train_mse),
                             "message": "; ".join(m for m in upto.message if m)})
            out.append(rows)
        return out


# --------------------------------------------------------------------------------------
# Autograd versions (torch, float64): the checks of the closed forms and the reference-style solver
# --------------------------------------------------------------------------------------

def torch_adaptive_kernel(Sigma, X, sigma_a2: float = 1.0 / 128):
    """``Q(Sigma)`` in torch (Def. 6.1), differentiable in ``Sigma``, as the reference writes it."""
    import torch
    K = X @ Sigma @ X.T
    r = torch.pow(2.0 * torch.diagonal(K) + 1.0, -0.5)
    return sigma_a2 * (2.0 / torch.pi) * torch.arcsin(r[:, None] * (2.0 * K) * r[None, :])


def torch_free_energy(Sigma, X, y, h: float, sigma_w2: float = 1.0, sigma_a2: float = 1.0 / 128,
                      sigma2: float = 1e-6):
    """The derived free energy ``F(Sigma)`` in torch, for autograd checks (module docstring)."""
    import torch
    d0 = X.shape[1]
    Q = torch_adaptive_kernel(Sigma, X, sigma_a2)
    C = Q + sigma2 * torch.eye(X.shape[0], dtype=X.dtype)
    L = torch.linalg.cholesky(C)
    alpha = torch.cholesky_solve(y[:, None], L)[:, 0]
    gp = y @ alpha + 2.0 * torch.log(torch.diagonal(L)).sum()
    prior = (d0 / sigma_w2) * torch.trace(Sigma) - torch.logdet(Sigma)
    return 0.5 * h * prior + 0.5 * gp


def reference_style_map(Sigma, X, y, h: float, sigma_w2: float = 1.0, sigma_a2: float = 1.0 / 128,
                        sigma2: float = 1e-6, variant: str = "reference"):
    """``G(Sigma)`` the way the reference computes it: autograd of Tr[A Q] through an explicit inverse.

    ``Sigma``, ``X``, ``y`` are numpy arrays; torch float64 inside. ``variant="reference"`` keeps the
    reference's broadcast ``M_ij = y_j - fbar_i`` and ``sigma^2`` scale (MATH.md 8.2-8.3);
    ``"derived"`` uses ``A = C^-1 - tbar tbar^T / sigma^4``.
    """
    import torch
    check_choice(variant, VARIANTS, "variant")
    Xt = torch.as_tensor(X, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    S = torch.tensor(np.asarray(Sigma, dtype=np.float64), requires_grad=True)
    d0, N = Xt.shape[1], Xt.shape[0]
    Q = torch_adaptive_kernel(S, Xt, sigma_a2)
    Qi = Q.detach()
    Cinv = torch.linalg.inv(Qi + sigma2 * torch.eye(N, dtype=torch.float64))
    fbar = (Qi @ Cinv @ yt).unsqueeze(-1)                       # shape (N, 1), as in the reference
    if variant == "reference":
        A = -sigma2 * (yt - fbar) @ (yt - fbar).T + Cinv         # (y - fbar) broadcasts to N x N
    else:
        tbar = yt - fbar[:, 0]
        A = Cinv - torch.outer(tbar, tbar) / sigma2 ** 2
    torch.trace(A @ Q).backward()
    P = torch.eye(d0, dtype=torch.float64) * (d0 / sigma_w2) + S.grad / h
    return torch.linalg.inv(P).numpy()


def reference_style_solve(X, y, *, h: float = 500.0, schedule=None, sigma_w2: float = 1.0,
                          sigma_a2: float = 1.0 / 128, sigma2: float = 1e-6, variant: str = "reference",
                          tol: float = 5e-4, maxiter: int = 100, inner_maxiter: int = 100):
    """The reference's solver (Newton-Krylov on Sigma - G(Sigma), autograd + explicit inverse, annealed).

    The baseline of benchmarks/bench_eos.py; returns (Sigma, number of G evaluations). Raises
    scipy's ``NoConvergence`` as the reference does.
    """
    X = as_float_array(X, "X", ndim=2)
    y = as_float_array(y, "y", ndim=1)
    sched = annealing_schedule(h) if schedule is None else tuple(schedule)
    d0 = X.shape[1]
    Sigma = (sigma_w2 / d0) * np.eye(d0)
    count = [0]
    for factor in sched:
        def F(S, factor=factor):
            count[0] += 1
            return S - reference_style_map(S, X, y, factor, sigma_w2, sigma_a2, sigma2, variant)
        with np.errstate(invalid="ignore", divide="ignore"):
            Sigma = np.asarray(scipy.optimize.newton_krylov(F, Sigma, f_tol=tol, maxiter=maxiter,
                                                            inner_maxiter=inner_maxiter))
    return Sigma, count[0]
