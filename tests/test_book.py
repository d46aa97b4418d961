"""The book: every notebook executes in the quick profile and the HTML builds without warnings.

This is the same command as the README's book build (tools/build_book.py), so a notebook
that raises or a page that warns fails the test suite, and so CI.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.book   # deselect with: pytest -m "not book"
sys.path.insert(0, str(ROOT / "tools"))
from build_book import toc_notebooks  # noqa: E402


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    builddir = tmp_path_factory.mktemp("book")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "build_book.py"), "--profile", "quick",
                           "--output", str(builddir)], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"book build failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return builddir / "_build" / "html"


def test_every_chapter_renders_with_figures(built_book):
    names = toc_notebooks()
    assert names, "_toc.yml lists no generated chapters"
    for name in names:
        page = built_book / "book" / "generated" / f"{name}.html"
        assert page.exists(), f"{name} did not render"
        html = page.read_text()
        assert "output traceback" not in html and "Traceback (most recent call last)" not in html, \
            f"{name} shows an error output"
        assert re.search(r"<img[^>]+src=\"[^\"]*\.png", html), f"{name} shows no figure"


# What each chapter must show a reader: its section titles naming the paper's figures, and
# how many figures at least (the figure panels are in the PNGs, so the count is the check).
REQUIRED = {
    "01_theorem41": (["Figure 1", "A symbolic proof"], 2),
    "02_limiting_kernels": (["Figure 2 (a, b)", "Figure 3 (a, b)", "Figure 6 (a-d)", "verdict"], 4),
    "03_one_dimensional_theory": (["Lemmas C.1, C.2", "Theorem 5.1", "Lemma C.3", "Monte Carlo"], 3),
    "04_trained_networks": (["Figures 2(c) and 3(c)", "Training curves", "terminal phase", "verdict"], 3),
    "05_adaptive_kernels": (["Figure 4", "annealing path", "Figure 5", "first-layer covariance", "verdict"], 4),
    "06_appendix_g": (["Figure 10", "Figures 12-13", "Deeper networks", "verdict"], 4),
    "07_reference_audit": (["MATH.md 8.1", "MATH.md 8.2, 8.3", "MATH.md 8.4"], 2),
}


def test_each_chapter_shows_its_figures_and_sections(built_book):
    assert set(REQUIRED) == set(toc_notebooks()), "REQUIRED must name every chapter of _toc.yml"
    for name, (texts, min_figures) in REQUIRED.items():
        html = (built_book / "book" / "generated" / f"{name}.html").read_text()
        for text in texts:
            assert text in html, f"{name}: the page does not show {text!r}"
        n = len(re.findall(r"<img[^>]+src=\"[^\"]*\.png", html))
        assert n >= min_figures, f"{name}: {n} figures, expected at least {min_figures}"


def test_chapter1_shows_figure1_and_sympy_results(built_book):
    html = (built_book / "book" / "generated" / "01_theorem41.html").read_text()
    assert "Figure 1" in html
    assert "sympy" in html.lower() and "True" in html
    assert (built_book / "index.html").exists()


def test_a_notebook_that_raises_fails_the_build(tmp_path):
    import papermill
    from build_book import execute

    (tmp_path / "broken.py").write_text(
        '# %% tags=["parameters"]\nprofile = "quick"\n\n# %%\nraise RuntimeError("deliberately broken")\n')
    with pytest.raises(papermill.PapermillExecutionError, match="deliberately broken"):
        execute("broken", "quick", force=True, src_dir=tmp_path, out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "broken.stamp").exists()
