"""Execute the notebooks with papermill, then render the book with jupyter-book.

Every ``book/generated/NAME`` entry of ``_toc.yml`` comes from ``notebooks/NAME.py``
(Jupytext ``py:percent``). Each is executed with ``profile`` as a papermill parameter
into ``book/generated/NAME.ipynb``; jupyter-book then renders the pages without
re-executing them (``execute_notebooks: "off"``). A notebook that raises stops the
build; a Sphinx warning fails it (``-W``).

An executed notebook is reused when its source, the profile and the library's code
are unchanged (a stamp file beside it), so a rebuild only re-runs what changed.

    python tools/build_book.py --profile quick|full [--only NAME ...] [--force] [--no-html] [--output DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "book" / "generated"


def toc_notebooks() -> list[str]:
    """Names of the generated chapters, in the order of ``_toc.yml``."""
    text = (ROOT / "_toc.yml").read_text()
    return re.findall(r"file:\s*book/generated/([\w\-]+)", text)


def stamp_for(src: Path, profile: str) -> str:
    sys.path.insert(0, str(ROOT))
    from nc1lib.sweep import code_version
    return hashlib.sha256(src.read_bytes() + profile.encode() + code_version().encode()).hexdigest()


def execute(name: str, profile: str, force: bool, src_dir: Path = ROOT / "notebooks",
            out_dir: Path = GENERATED) -> None:
    """Execute ``src_dir/NAME.py`` into ``out_dir/NAME.ipynb``; raises if any cell raises."""
    import jupytext
    import papermill as pm

    src = src_dir / f"{name}.py"
    if not src.exists():
        raise SystemExit(f"_toc.yml names book/generated/{name}, but {src} does not exist")
    out = out_dir / f"{name}.ipynb"
    stamp = out_dir / f"{name}.stamp"
    want = stamp_for(src, profile)
    if not force and out.exists() and stamp.exists() and stamp.read_text() == want:
        print(f"[book] {name}: unchanged, reusing the executed notebook", flush=True)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_in = Path(tempfile.mkdtemp(prefix="nc1book-")) / f"{name}.ipynb"
    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    jupytext.write(nb, tmp_in, fmt="ipynb")
    t0 = time.perf_counter()
    print(f"[book] {name}: executing (profile={profile})", flush=True)
    stamp.unlink(missing_ok=True)
    try:
        pm.execute_notebook(str(tmp_in), str(out), parameters={"profile": profile},
                            kernel_name="python3", cwd=str(src_dir),
                            progress_bar=False, log_output=False)
    finally:
        shutil.rmtree(tmp_in.parent, ignore_errors=True)
    _show_only_injected_parameters(out)
    stamp.write_text(want)
    print(f"[book] {name}: done in {time.perf_counter() - t0:.1f} s", flush=True)


def _show_only_injected_parameters(path: Path) -> None:
    """Hide the notebook's default ``parameters`` cell; the page shows the injected values used."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=["quick", "full"], default="quick")
    ap.add_argument("--only", nargs="*", help="execute only these notebooks (names without .py)")
    ap.add_argument("--force", action="store_true", help="re-execute even unchanged notebooks")
    ap.add_argument("--no-html", action="store_true", help="execute the notebooks but do not render")
    ap.add_argument("--output", default=str(ROOT),
                    help="folder that receives _build/html (jupyter-book's --path-output; default: the repository)")
    args = ap.parse_args(argv)

    os.environ.setdefault("NC1LIB_CACHE", str(ROOT / ".nc1cache"))
    names = toc_notebooks()
    for name in args.only or names:
        if name not in names:
            raise SystemExit(f"--only {name}: not a chapter of _toc.yml (chapters: {', '.join(names)})")
        execute(name, args.profile, args.force)
    if args.no_html:
        return 0
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT), "--path-output", args.output,
           "-W", "-n", "--keep-going"]
    print("[book] " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    print(f"[book] HTML: {Path(args.output) / '_build' / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
