"""Every exercise's self-check fails on the stub and on a plausible wrong answer, and passes on a right one.

A chapter's exercises live in two tagged code cells: `exercise` (the stubs the learner fills in)
and `exercise-check` (the checks, which import what they need and print one line per exercise,
"exercise N: correct" or "exercise N: not yet - ..."). For each such notebook,
`tests/exercises/<notebook>.py` holds a right answer (SOLUTIONS) and a wrong one (WRONG) per
checked exercise, as source code that replaces the stub's names; a wrong answer that differs from
the right one in a line or two is written as that edit, a pair (old, new) applied to the right
one. The test runs the two cells in a fresh namespace three ways: untouched (every check must
say "not yet"), with every right answer (every check must say "correct"), and with all right
answers but one wrong (that one must say "not yet", the others "correct").
"""

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
ANSWERS = Path(__file__).resolve().parent / "exercises"
VERDICT = re.compile(r"^(exercise \d+): (correct|not yet)", re.M)


def _tagged(nb, tag):
    cells = [c.source for c in nb.cells if c.cell_type == "code" and tag in c.get("metadata", {}).get("tags", [])]
    return "\n\n".join(cells)


def _notebooks():
    out = []
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if _tagged(nb, "exercise-check"):
            out.append(path)
    return out


def _answers(stem):
    path = ANSWERS / f"{stem}.py"
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is missing: every checked exercise needs a right and a wrong answer")
    spec = importlib.util.spec_from_file_location(f"answers_{stem.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SOLUTIONS, module.WRONG


def _verdicts(stub, replacements, check):
    namespace = {"__name__": "__exercise__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(stub, "<exercise cell>", "exec"), namespace)
        for code in replacements:
            exec(compile(code, "<answer>", "exec"), namespace)
        exec(compile(check, "<check cell>", "exec"), namespace)
    return dict(VERDICT.findall(out.getvalue())), out.getvalue()


def test_every_chapter_has_checked_exercises():
    # Every chapter ends in checked exercises; a notebook that loses its tags must not silence this test.
    chapters = {p.stem for p in (ROOT / "chapters").glob("*.ipynb")}
    assert chapters and chapters == {p.stem for p in _notebooks()}, sorted(chapters - {p.stem for p in _notebooks()})


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_checks_reject_stubs_and_wrong_answers(path):
    nb = nbformat.read(path, as_version=4)
    stub, check = _tagged(nb, "exercise"), _tagged(nb, "exercise-check")
    solutions, wrong = _answers(path.stem)

    untouched, text = _verdicts(stub, [], check)
    assert untouched, f"the check cell printed no verdicts:\n{text}"
    assert set(solutions) == set(untouched) == set(wrong), (sorted(untouched), sorted(solutions), sorted(wrong))
    assert all(v == "not yet" for v in untouched.values()), f"a check passes on the untouched stub:\n{text}"

    right, text = _verdicts(stub, solutions.values(), check)
    assert all(v == "correct" for v in right.values()), f"a check rejects its right answer:\n{text}"

    for name, code in wrong.items():
        if isinstance(code, tuple):  # (old, new): the right answer with one mistake put in
            old, new = code
            assert solutions[name].count(old) == 1, f"{name}: {old!r} must occur once in the right answer"
            code = solutions[name].replace(old, new)
        others = [c for n, c in solutions.items() if n != name]
        verdicts, text = _verdicts(stub, [*others, code], check)
        assert verdicts[name] == "not yet", f"{name} accepts a wrong answer:\n{code}\n{text}"
        assert all(v == "correct" for n, v in verdicts.items() if n != name), text
