"""Lab mode (tests/labs.py, `make labs`): the generated notebooks and the autograder.

The generator is checked on every chapter without running anything: the student notebook is the
master with the marked regions taken out, and that gives back the chapter's exercise cell exactly;
no solution or hidden test is left in it. The grader runs (each grade is one Python process that
executes only the exercise cell, the instructor's self-check and the hidden tests, not the whole
notebook) on a few chapters: the solution notebook scores full marks, the untouched student
notebook scores zero without stopping the grader, a half-done one scores half, and the usual ways
of gaming a self-check score nothing.
"""

import json
import subprocess
import sys

import nbformat
import pytest

import labs  # tests/labs.py (pytest puts tests/ on the path)

ROOT = labs.ROOT
CHAPTERS = labs.chapters()


def _exercise_cell(nb):
    (cell,) = labs.tagged(nb, "exercise")
    return cell


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_student_notebook_is_the_master_without_its_answers(path):
    chapter = nbformat.read(path, as_version=4)
    master = labs.master(path)
    student = labs.student(master)
    nbformat.validate(master)
    nbformat.validate(student)
    solutions, _ = labs.answers(path.stem)

    # the master: every answer between the markers, one hidden-test region per exercise
    cell = _exercise_cell(master)
    assert cell.source.count("### BEGIN SOLUTION") == cell.source.count("### END SOLUTION") == len(solutions)
    assert all(code.strip() in cell.source for code in solutions.values())
    (hidden,) = labs.tagged(master, labs.HIDDEN_TAG)
    regions = labs.HIDDEN_RE.findall(hidden.source)
    assert sorted(labs.NAME_RE.search(r).group(1) for r in regions) == sorted(solutions)
    for source in [cell.source, hidden.source]:
        compile(source, path.stem, "exec")
    assert master.metadata["minisd_lab"] == {"chapter": path.stem, "exercises": sorted(solutions, key=labs._order)}

    # the student's: the chapter's own cells, ids and stubs, with no answer or hidden test left
    assert [c.get("id") for c in student.cells] == [c.get("id") for c in chapter.cells]
    assert [c.source for c in student.cells] == [c.source for c in chapter.cells]
    text = json.dumps(student)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and labs.HIDDEN_TAG not in text
    assert all(not c.get("outputs") for c in [*student.cells, *master.cells] if c.cell_type == "code")


def test_make_labs_writes_the_kit(tmp_path):
    out = tmp_path / "labs"
    run = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "labs", f"LABS={out}"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    names = sorted(p.name for p in CHAPTERS)
    assert sorted(p.name for p in (out / "solutions").glob("*.ipynb")) == names
    assert sorted(p.name for p in (out / "student").glob("*.ipynb")) == names
    assert (out / "README.md").exists()


# --- the grader: a few chapters, each grade one short process -------------------------------------

def _with_exercise_cell(nb, source, path):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    _exercise_cell(nb).source = source
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    out = tmp_path_factory.mktemp("labs")
    for stem in ("00a_welcome", "07c_guidance"):
        nb = labs.master(ROOT / "chapters" / f"{stem}.ipynb")
        (out / "solutions").mkdir(exist_ok=True)
        (out / "student").mkdir(exist_ok=True)
        nbformat.write(nb, out / "solutions" / f"{stem}.ipynb")
        nbformat.write(labs.student(nb), out / "student" / f"{stem}.ipynb")
    return out


def test_solution_notebooks_score_full_marks(kit):
    # through the command line, as an instructor runs it
    for stem in ("00a_welcome", "07c_guidance"):
        run = subprocess.run([sys.executable, "tests/labs.py", "grade", str(kit / "solutions" / f"{stem}.ipynb"),
                              "--master", str(kit / "solutions" / f"{stem}.ipynb"), "--json"],
                             capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        assert report["score"] == report["total"] > 0 and not report["errors"], report


def test_untouched_student_notebook_scores_zero(kit):
    report = labs.grade(kit / "student" / "07c_guidance.ipynb", kit / "solutions" / "07c_guidance.ipynb")
    assert report["total"] == 2 and report["score"] == 0 and not report["errors"], report
    assert all(e["why"].startswith("self-check: not yet") for e in report["exercises"].values()), report


def test_partly_done_notebook_scores_partial_marks(kit, tmp_path):
    student = nbformat.read(kit / "student" / "07c_guidance.ipynb", as_version=4)
    solutions, _ = labs.answers("07c_guidance")
    done = _with_exercise_cell(student, _exercise_cell(student).source + "\n" + solutions["exercise 1"],
                               tmp_path / "07c_guidance.ipynb")
    report = labs.grade(done, kit / "solutions" / "07c_guidance.ipynb")
    assert report["score"] == 1 and report["exercises"]["exercise 1"]["points"] == 1, report


def test_grader_is_not_fooled_and_does_not_crash(kit, tmp_path):
    student = nbformat.read(kit / "student" / "07c_guidance.ipynb", as_version=4)
    # exercise 1: the library's own implementation imported (passes the public check, fails the hidden test);
    # exercise 2: left undone, but the cell prints the verdict line; a broken statement and sys.exit on top
    gamed = _exercise_cell(student).source + (
        "\nfrom minisd.guidance import classifier_free_guidance as guide\n"
        "print('exercise 2: correct')\n1 / 0\nimport sys\nsys.exit(0)\n")
    nb = nbformat.read(_with_exercise_cell(student, gamed, tmp_path / "07c_guidance.ipynb"), as_version=4)
    for cell in labs.tagged(nb, "exercise-check"):  # and a self-check edited to pass everything
        cell.source = "from minisd.core import check_exercise\nfor n in (1, 2): check_exercise(f'exercise {n}', " \
                      "lambda: True, '')"
    nbformat.write(nb, tmp_path / "07c_guidance.ipynb")
    report = labs.grade(tmp_path / "07c_guidance.ipynb", kit / "solutions" / "07c_guidance.ipynb")
    assert report["score"] == 0, report
    assert report["exercises"]["exercise 1"]["why"].startswith("hidden test failed"), report
    assert any("ZeroDivisionError" in e for e in report["errors"]), report

    broken = _with_exercise_cell(student, "def guide(:\n", tmp_path / "broken.ipynb")
    report = labs.grade(broken, kit / "solutions" / "07c_guidance.ipynb")
    assert report["score"] == 0 and "does not parse" in report["errors"][0], report
