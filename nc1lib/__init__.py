"""nc1lib: NC1 of kernels, shallow networks and data-aware kernels.

The library behind the companion book to *Can Kernel Methods Explain How the Data
Affects Neural Collapse?* (Kothapalli & Tirer, TMLR 2025).
"""
__version__ = "0.1.0"

from .datasets import D1, D2, D1_imbalanced, Dataset, FourClass, GaussianClasses, IMBALANCED_SPLITS
from .nc1 import (FeatureNC1, covariance_traces_from_gram, labels_from_class_sizes, nc1_from_features,
                  nc1_from_gram, nc1_of_data, relative_nc1)
from .kernels import kernel_fn, nngp_gram, ntk_gram
from .sweep import KernelModel, grid, kernel_block_sums, sweep
from .plots import nc1_vs_d0, summarise
from .claims import Claim, claims_table, show_claims
from .fcn import FCNModel, FCNResult, train_fcn
from .eos import (PAPER_TOL, REFERENCE_SCHEDULE, EoSConvergenceError, EoSModel, EoSResult, adaptive_kernel,
                  annealing_schedule, eos_backward_error, free_energy, solve_eos)
from . import theory1d

__all__ = [
    "D1", "D2", "D1_imbalanced", "Dataset", "FourClass", "GaussianClasses", "IMBALANCED_SPLITS",
    "FeatureNC1", "covariance_traces_from_gram", "labels_from_class_sizes", "nc1_from_features",
    "nc1_from_gram", "nc1_of_data", "relative_nc1", "kernel_fn", "nngp_gram", "ntk_gram",
    "KernelModel", "grid", "kernel_block_sums", "sweep", "nc1_vs_d0", "summarise", "Claim",
    "claims_table", "show_claims", "FCNModel", "FCNResult", "train_fcn", "EoSModel", "EoSResult", "solve_eos",
    "EoSConvergenceError", "PAPER_TOL", "REFERENCE_SCHEDULE", "adaptive_kernel", "annealing_schedule", "eos_backward_error", "free_energy",
    "theory1d",
]
