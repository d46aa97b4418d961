"""nc1lib: NC1 of kernels, shallow networks and data-aware kernels.

The library behind the companion book to *Can Kernel Methods Explain How the Data
Affects Neural Collapse?* (Kothapalli & Tirer, TMLR 2025).
"""
__version__ = "0.1.0"

from .datasets import D1, D2, D1_imbalanced, Dataset, FourClass, GaussianClasses, IMBALANCED_SPLITS
from .nc1 import (FeatureNC1, covariance_traces_from_gram, labels_from_class_sizes, nc1_from_features,
                  nc1_from_gram, nc1_of_data, relative_nc1)
from .kernels import kernel_fn, nngp_gram, ntk_gram
