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


#: Generated pages that are not notebooks: written by this tool from the executed chapters.
SUMMARY = "claims_summary"
#: The paper's claims, as EXPERIMENTS.md numbers them; the summary says which ones no chapter checked.
PAPER_CLAIMS = range(1, 10)


def toc_notebooks() -> list[str]:
    """Names of the generated chapters (notebooks), in the order of ``_toc.yml``."""
    text = (ROOT / "_toc.yml").read_text()
    return [n for n in re.findall(r"file:\s*book/generated/([\w\-]+)", text) if n != SUMMARY]


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


def _claims_of(path: Path):
    """The chapter's title, the profile it was executed with (papermill's injected parameters)
    and the claims its ``nc1lib.show_claims`` outputs carry."""
    import nbformat
    from nc1lib.claims import CLAIMS_MIME

    nb = nbformat.read(path, as_version=4)
    title = next((line[2:].strip() for c in nb.cells if c.cell_type == "markdown"
                  for line in c.source.splitlines() if line.startswith("# ")), path.stem)
    injected = "".join(c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    m = re.search(r"profile\s*=\s*[\"']([\w-]+)[\"']", injected)
    found = [rec for c in nb.cells if c.cell_type == "code" for out in c.get("outputs", [])
             for rec in out.get("data", {}).get(CLAIMS_MIME, [])]
    return title, (m.group(1) if m else "unknown"), found


def write_claims_summary(names: list[str], profile: str, out_dir: Path = GENERATED) -> Path:
    """``book/generated/claims_summary.md``: every claim verdict of the executed chapters, one table.

    Read from the notebooks' outputs (``nc1lib.show_claims``), so it always matches the chapters;
    a paper claim that no chapter reports is listed as such, and so is a chapter not executed.
    """
    def cell(text):
        return str(text).replace("|", "\\|").replace("\n", " ")

    rows, missing_chapters, profiles = [], [], {}
    for name in names:
        path = out_dir / f"{name}.ipynb"
        if not path.exists():
            missing_chapters.append(name)
            continue
        title, profiles[name], found = _claims_of(path)
        for rec in found:
            rows.append((rec, name, title))
    if set(profiles.values()) <= {profile}:
        executed = f"profile `{profile}`"
    else:          # --only rebuilt some chapters; the others kept an earlier execution
        executed = "profiles " + ", ".join(f"`{p}` ({n})" for n, p in profiles.items())
    base = [int(m.group()) if (m := re.match(r"\d+", r["number"])) else None for r, _, _ in rows]
    counts = {v: sum(r["verdict"] == v for r, _, _ in rows) for v in ("holds", "does not hold", "undecided")}
    lines = [
        "# The claims at a glance", "",
        "Every verdict of the book in one table, collected from the executed chapters when the book was "
        f"built ({executed}). Each verdict is computed in its chapter by the rule stated there, "
        "beside the numbers it rests on; follow the link for the figure and the evidence. A claim checked "
        "under several settings (a variant, a convention, a model) has one row per setting.", "",
        f"**{len(rows)} verdicts**: {counts['holds']} hold, {counts['does not hold']} do not hold, "
        f"{counts['undecided']} undecided.", "",
        "| claim | statement | verdict | chapter |", "| --- | --- | --- | --- |"]
    order = sorted(range(len(rows)), key=lambda i: (base[i] is None, base[i] or 0, i))
    for i in order:
        rec, name, title = rows[i]
        lines.append(f"| {cell(rec['number'])} | {cell(rec['statement'])} | **{rec['verdict']}** | "
                     f"{{doc}}`{cell(title)} <{name}>` |")
    unchecked = [n for n in PAPER_CLAIMS if n not in base]
    lines.append("")
    lines.append("Claims of the paper (EXPERIMENTS.md numbering) that no chapter reports in this build: "
                 + (", ".join(map(str, unchecked)) if unchecked else "none") + ".")
    if missing_chapters:
        lines += ["", "Chapters not executed in this build (their claims are absent): "
                  + ", ".join(missing_chapters) + "."]
    out = out_dir / f"{SUMMARY}.md"
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"[book] {SUMMARY}: {len(rows)} verdicts from {len(names) - len(missing_chapters)} chapters; "
          f"paper claims not reported: {unchecked or 'none'}", flush=True)
    return out


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
    write_claims_summary(names, args.profile)
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
