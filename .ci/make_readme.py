"""Write README.md from nbs/index.ipynb (Quarto, which nbdev_readme needs, is not installable here).

Markdown cells are copied as they are; code cells not marked `#| hide` become fenced Python
with their `#|` directives removed (nbdev_clean leaves no outputs). `--check` exits 1 when
README.md differs from what it would write.
"""
import sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parent.parent
HEADER = "<!-- Generated from nbs/index.ipynb by .ci/make_readme.py: edit the notebook, not this file. -->\n\n"


def _is_hidden(src: str) -> bool:
    return any(l.strip().replace(' ', '') in ('#|hide', '#|include:false') for l in src.splitlines())


def _strip_directives(src: str) -> str:
    return "\n".join(l for l in src.splitlines() if not l.lstrip().startswith("#|")).strip()


def render(nb_path: Path = ROOT / "nbs" / "index.ipynb") -> str:
    nb = nbformat.read(nb_path, as_version=4)
    parts = []
    for cell in nb.cells:
        src = cell.source
        if cell.cell_type == "markdown": parts.append(src.strip())
        elif cell.cell_type == "code" and not _is_hidden(src):
            code = _strip_directives(src)
            if code: parts.append(f"```python\n{code}\n```")
    return HEADER + "\n\n".join(p for p in parts if p) + "\n"


def main(argv):
    out = ROOT / "README.md"
    text = render()
    if "--check" in argv:
        if not out.exists() or out.read_text() != text:
            print("README.md is out of date: run `make readme`"); return 1
        return 0
    if not out.exists() or out.read_text() != text: out.write_text(text)
    return 0


if __name__ == "__main__": sys.exit(main(sys.argv[1:]))
