import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Sweeps in tests write to a throwaway cache unless told otherwise.
os.environ.setdefault("NC1LIB_CACHE", str(ROOT / ".nc1cache" / "tests"))


@pytest.fixture
def rng():
    return np.random.default_rng(20250101)
