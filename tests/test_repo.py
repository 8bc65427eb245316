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
    ci = [l.strip() for l in (ROOT / ".ci" / "run").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert ci[-1] == "exec make test"  # CI ends by running exactly the README's test command


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


def _package_imports() -> dict[str, set[str]]:
    "Each module of the package and the package modules it imports, at module level or inside functions."
    import ast
    pkg = ROOT / "ml_workflow_training"
    names = {p.stem for p in pkg.glob("*.py") if p.stem not in ("__init__", "_modidx")}
    graph = {}
    for name in names:
        deps = set()
        for node in ast.walk(ast.parse((pkg / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = node.module.removeprefix("ml_workflow_training.") if node.level == 0 else node.module
                if node.level == 0 and not node.module.startswith("ml_workflow_training"): continue
                deps.add(mod.split(".")[0])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("ml_workflow_training.")}
        graph[name] = deps & names - {name}
    return graph


def test_the_package_has_no_import_circle():
    graph, state, order = _package_imports(), {}, []

    def visit(node, path):
        if state.get(node) == "done": return
        assert state.get(node) != "open", f"import circle: {' -> '.join(path + [node])}"
        state[node] = "open"
        for dep in sorted(graph[node]): visit(dep, path + [node])
        state[node] = "done"; order.append(node)

    for node in sorted(graph): visit(node, [])
    assert graph["core"] == set() and graph["specs"] == {"core"} and "cli" not in set().union(*graph.values())
    assert order.index("core") < order.index("specs") < order.index("tracking") < order.index("workflow") < order.index("cli")
    assert "data" not in graph["specs"] and order.index("data") < order.index("workflow")


def test_only_tracking_imports_mlflow():
    import ast
    pkg = ROOT / "ml_workflow_training"
    users = set()
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(m == "mlflow" or m.startswith("mlflow.") for m in mods): users.add(path.stem)
    assert users == {"tracking"}, users


def test_every_notebook_opens_with_the_python3_kernel():
    for nb_path in (ROOT / "nbs").rglob("*.ipynb"):
        if ".ipynb_checkpoints" in nb_path.parts: continue
        spec = nbformat.read(nb_path, as_version=4).metadata.get("kernelspec", {})
        assert spec.get("name") == "python3", nb_path


def test_export_cells_hold_one_symbol_each():
    "Like fastcore's and nbdev's notebooks: each exported function or class has a cell of its own, its check beside it."
    import ast
    for nb_path in (ROOT / "nbs").glob("*.ipynb"):
        for cell in nbformat.read(nb_path, as_version=4).cells:
            if cell.cell_type != "code" or not cell.source.startswith("#| export"): continue
            defs = [n.name for n in ast.parse(cell.source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
            assert len(defs) <= 1, (nb_path.name, defs)


def test_two_pytest_workers_build_a_shared_fixture_once():
    "`make test`'s two workers run the tests that share a module-scoped fixture on one worker (test_data's 200k-row table here), the others on either."
    import re
    out = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-v", "-p", "no:cacheprovider", "tests/test_data.py",
                          "-k", "at_scale or generation_hash or small_chunks or identifier or injection"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    ran_on = dict((test, worker) for worker, test in re.findall(r"\[(gw\d)\] .*?PASSED tests/test_data.py::(\S+)", out.stdout))
    shared = {w for t, w in ran_on.items() if re.match(r"test_(generation_at_scale|fingerprint_matches_generation_hash|load_with_small_chunks)", t)}
    assert len(shared) == 1 and len(ran_on) > 3, ran_on
