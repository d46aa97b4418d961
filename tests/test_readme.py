"""The README's library example runs as written."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Using the library\s+```python\n(.*?)```", text, re.S).group(1)
    ns = {}
    exec(compile(block, "README.md", "exec"), ns)
    assert 0 < ns["table"].nc1.min() and len(ns["table"]) == 2 * 2 * 2 * 3
    assert ns["res"].nc1.shape[0] == 1 and ns["eos"].Sigma.shape == (8, 8)
