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
