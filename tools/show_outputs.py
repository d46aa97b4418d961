"""Print the text outputs of an executed notebook (a quick look without a browser)."""
import sys

import nbformat

nb = nbformat.read(sys.argv[1], as_version=4)
for k, cell in enumerate(nb.cells):
    if cell.cell_type != "code":
        continue
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            print(f"[{k}] {out.text.strip()[:1500]}")
        elif out.output_type in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "image/png" in data:
                print(f"[{k}] <figure>")
            elif "text/plain" in data:
                print(f"[{k}] {data['text/plain'][:1500]}")
        elif out.output_type == "error":
            print(f"[{k}] ERROR {out.ename}: {out.evalue}")
