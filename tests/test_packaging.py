"""pyproject.toml and environment.yml must install the same things."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PYPI = {"pytorch": "torch"}  # conda-forge names that differ from PyPI's


def _name(requirement):
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_names():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {_name(r) for r in reqs}


def environment_names():
    "Names in environment.yml: conda dependencies and the pip section (a tiny YAML reader for this file)."
    names, in_pip = set(), False
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("\ndependencies:"):].splitlines():
        item = re.match(r"^(\s*)-\s+(.+?)\s*(#.*)?$", line)
        if not item:
            in_pip = in_pip and line.startswith("  ")
            continue
        indent, value = len(item.group(1)), item.group(2).strip("\"'")
        if value == "pip:":
            in_pip = True
            continue
        if in_pip and indent <= 2:
            in_pip = False
        if value.startswith("-e") or value.startswith("."):
            continue  # the package itself
        name = CONDA_TO_PYPI.get(_name(value), _name(value))
        if name not in ("python", "pip"):
            names.add(name)
    return names


def test_environment_and_pyproject_agree_on_dependencies():
    ours, conda = pyproject_names(), environment_names()
    assert ours == conda, f"only in pyproject: {sorted(ours - conda)}; only in environment.yml: {sorted(conda - ours)}"


def test_runtime_dependencies_have_lower_bounds_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"]:
        assert ">=" in req and "<" not in req and "==" not in req, f"{req}: use an honest lower bound, no cap"
    assert any(r.startswith("torch>=") for r in project["dependencies"])


def test_reference_libraries_are_test_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    assert not runtime & {"diffusers", "transformers"}
    for path in (ROOT / "minisd").glob("*.py"):
        src = path.read_text()
        reference = re.search(r"^\s*(import|from)\s+(diffusers|transformers)\b", src, re.M)
        assert not reference, f"{path.name} imports a reference library"
