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
free energy; the paper solves it with Newton-Krylov on ``Sigma - G(Sigma)``.

Convergence: the paper's criterion is ``max|Sigma - G(Sigma)| <= f_tol`` (``rtol=None``); the
default is the scale-invariant backward error of the ``Sigma^-1`` equation (:func:`solve_eos`).

Speed: ``dTr[A Q]/dSigma`` is computed in closed form (:func:`trace_grad`), as
``X^T G X`` with ``O(N^2)`` elementwise work, and ``(Q + sigma^2 I)^-1`` from a Cholesky
factor (LAPACK ``potrf``/``potri``) -- no autograd, no general inverse; BLAS/LAPACK get
Fortran-ordered views, so no N x N array is copied for them. One evaluation costs two
``N^2 d0`` products, ``potrf`` and ``potri``. The default fixed-point solver keeps its Anderson
history across annealing steps (``R`` does not depend on ``h``), so on D1 it needs about one
evaluation per step (benchmarks/bench_eos.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.optimize
from scipy.linalg import blas, lapack

from ._validate import as_float_array, check_choice, check_class_sizes, check_positive
from .nc1 import traces_from_block_sums

VARIANTS = ("derived", "reference")
METHODS = ("auto", "fixed-point", "newton-krylov", "lbfgs")

#: The paper's Newton-Krylov ``f_tol`` (an absolute bound on max|Sigma - G(Sigma)|). The library's
#: default criterion is the backward error <= rtol = 1e-5 (see solve_eos): at d0 = 128 the NNGP point itself already meets the
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

    def __init__(self, step: int, factor: float, residual: float, iterations: int, tol: float, detail: str = "",
                 criterion: str = ""):
        """``criterion``: the failed test in words (default: the absolute residual against ``tol``);
        ``residual`` and ``iterations`` are the last measured before the failure."""
        self.step, self.factor, self.residual, self.iterations, self.tol = step, factor, residual, iterations, tol
        criterion = criterion or f"residual max|Sigma - G(Sigma)| = {residual:.3g} > tol = {tol:.3g}"
        msg = f"EoS annealing step {step} (factor h = {factor:g}) did not converge: {criterion} after {iterations} iterations"
        super().__init__(msg + (f" ({detail})" if detail else ""))


# --------------------------------------------------------------------------------------
# The kernel Q(Sigma) and the closed-form gradient of Tr[A Q(Sigma)]
# --------------------------------------------------------------------------------------

def _kernel_parts(X, Sigma, sigma_a2):
    """K = X Sigma X^T, r_i = (1 + 2 K_ii)^-1/2, u = 2 K_ij r_i r_j and Q = sigma_a^2 (2/pi) arcsin(u).

    In place on one N x N buffer where possible (memory traffic dominates the elementwise work);
    K is not re-symmetrised: ``X Sigma X^T`` is symmetric to rounding, and Cholesky reads one triangle.
    """
    # K = X Sigma X^T by BLAS dgemm on Fortran-ordered views (no copies); .T gives a C-ordered array
    K = blas.dgemm(1.0, (X @ Sigma).T, X.T, trans_a=1).T
    a = 1.0 + 2.0 * np.diag(K)
    if np.any(a <= 0):
        raise ValueError("Sigma gives a negative pre-activation variance K_ii < -1/2; Sigma must be positive definite")
    r = 1.0 / np.sqrt(a)
    u = K
    u *= (2.0 * r)[:, None]
    u *= r[None, :]
    np.clip(u, -1.0, 1.0, out=u)
    Q = np.arcsin(u)
    Q *= sigma_a2 * (2.0 / np.pi)                          # Def. 6.1: Q(Sigma)
    return a, r, u, Q


def adaptive_kernel(X, Sigma, sigma_a2: float = 1.0 / 128):
    """The post-activation kernel ``Q(Sigma)`` of Definition 6.1 (Erf, no bias)."""
    X = as_float_array(X, "X", ndim=2)
    Sigma = _check_sigma(Sigma, X.shape[1])
    Q = _kernel_parts(X, Sigma, check_positive(sigma_a2, "sigma_a2"))[3]
    return 0.5 * (Q + Q.T)


def _trace_grad_parts(X, A, a, r, u, sigma_a2):
    """dTr[A Q]/dSigma = X^T G X, with G = dTr[A Q]/dK including the K_ii, K_jj dependence."""
    # dQ_ij = sigma_a^2 (2/pi) (1-u^2)^-1/2 du,  du = 2 dK_ij r_i r_j - u_ij (dK_ii/a_i + dK_jj/a_j)
    B = u * u                                             # B = A sigma_a^2 (2/pi) / sqrt(1 - u^2), in place
    np.subtract(1.0, B, out=B)
    np.maximum(B, 1e-300, out=B)
    np.sqrt(B, out=B)
    np.divide(A, B, out=B)
    B *= sigma_a2 * (2.0 / np.pi)
    s = np.einsum("ij,ij->i", B, u)                       # row sums of B o u (= column sums: symmetric)
    G = B
    G *= (2.0 * r)[:, None]
    G *= r[None, :]
    G.flat[::G.shape[0] + 1] -= 2.0 * s / a
    return X.T @ blas.dgemm(1.0, G.T, X.T, trans_b=1)      # X^T G^T X = (X^T G X)^T, symmetrised by the callers


def trace_grad(X, Sigma, A, sigma_a2: float = 1.0 / 128):
    """Closed-form ``dTr[A Q(Sigma)]/dSigma`` with ``A`` held fixed (the EoS right-hand side)."""
    X = as_float_array(X, "X", ndim=2)
    Sigma = _check_sigma(Sigma, X.shape[1])
    A = as_float_array(A, "A", ndim=2)
    if A.shape != (X.shape[0], X.shape[0]):
        raise ValueError(f"A must have shape ({X.shape[0]}, {X.shape[0]}), got {A.shape}")
    a, r, u, _ = _kernel_parts(X, Sigma, sigma_a2)
    A = 0.5 * (A + A.T)
    g = _trace_grad_parts(X, A, a, r, u, sigma_a2)
    return 0.5 * (g + g.T)


def _symmetrise_lower(M, b: int = 128):
    """Copy the lower triangle of ``M`` (upper triangle zero) onto its upper one, in place, tile by tile
    (a whole-matrix ``M + M.T`` reads with a stride of a row and is several times slower)."""
    n = M.shape[0]
    for i in range(0, n, b):
        for j in range(i + b, n, b):
            M[i:i + b, j:j + b] = M[j:j + b, i:i + b].T
        blk = M[i:i + b, i:i + b]
        blk += np.triu(blk.T, 1)
    return M


@dataclass
class _State:
    """Everything one evaluation at ``Sigma`` produces (none of it depends on the factor h)."""

    Sigma: np.ndarray
    Q: np.ndarray
    fbar: np.ndarray
    alpha: np.ndarray        # (Q + sigma^2 I)^-1 y
    logdet: float            # log det(Q + sigma^2 I)
    yalpha: float            # y^T (Q + sigma^2 I)^-1 y
    A: np.ndarray
    rhs_grad: np.ndarray     # R = dTr[A Q]/dSigma
    cache: dict = field(default_factory=dict)   # h -> (P, G(Sigma)) and other d0 x d0 by-products


def _evaluate(X, y, Sigma, sigma_a2, sigma2, variant) -> _State:
    """Q, (Q + sigma^2 I)^-1 (LAPACK potrf + potri), A and R = dTr[A Q]/dSigma at Sigma."""
    a, r, u, Q = _kernel_parts(X, Sigma, sigma_a2)
    N = X.shape[0]
    C = Q.T.copy(order="F")                                # Fortran order: LAPACK works on it without a copy
    C.flat[::N + 1] += sigma2
    L, info = lapack.dpotrf(C, lower=1, clean=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"Q + sigma^2 I is not numerically positive definite (potrf info {info})")
    logdet = 2.0 * float(np.sum(np.log(np.diag(L))))
    alpha, info = lapack.dpotrs(L, y, lower=1)
    Ci, info2 = lapack.dpotri(L, lower=1, overwrite_c=1)
    if info != 0 or info2 != 0:
        raise np.linalg.LinAlgError(f"solving with Q + sigma^2 I failed (potrs/potri info {info}/{info2})")
    # potri fills the lower triangle (clean=1 zeroed the upper); symmetric, so the C-ordered view .T is A itself
    A = _symmetrise_lower(Ci).T
    fbar = y - sigma2 * alpha                             # fbar = Q (Q + sigma^2 I)^-1 y = y - sigma^2 alpha
    At = A.T                                              # Fortran-ordered view, for in-place BLAS rank-1 updates
    if variant == "derived":
        # A = (Q + sigma^2 I)^-1 - tbar tbar^T / sigma^4 = C^-1 - alpha alpha^T  (tbar = sigma^2 alpha)
        blas.dger(-1.0, alpha, alpha, a=At, overwrite_a=1)
    else:
        # MATH.md 8.2-8.3: A = C^-1 - sigma^2 M M^T, M_ij = y_j - fbar_i, so that
        # (M M^T)_ik = sum_j y_j^2 - S_y (fbar_i + fbar_k) + N fbar_i fbar_k  (rank <= 3)
        sy2, sy, one = float(y @ y), float(y.sum()), np.ones(N)
        A -= sigma2 * sy2
        blas.dger(sigma2 * sy, fbar, one, a=At, overwrite_a=1)
        blas.dger(sigma2 * sy, one, fbar, a=At, overwrite_a=1)
        blas.dger(-sigma2 * N, fbar, fbar, a=At, overwrite_a=1)
    g = _trace_grad_parts(X, A, a, r, u, sigma_a2)
    return _State(Sigma, Q, fbar, alpha, logdet, float(y @ alpha), A, 0.5 * (g + g.T))


def _eos_map_parts(state: _State, h, d0, sigma_w2):
    """P = (d0/sigma_w^2) I + R/h (the EoS right-hand side for Sigma^-1) and G(Sigma) = P^-1 (Def. 6.1)."""
    key = ("map", float(h))
    if key not in state.cache:
        P = state.rhs_grad / h
        P[np.diag_indices(d0)] += d0 / sigma_w2
        Gs = np.linalg.inv(P)
        state.cache[key] = (P, 0.5 * (Gs + Gs.T))
    return state.cache[key]


def _eos_map(state: _State, h, d0, sigma_w2):
    """G(Sigma) = [(d0/sigma_w^2) I + (1/h) dTr[A Q]/dSigma]^-1 (Def. 6.1); a d0 x d0 inverse."""
    return _eos_map_parts(state, h, d0, sigma_w2)[1]


def _sigma_inv(state: _State):
    if "inv" not in state.cache:
        Si = np.linalg.inv(state.Sigma)
        state.cache["inv"] = 0.5 * (Si + Si.T)
    return state.cache["inv"]


def _measure(state: _State, h, d0, sigma_w2):
    """The two residuals of the EoS at ``state.Sigma``: (residual, backward error).

    residual = max|Sigma - G(Sigma)| (the paper's, newton_krylov's f_tol norm);
    backward error = max|Sigma^-1 - P| / max(max|Sigma^-1|, d0/sigma_w^2, max|R/h|), with
    P = (d0/sigma_w^2) I + R/h: how well the equation Sigma^-1 = (d0/sigma_w^2) I + R/h holds,
    relative to the size of its three terms. It is invariant to the scale of Sigma, and it is not
    amplified where the terms cancel (P small, Sigma large: an error dP moves G(Sigma) by Sigma^2 dP).
    """
    P, Gs = _eos_map_parts(state, h, d0, sigma_w2)
    Si = _sigma_inv(state)
    res = float(np.max(np.abs(state.Sigma - Gs)))
    scale = max(float(np.max(np.abs(Si))), d0 / sigma_w2, float(np.max(np.abs(state.rhs_grad))) / h)
    return res, float(np.max(np.abs(Si - P))) / scale


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


def eos_backward_error(X, y, Sigma, h: float, sigma_w2: float = 1.0, sigma_a2: float = 1.0 / 128,
                       sigma2: float = 1e-6, variant: str = "derived") -> float:
    """The scale-invariant residual of the EoS at ``Sigma`` (the default convergence criterion; see
    :func:`solve_eos`): ``max|Sigma^-1 - P| / max(max|Sigma^-1|, d0/sigma_w^2, max|R/h|)``."""
    X, y, sigma_w2, sigma_a2, sigma2 = _check_problem(X, y, sigma_w2, sigma_a2, sigma2)
    check_choice(variant, VARIANTS, "variant")
    s = _evaluate(X, y, _check_sigma(Sigma, X.shape[1]), sigma_a2, sigma2, variant)
    return _measure(s, check_positive(h, "h"), X.shape[1], sigma_w2)[1]


def free_energy(X, y, Sigma, h: float, sigma_w2: float = 1.0, sigma_a2: float = 1.0 / 128,
                sigma2: float = 1e-6) -> float:
    """The derived variant's free energy ``F(Sigma)`` (module docstring); the EoS is ``dF/dSigma = 0``."""
    X, y, sigma_w2, sigma_a2, sigma2 = _check_problem(X, y, sigma_w2, sigma_a2, sigma2)
    Sigma = _check_sigma(Sigma, X.shape[1])
    s = _evaluate(X, y, Sigma, sigma_a2, sigma2, "derived")
    return _free_energy_value(s, check_positive(h, "h"), X.shape[1], sigma_w2)


def _free_energy_terms(s: _State, h, d0, sigma_w2):
    """(prior term, GP term) of F: (h/2)[(d0/sigma_w^2) Tr Sigma - log det Sigma] and (1/2)[y^T C^-1 y + log det C]."""
    sign, ld = np.linalg.slogdet(s.Sigma)
    if sign <= 0:
        return np.inf, 0.5 * (s.yalpha + s.logdet)
    return 0.5 * h * ((d0 / sigma_w2) * float(np.trace(s.Sigma)) - ld), 0.5 * (s.yalpha + s.logdet)


def _free_energy_value(s: _State, h, d0, sigma_w2):
    # F = (h/2)[(d0/sigma_w^2) Tr Sigma - log det Sigma] + (1/2)[y^T C^-1 y + log det C], C = Q + sigma^2 I
    return sum(_free_energy_terms(s, h, d0, sigma_w2))


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
    backward_error: float    # the scale-invariant residual of the Sigma^-1 equation (see solve_eos)
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


class _Problem:
    """One EoS problem: evaluations (counted), the convergence test and progress for error reports."""

    def __init__(self, X, y, sigma_w2, sigma_a2, sigma2, variant, tol, rtol):
        self.X, self.y, self.variant = X, y, variant
        self.sigma_w2, self.sigma_a2, self.sigma2 = sigma_w2, sigma_a2, sigma2
        self.d0 = X.shape[1]
        self.tol, self.rtol = tol, rtol
        self.nfev, self.its, self.last = 0, 0, (np.nan, np.nan)
        self.last_state = None

    def evaluate(self, S) -> _State:
        self.nfev += 1
        self.last_state = _evaluate(self.X, self.y, S, self.sigma_a2, self.sigma2, self.variant)
        return self.last_state

    def state_at(self, S) -> _State:
        """The state at S: the last evaluation if it was at S (Newton-Krylov's last call usually is), else a new one."""
        st = self.last_state
        return st if st is not None and np.array_equal(st.Sigma, S) else self.evaluate(S)

    def measure(self, state, h):
        self.last = _measure(state, h, self.d0, self.sigma_w2)
        return self.last

    def ok(self, res, eta) -> bool:
        """The convergence test: ``residual <= tol`` if ``rtol`` is None (the paper's), else ``backward error <= rtol``."""
        return bool(np.isfinite(res) and res <= self.tol) if self.rtol is None else bool(eta <= self.rtol)

    def converged(self, state, h) -> bool:
        return self.ok(*self.measure(state, h))

    @property
    def criterion(self) -> str:
        return (f"residual max|Sigma - G(Sigma)| = {self.last[0]:.3g} > tol = {self.tol:.3g}" if self.rtol is None else
                f"backward error = {self.last[1]:.3g} > rtol = {self.rtol:.3g} (residual max|Sigma - G(Sigma)| "
                f"= {self.last[0]:.3g})")

    def nk_function(self, h):
        """The function Newton-Krylov drives to zero, in the norm of the convergence test, and its f_tol:
        Sigma - G(Sigma) with f_tol = tol (the paper's), or (Sigma^-1 - P) / scale with f_tol = rtol."""
        d0, sw2 = self.d0, self.sigma_w2

        def F(S):
            st = self.evaluate(0.5 * (S + S.T))
            self.measure(st, h)
            if self.rtol is None:
                return st.Sigma - _eos_map(st, h, d0, sw2)
            P = _eos_map_parts(st, h, d0, sw2)[0]
            Si = _sigma_inv(st)
            return (Si - P) / max(float(np.max(np.abs(Si))), d0 / sw2, float(np.max(np.abs(st.rhs_grad))) / h)
        return F, (self.tol if self.rtol is None else self.rtol)


def _nk_step(F, Sigma, tol, maxiter, inner_maxiter, pb=None):
    """One Newton-Krylov solve of F(Sigma) = 0 (the paper's solver); returns (Sigma, iterations, message)."""
    its = [0]

    def cb(x, f):
        its[0] += 1
        if pb is not None:
            pb.its += 1

    try:
        # errstate: scipy's own x_rtol test divides by x_rtol = inf and warns; our F raises on real trouble
        with np.errstate(invalid="ignore", divide="ignore"):
            out = scipy.optimize.newton_krylov(F, Sigma, f_tol=tol, maxiter=maxiter, inner_maxiter=inner_maxiter,
                                               callback=cb)
        return np.asarray(out), its[0], ""
    except scipy.optimize.NoConvergence as e:
        return np.asarray(e.args[0]), its[0], "newton_krylov: no convergence"


#: Newton-Krylov budget of a polish (outer, inner iterations): at most ~10 x 30 evaluations.
#: A polish finishes a point that is nearly converged; where it is not, the full budget of a
#: Newton-Krylov solve (maxiter x inner_maxiter = 1e4 evaluations at the defaults, minutes at
#: N = 1024) would be spent on every remaining annealing step of a problem that fails anyway.
POLISH_ITERS = (10, 30)


def _polish(pb: _Problem, Sigma, h, maxiter, inner_maxiter):
    """Newton-Krylov on the residual of the convergence test, from a point another method stopped at
    above the tolerance (L-BFGS on F stops at F's rounding floor, above the EoS residual's), within
    :data:`POLISH_ITERS`. Returns (Sigma, iterations, message); an evaluation failure keeps the
    starting point."""
    F, ftol = pb.nk_function(h)
    try:
        S, its, msg = _nk_step(F, Sigma, ftol, min(maxiter, POLISH_ITERS[0]), min(inner_maxiter, POLISH_ITERS[1]),
                               pb)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as e:
        return Sigma, 0, f"Newton-Krylov polish failed: {e}"
    return 0.5 * (S + S.T), its, msg


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
        energy over a Cholesky factor of Sigma, then Newton-Krylov on the residual if L-BFGS stops
        above the tolerance), ``"fixed-point"`` (Anderson-accelerated, safeguarded: see
        :func:`_fixed_point_step`) or ``"auto"`` (= fixed-point, the fastest in benchmarks/bench_eos.py).
    tol, rtol : the convergence criterion, tested at the end of every annealing step.

        * ``rtol=None``: the paper's, ``max|Sigma - G(Sigma)| <= tol`` (its ``f_tol`` is
          :data:`PAPER_TOL` = 5e-4; pass ``tol=PAPER_TOL, rtol=None`` to reproduce it).
        * ``rtol`` given (the default, 1e-5): the **backward error** of the ``Sigma^-1`` equation,
          ``max|Sigma^-1 - P| / max(max|Sigma^-1|, d0/sigma_w^2, max|R/h|) <= rtol`` with
          ``P = (d0/sigma_w^2) I + R/h`` and ``R = dTr[A Q]/dSigma``: the equation holds to a
          relative precision ``rtol`` of the largest of its three terms (``tol`` is then unused).
          Unlike the absolute residual it is invariant to the scale of Sigma: the absolute
          ``f_tol`` is loose where Sigma's entries are small (large d0: ~1/d0, where the NNGP
          point already meets 5e-4) and at d0 = 1 accepts the spurious point Sigma ~ 0; and unlike
          the relative residual ``max|Sigma - G|/max|Sigma|`` it is not amplified where ``P`` is a
          small difference of large terms (Sigma large, e.g. D2 at d0 = 1: an error ``dP``, at
          least the rounding of ``R``, moves ``G(Sigma) = P^-1`` by ``Sigma^2 dP``). For Sigma
          near ``(sigma_w^2/d0) I`` it equals the relative residual to first order. Both numbers
          are reported for every step (``residual``, ``backward_error``).
    maxiter, inner_maxiter : Newton iterations and Krylov iterations per step (L-BFGS: iterations).
    class_sizes : if given, the NC1 of Q is recorded at every step (Theorem 4.1: only the trace
        and the class-block sums of Q, ``O(N^2)`` additions).
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
    if cs is not None:          # class indicators: the class-block sums of Q are onehot^T Q onehot
        onehot = (np.repeat(np.arange(len(cs)), cs)[:, None] == np.arange(len(cs))[None, :]).astype(float)
    Sigma = (sigma_w2 / d0) * np.eye(d0) if Sigma0 is None else _check_sigma(Sigma0, d0)
    pb = _Problem(X, y, sigma_w2, sigma_a2, sigma2, variant, tol, rtol)

    steps: list[EoSStep] = []
    path = {}
    state = None
    hist: list[_State] = []          # the fixed-point method's Anderson history, kept across steps
    failed = ""
    for k, factor in enumerate(sched, start=1):
        if failed:
            steps.append(EoSStep(k, factor, np.nan, np.nan, np.nan, 0, 0, 0.0, False, method, message=failed))
            continue
        t0 = time.perf_counter()
        pb.nfev, pb.its, pb.last = 0, 0, (np.nan, np.nan)
        fallback = ""
        try:
            if method == "newton-krylov":
                state = None
                F, ftol = pb.nk_function(factor)
                Sigma, its, msg = _nk_step(F, Sigma, ftol, maxiter, inner_maxiter, pb)
            elif method == "fixed-point":
                Sigma, its, msg, state, fallback = _fixed_point_step(pb, Sigma, state, hist, factor, maxiter,
                                                                     inner_maxiter)
            else:
                state = None
                Sigma, its, msg, fallback = _lbfgs_polished(pb, Sigma, factor, maxiter, inner_maxiter)
            if state is None or state.Sigma is not Sigma:
                Sigma = 0.5 * (Sigma + Sigma.T)
                state = pb.state_at(Sigma)
                Sigma = state.Sigma
            res, eta = pb.measure(state, factor)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as e:
            failed = f"step {k} (h = {factor:g}) failed: {e}"
            if on_failure == "raise":
                raise EoSConvergenceError(k, factor, pb.last[0], pb.its, tol, str(e), pb.criterion) from e
            steps.append(EoSStep(k, factor, pb.last[0], np.nan, pb.last[1], pb.its, pb.nfev,
                                 time.perf_counter() - t0, False, method, message=failed))
            state = None
            continue
        secs = time.perf_counter() - t0
        ok = pb.ok(res, eta)
        if not ok and on_failure == "raise":
            raise EoSConvergenceError(k, factor, res, its, tol, msg, pb.criterion)
        st = EoSStep(k, factor, res, res / float(np.max(np.abs(Sigma))), eta, its, pb.nfev, secs, ok,
                     method + (f"+{fallback}" if fallback else ""),
                     train_mse=float(np.mean((y - state.fbar) ** 2)),
                     message="" if ok else (msg + "; " if msg else "") + pb.criterion)
        if cs is not None:
            # Theorem 4.1: the traces need only Tr Q and the class-block sums of Q
            trQ, blocks, sizes = float(np.trace(state.Q)), onehot.T @ (state.Q @ onehot), [int(c) for c in cs]
            st.tr_w, st.tr_b = (float(v) for v in traces_from_block_sums(trQ, blocks, sizes, "paper"))
            st.nc1 = st.tr_w / st.tr_b
            tws, tbs = traces_from_block_sums(trQ, blocks, sizes, "sample")
            st.nc1_sample = float(tws / tbs)
        steps.append(st)
        if keep_path:
            path[factor] = Sigma.copy()
    if state is None:
        Q = fbar = None
    else:
        Q, fbar = 0.5 * (state.Q + state.Q.T), state.fbar
    settings = dict(h=h, sigma_w2=sigma_w2, sigma_a2=sigma_a2, sigma2=sigma2, schedule=list(sched), variant=variant,
                    method=method, tol=tol, rtol=rtol, maxiter=maxiter, inner_maxiter=inner_maxiter)
    return EoSResult(Sigma, Q, fbar, steps, variant, settings, path)


def _lbfgs_step(pb: _Problem, Sigma, h, maxiter):
    """Minimise F over Sigma = L L^T, L lower triangular with a positive diagonal (log-Cholesky).

    The variables are L's entries scaled by the prior's sqrt(sigma_w^2/d0), the diagonal ones
    as logarithms, so every trial point of the line search is a positive definite Sigma (with
    L itself as the variable a trial can hit L_ii = 0, a singular Sigma; seen at d0 = 1).
    Stops as soon as the convergence test (from the same evaluation) passes.
    Returns (Sigma, iterations, message), the message empty if the test passed.
    """
    d0, sigma_w2 = pb.d0, pb.sigma_w2
    s0 = np.sqrt(sigma_w2 / d0)
    il = np.tril_indices(d0)
    diag = il[0] == il[1]
    L0 = np.linalg.cholesky(Sigma)
    last = {}

    def unpack(x):
        v = x * s0
        v[diag] = s0 * np.exp(x[diag])
        L = np.zeros((d0, d0))
        L[il] = v
        return L

    def fun(x):
        L = unpack(x)
        st = pb.evaluate(L @ L.T)
        f = _free_energy_value(st, h, d0, sigma_w2)
        gL = (2.0 * _free_energy_grad(st, h, d0, sigma_w2) @ L)[il]  # dF/dL for Sigma = L L^T
        if pb.converged(st, h):
            last["best"] = x.copy()
        g = gL * s0
        g[diag] = gL[diag] * L[il][diag]                             # chain rule through L_ii = s0 exp(x)
        return f, g

    its = [0]

    def cb(intermediate_result):
        its[0] += 1
        pb.its += 1
        if "best" in last:
            raise StopIteration

    x0 = L0[il] / s0
    x0[diag] = np.log(L0[il][diag] / s0)
    fun(x0)                                  # first evaluation: already converged?
    pb.nfev -= 1
    if "best" in last:
        return Sigma, 0, ""
    r = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", callback=cb,
                                options=dict(maxiter=maxiter, maxfun=10 * maxiter, ftol=0.0, gtol=0.0, maxcor=20))
    L = unpack(last.get("best", r.x))
    return L @ L.T, its[0], "" if "best" in last else f"L-BFGS: {r.message}"


def _lbfgs_polished(pb: _Problem, Sigma, h, maxiter, inner_maxiter):
    """L-BFGS on F; if it stops above the tolerance (F's rounding floor: F ~ h d0 + y^T C^-1 y is
    large, so its line search stalls before the residual is small), Newton-Krylov on the residual
    from there. Returns (Sigma, iterations, message, fallback)."""
    S, its, msg = _lbfgs_step(pb, Sigma, h, maxiter)
    if not msg:
        return S, its, "", ""
    S2, its2, msg2 = _polish(pb, S, h, maxiter, inner_maxiter)
    return S2, its + its2, (msg + "; " + msg2) if msg2 else "", "newton-krylov"


def _is_pd(S):
    try:
        np.linalg.cholesky(S)
        return True
    except np.linalg.LinAlgError:
        return False


def _fixed_point_step(pb: _Problem, Sigma, state, hist, h, maxiter, inner_maxiter, memory: int = 5,
                      stall: int = 10):
    """Anderson-accelerated fixed-point iteration Sigma <- G(Sigma) (type II, ``memory`` past points).

    Each evaluation at Sigma gives both the residual at Sigma and the next Picard iterate, so a step
    whose start already satisfies the tolerance costs no evaluation beyond the previous step's last.
    The history ``hist`` (evaluated states) is kept across annealing steps: R = dTr[A Q]/dSigma does not
    depend on h, so the residuals of past points at the new factor cost d0 x d0 inverses only, and the
    first iterate of a step already uses the secant information of the previous ones.
    An iterate that is not positive definite is replaced by the Picard step, shortened until it is
    (and the history is dropped). Safeguards, because G is expansive near some solutions (small h):
    for the derived variant an iterate that raises the free energy beyond its rounding level hands the
    step over to L-BFGS on F (from the best point), polished by Newton-Krylov; for the reference
    variant, ``stall`` iterations without a smaller residual hand it to Newton-Krylov.
    Returns (Sigma, iterations, message, state, fallback), fallback being "" or the method used.
    """
    d0, sw2 = pb.d0, pb.sigma_w2
    if state is None or state.Sigma is not Sigma:
        state = pb.evaluate(Sigma)
    if not hist or hist[-1] is not state:
        hist.append(state)
    derived = pb.variant == "derived"
    fterms = _free_energy_terms(state, h, d0, sw2) if derived else None
    best = (np.inf, state)
    since_best = 0
    it = 0
    for it in range(maxiter + 1):
        pb.its = it
        res, eta = pb.measure(state, h)
        if pb.ok(res, eta):
            return Sigma, it, "", state, ""
        crit = res if pb.rtol is None else eta
        if crit < best[0]:
            best, since_best = (crit, state), 0
        else:
            since_best += 1
        if it == maxiter or (not derived and since_best >= stall):
            break
        del hist[:-(memory + 1)]
        xs = [s.Sigma.ravel() for s in hist]
        fs = [(_eos_map(s, h, d0, sw2) - s.Sigma).ravel() for s in hist]
        x, f = xs[-1], fs[-1]
        x_new = x + f
        if len(fs) > 1:
            dF = np.stack([fs[i + 1] - fs[i] for i in range(len(fs) - 1)], axis=1)
            dX = np.stack([xs[i + 1] - xs[i] for i in range(len(xs) - 1)], axis=1)
            gamma = np.linalg.lstsq(dF, f, rcond=None)[0]
            x_new = x + f - (dX + dF) @ gamma
        S_new = x_new.reshape(d0, d0)
        S_new = 0.5 * (S_new + S_new.T)
        if not _is_pd(S_new):
            del hist[:-1]
            Gs, t = _eos_map(state, h, d0, sw2), 1.0
            S_new = Gs
            while not _is_pd(S_new) and t > 1e-8:
                t *= 0.5
                S_new = Sigma + t * (Gs - Sigma)
            if not _is_pd(S_new):
                raise np.linalg.LinAlgError("no positive definite step towards G(Sigma) was found")
        new_state = pb.evaluate(S_new)
        if derived:
            new_terms = _free_energy_terms(new_state, h, d0, sw2)
            # uphill beyond F's rounding level (relative 1e-12 of its terms' size)
            if not sum(new_terms) <= sum(fterms) + 1e-12 * (abs(fterms[0]) + abs(fterms[1])):
                del hist[:]
                S_l, its_l, msg, fb = _lbfgs_polished(pb, best[1].Sigma, h, maxiter, inner_maxiter)
                return S_l, it + its_l, msg, None, "lbfgs" + (f"+{fb}" if fb else "")
            fterms = new_terms
        hist.append(new_state)
        Sigma, state = S_new, new_state
    del hist[:]
    if not derived:
        S_nk, its_nk, msg = _polish(pb, best[1].Sigma, h, maxiter, inner_maxiter)
        return S_nk, it + its_nk, msg, None, "newton-krylov"
    return Sigma, maxiter, f"fixed-point: no convergence after {maxiter} iterations", state, ""


class EoSModel:
    """The EoS as a sweep model: one row per dataset and stop factor, model ``eos-<variant>-h<factor>``.

    Every row carries the solver's diagnostics (residual, backward_error, converged, iterations, fevals,
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

    def cost(self, spec, repeats: int) -> float:
        """Relative cost of one sweep cell: an evaluation is ~N^3 (potrf, potri) plus 2 N^2 d0 (products)."""
        return float(repeats) * len(self.schedule) * spec.N ** 2 * (spec.N + 2 * spec.d0)

    def config(self) -> dict:
        # "solver" names the solver's revision, so that cached cells of an older solver are not reused
        return {"solver": "backward-error/anderson-across-steps", "variant": self.variant, "h_stops": list(self.h_stops), "schedule": list(self.schedule),
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
                             "residual": float(st.residual), "backward_error": float(st.backward_error),
                             "converged": bool(upto.converged.all()),
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
