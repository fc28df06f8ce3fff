"""The notebooks are the source of the package: minisd/ must be exactly what they export.

`make export` runs nbdev's exporter. These tests run it on a copy of the repository and compare,
so editing an exported cell without exporting (or editing minisd/*.py by hand) fails the suite.
"""

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAND_WRITTEN = {"__init__.py", "__main__.py", "cli_train.py", "cli_flow.py", "cli_edit.py"}
EXPORT = [sys.executable, "-c", "from nbdev.doclinks import nbdev_export; nbdev_export()"]


def _copy_project(dest):
    for name in ("chapters", "minisd"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def _export(project):
    subprocess.run(EXPORT, cwd=project, check=True, capture_output=True, text=True, timeout=120)


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.py"))
            if "__pycache__" not in p.parts}


def _drift(project):
    "Files that differ between the repository's minisd/ and what the notebooks in `project` export."
    _export(project)
    ours, exported = _tree(ROOT / "minisd"), _tree(project / "minisd")
    return sorted(k for k in ours.keys() | exported.keys() if ours.get(k) != exported.get(k))


@pytest.fixture
def project(tmp_path):
    return _copy_project(tmp_path)


def test_package_matches_what_the_notebooks_export(project):
    drift = _drift(project)
    assert not drift, f"minisd/ differs from the notebooks in {drift}: run `make export` and commit"


def test_export_is_idempotent(project):
    _export(project)
    first = _tree(project / "minisd")
    _export(project)
    assert _tree(project / "minisd") == first


def test_editing_an_exported_cell_without_export_is_caught(project):
    nb_path = project / "chapters" / "00a_welcome.ipynb"
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith("#| export"))
    cell["source"] = "".join(cell["source"]) + "\nEDITED_BUT_NOT_EXPORTED = True\n"
    nb_path.write_text(json.dumps(nb))
    assert "core.py" in _drift(project)


def _default_exports():
    found = {}
    for nb_path in sorted((ROOT / "chapters").glob("*.ipynb")):
        for cell in json.loads(nb_path.read_text())["cells"]:
            src = "".join(cell["source"])
            m = re.match(r"#\|\s*default_exp\s+(\S+)", src)
            if m:
                found.setdefault(m.group(1), []).append(nb_path.name)
            # nbdev's export into another notebook's module appends on every run: not allowed
            assert not re.search(r"^#\|[ \t]*export[si]?[ \t]+\S", src, re.M), \
                f"{nb_path.name} exports to a named module"
    return found


def test_one_notebook_one_module():
    found = _default_exports()
    shared = {m: nbs for m, nbs in found.items() if len(nbs) > 1}
    assert not shared, f"modules written by several notebooks: {shared}"
    modules = {p.stem for p in (ROOT / "minisd").glob("*.py")
               if p.name not in HAND_WRITTEN and not p.name.startswith("_")}
    assert modules == set(found), f"modules without a notebook: {modules - set(found)}"


def test_hand_written_files_say_so():
    for name in HAND_WRITTEN:
        path = ROOT / "minisd" / name
        if path.exists():
            assert "Hand-written" in path.read_text()[:400], f"{name} must say at the top that it is hand-written"


def _module_level(statements):
    "The statements that run at import: the module's body, into if/try/with/for blocks, not into defs or classes."
    for node in statements:
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _module_level(getattr(node, field, []))


def class_attributes_patched(source):
    """`Cls.attr = ...` (or `+=`, `: T = ...`) at module level, where `Cls` is a class the module defines or
    imports, or any capitalised name: a method or attribute added after the class, which IDEs, type
    checkers and `inspect.getsource(Cls)` do not see. Returns "line N: Cls.attr" for each."""
    tree = ast.parse(source)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    found = []
    for node in _module_level(tree.body):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        else:
            continue
        for target in targets:
            for t in ast.walk(target):  # tuple targets: `A.x, B.y = ...`
                if (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                        and (t.value.id in classes or t.value.id[:1].isupper())):
                    found.append(f"line {node.lineno}: {ast.unparse(t)}")
    return found


def test_no_class_is_patched_at_module_level():
    "Every method and class attribute is written inside its class."
    patched = {p.name: found for p in sorted((ROOT / "minisd").glob("*.py"))
               if (found := class_attributes_patched(p.read_text()))}
    assert not patched, f"class attributes assigned after the class: {patched}"


def test_patching_a_class_at_module_level_is_caught():
    source = ("import torch\nfrom x import Pipe\nclass A:\n    pass\n\n\ndef _call(self):\n    return 1\n\n\n"
              "A.__call__ = _call\nPipe.save = _call\nA.n += 1\nif True:\n    A.m: int = 2\ntorch.x = 1\n"
              "class B:\n    B_attr = 1\n    y = A\n")
    assert class_attributes_patched(source) == ["line 11: A.__call__", "line 12: Pipe.save", "line 13: A.n",
                                                "line 15: A.m"]
