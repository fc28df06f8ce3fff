"""The package's house rules, read from its import graph.

Layers, lowest first: a module may import modules of its own layer or of lower ones, and never a
module written by a later notebook (a learner meets every import before it is used). No module
imports another module's private (underscore) names.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minisd"
LAYERS = [
    {"core", "configuration", "modeling"},
    {"resnet", "attention", "tokenizer", "probability"},
    {"vae", "vae_training", "data", "reader", "diffusion"},
    {"own_data"},
    {"sampling", "edm", "guidance", "text_encoder", "clip", "cvae", "unet"},
    {"pipeline"},
    {"recipes"},
    {"edm_recipe"},
    {"training_utils"},
    {"train"},
    {"evaluate"},
    {"scenes"},
    {"scene_benchmark"},
    {"scene_training"},
    {"flow"},
    {"mmdit"},
    {"sd3_pipeline"},
    {"flow_training"},
    {"reflow"},
    {"editing"},
    {"controlnet"},
    {"edit_training"},
    {"concept"},
    {"personalise"},
    {"dreambooth"},
    {"cli_train", "cli_flow", "cli_edit"},
    {"__main__", "__init__"},
]
LAYER = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _modules():
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "_modidx")


def _imports(name):
    "(imported module, names) for every import of a minisd module in `name`, top level or inside functions."
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1:
                target = module.split(".")[0] if module else None
            elif module.startswith("minisd"):
                target = module.split(".")[1] if "." in module else None
            else:
                continue
            names = [a.name for a in node.names]
            if target is None:  # `from minisd import train` / `from . import x`
                found += [(n, []) for n in names]
            else:
                found.append((target, names))
        elif isinstance(node, ast.Import):
            found += [(a.name.split(".")[1], []) for a in node.names if a.name.startswith("minisd.")]
    return found


def _notebook(name):
    m = re.search(r"File to edit: \.\./chapters/(\S+)\.ipynb", (PACKAGE / f"{name}.py").read_text()[:600])
    return m.group(1) if m else None


def test_every_module_has_a_layer():
    assert set(_modules()) <= set(LAYER), f"modules without a layer: {set(_modules()) - set(LAYER)}"


@pytest.mark.parametrize("name", _modules())
def test_imports_go_down_the_layers(name):
    for target, _ in _imports(name):
        assert LAYER[target] <= LAYER[name], f"{name} (layer {LAYER[name]}) imports {target} (layer {LAYER[target]})"


@pytest.mark.parametrize("name", [m for m in _modules() if _notebook(m)])  # hand-written ones have no chapter
def test_no_module_imports_a_later_chapter(name):
    for target, _ in _imports(name):
        if target.startswith("__"):
            continue
        ours, theirs = _notebook(name), _notebook(target)
        assert theirs <= ours, f"{name} ({ours}) imports {target} ({theirs})"


@pytest.mark.parametrize("name", _modules())
def test_no_private_names_cross_modules(name):
    for target, names in _imports(name):
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{name} imports private names {private} from {target}"


def test_the_rules_catch_a_violation(tmp_path, monkeypatch):
    "The checks above must be able to fail: a module of layer 1 importing the pipeline."
    (tmp_path / "resnet.py").write_text("from .pipeline import _pipeline_call\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path)
    [(target, names)] = _imports("resnet")
    assert LAYER[target] > LAYER["resnet"] and names[0].startswith("_")


def _long_lines(path, limit=120):
    "Lines past `limit` columns, except the `__all__` block nbdev generates (see pyproject's ruff section)."
    lines, in_all, long = path.read_text().splitlines(), False, []
    for number, line in enumerate(lines, 1):
        in_all = line.startswith("__all__ = [") or (in_all and line.startswith(" " * 11))
        if len(line) > limit and not in_all:
            long.append(f"{path.name}:{number} ({len(line)})")
    return long


@pytest.mark.parametrize("folder", ["minisd", "tests"])
def test_lines_fit_in_120_columns(folder):
    files = [p for p in sorted((PACKAGE.parent / folder).glob("*.py")) if p.name != "_modidx.py"]
    long = [entry for p in files for entry in _long_lines(p)]
    assert not long, f"lines past 120 columns: {long}"


def test_the_line_rule_can_fail(tmp_path):
    (tmp_path / "m.py").write_text("__all__ = [" + "'x', " * 30 + "]\nx = '" + "y" * 130 + "'\n")
    assert _long_lines(tmp_path / "m.py") == ["m.py:2 (136)"]
