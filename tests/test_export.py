"""The notebooks are the source of the package: minisd/ must be exactly what they export.

`make export` runs nbdev's exporter. These tests run it on a copy of the repository and compare,
so editing an exported cell without exporting (or editing minisd/*.py by hand) fails the suite.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAND_WRITTEN = {"__init__.py", "__main__.py"}
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
            assert not re.search(r"^#\|[ \t]*export[si]?[ \t]+\S", src, re.M), f"{nb_path.name} exports to a named module"
    return found


def test_one_notebook_one_module():
    found = _default_exports()
    shared = {m: nbs for m, nbs in found.items() if len(nbs) > 1}
    assert not shared, f"modules written by several notebooks: {shared}"
    modules = {p.stem for p in (ROOT / "minisd").glob("*.py") if p.name not in HAND_WRITTEN and not p.name.startswith("_")}
    assert modules == set(found), f"modules without a notebook: {modules - set(found)}"


def test_hand_written_files_say_so():
    for name in HAND_WRITTEN:
        path = ROOT / "minisd" / name
        if path.exists():
            assert "Hand-written" in path.read_text()[:400], f"{name} must say at the top that it is hand-written"
