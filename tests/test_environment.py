"""pyproject.toml and environment.yml pin the same versions."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    out = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)\s*", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_pins_agree():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(meta["dependencies"]) + [d for ds in meta["optional-dependencies"].values() for d in ds]
    py = _pins(deps)
    assert len(py) == len(deps), "every dependency in pyproject.toml must be pinned with =="
    env_lines = [l.strip().lstrip("- ").strip() for l in (ROOT / "environment.yml").read_text().splitlines()]
    env = _pins(env_lines)
    assert py == env
    assert py["torch"] == "2.13.0"
    assert int(py["jupyter-book"].split(".")[0]) < 2
    assert "python=3.11" in (ROOT / "environment.yml").read_text()
