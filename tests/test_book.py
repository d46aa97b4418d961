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


def test_every_paper_claim_is_in_the_summary(built_book):
    html = (built_book / "book" / "generated" / "claims_summary.html").read_text()
    assert "no chapter reports in this build: none." in html, "some claim of the paper has no verdict in the book"
    assert "Chapters not executed" not in html
    for name in toc_notebooks():
        if name != "07_reference_audit":     # the audit re-derives chapter 2's claims, it adds none
            assert f"{name}.html" in html, f"the summary has no verdict from {name}"


def test_claims_summary_is_read_from_the_notebook_outputs(tmp_path):
    import nbformat
    from build_book import write_claims_summary
    from nc1lib.claims import Claim, claims_bundle

    claims = [Claim(3, "a statement | with a pipe", "a rule", True, "e"), Claim("8b (x)", "s", "r", None, "e")]
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A chapter"),
        nbformat.v4.new_code_cell('profile = "full"', metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("show_claims(claims)", outputs=[   # what show_claims displays
            nbformat.v4.new_output("display_data", data=claims_bundle(claims))])])
    nbformat.write(nb, tmp_path / "ch.ipynb")
    text = write_claims_summary(["ch", "absent"], "quick", out_dir=tmp_path).read_text()
    assert "| 3 | a statement \\| with a pipe | **holds** | {doc}`A chapter <ch>` |" in text
    assert "| 8b (x) | s | **undecided** |" in text
    assert "2 verdicts**: 1 hold, 0 do not hold, 1 undecided" in text
    assert "no chapter reports in this build: 1, 2, 4, 5, 6, 7, 9." in text
    assert "absent" in text.split("not executed")[1]
    assert "profiles `full` (ch)" in text       # executed with another profile than this build's
