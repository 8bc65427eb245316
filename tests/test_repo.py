"""The repository's own contracts: README generated from nbs/index.ipynb, notebooks clean."""
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def test_readme_is_generated_from_index():
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "make_readme.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    commands = [l.split("#")[0].strip() for l in block.strip().splitlines()]
    assert commands == ["make train", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_every_module_comes_from_a_notebook():
    exported = set()
    for nb_path in (ROOT / "nbs").glob("*.ipynb"):
        for cell in nbformat.read(nb_path, as_version=4).cells:
            for line in cell.source.splitlines():
                if line.replace(" ", "").startswith("#|default_exp"):
                    exported.add(line.split("default_exp", 1)[1].strip().replace(".", "/") + ".py")
    modules = {str(p.relative_to(ROOT / "ml_workflow_training")) for p in (ROOT / "ml_workflow_training").rglob("*.py")}
    assert modules - {"_modidx.py"} == exported | {"__init__.py"}


def test_notebooks_have_no_outputs():
    for nb_path in (ROOT / "nbs").rglob("*.ipynb"):
        if ".ipynb_checkpoints" in nb_path.parts: continue
        for cell in nbformat.read(nb_path, as_version=4).cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, nb_path
