"""Lab mode: instructor notebooks with the answers, student notebooks without them, and an autograder.

Every chapter already holds its exercises in one convention (see tests/test_exercises.py): a code
cell tagged `exercise` with the stubs, a self-check cell tagged `exercise-check` after it, and the
right answers in tests/exercises/<chapter>.py (SOLUTIONS). This module builds the lab kit from
that, so nothing is marked by hand in thirty notebooks:

    python tests/labs.py build [--out labs]          # `make labs`
    python tests/labs.py grade labs/student/05_diffusion.ipynb [--master ...] [--json]

`build` writes
  labs/solutions/<chapter>.ipynb  the instructor's master: the exercise cell keeps its stubs and gets
                                  each right answer between `### BEGIN SOLUTION` / `### END SOLUTION`,
                                  and a cell tagged `exercise-hidden` holds the hidden tests between
                                  `### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS`, one region an exercise;
  labs/student/<chapter>.ipynb    what students get: the master with every solution region and the
                                  hidden-test cell taken out (the stubs raise NotImplementedError, the
                                  public self-checks stay), outputs cleared.
The student notebook is derived from the master by removing the marked regions, and that gives
back the chapter's own exercise cell, character for character (tests/test_labs.py checks it).

`grade` scores a completed student notebook, one point an exercise. It runs only what grading needs,
in a fresh Python process with a time limit: the student's `exercise` cell (statement by statement,
so one broken statement costs only its own exercise), then the instructor's copy of the self-check
cell (so editing the check in the student notebook changes nothing), then the hidden tests. An
exercise scores when its check says "correct" and its hidden tests pass. The verdicts are taken
from `minisd.core.check_exercise` itself, not from printed text, so an answer that prints
"exercise 2: correct" gains nothing. A crash, a syntax error or a time-out scores zero, never stops
the grader.

Hidden tests: every exercise whose answer is a function gets one, that the function is the
student's own code rather than an import of the library's implementation (`from minisd... import`),
which no public check can see. An answers file may add more: a dict HIDDEN, "exercise N" -> source
of asserts that run in the exercise's namespace after the check (they stay in the instructor's
files only).
"""

import argparse
import ast
import copy
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
ANSWERS = Path(__file__).resolve().parent / "exercises"
SOLUTION_RE = re.compile(r"\n\n### BEGIN SOLUTION\n.*?\n### END SOLUTION", re.S)  # as master() writes it
HIDDEN_RE = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS\n?", re.S)
NAME_RE = re.compile(r"^# (exercise \d+)\b", re.M)
HIDDEN_TAG = "exercise-hidden"


def _order(name):
    return int(name.split()[-1])


def tagged(nb, tag):
    "The code cells tagged `tag`, in order."
    return [c for c in nb.cells if c.cell_type == "code" and tag in c.get("metadata", {}).get("tags", [])]


def answers(stem):
    "SOLUTIONS and HIDDEN (empty when the file has none) of tests/exercises/<stem>.py."
    if not (ANSWERS / f"{stem}.py").exists():
        raise SystemExit(f"tests/exercises/{stem}.py is missing: chapter {stem} has exercises but no answers")
    spec = importlib.util.spec_from_file_location(f"answers_{stem.replace('-', '_')}", ANSWERS / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SOLUTIONS, getattr(module, "HIDDEN", {})


def _defined_functions(source):
    "Names that `source` binds with a top-level `def`."
    return [n.name for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def hidden_tests(stub, name, solution, extra=""):
    "The hidden tests of one exercise: its functions are the student's own code, then the answers file's extras."
    stub_names = set(_defined_functions(stub))
    lines = [f"# {name}"]
    for fn in _defined_functions(solution):
        if fn in stub_names:
            lines.append(f"assert getattr({fn}, '__module__', None) in ('__main__', '__exercise__'), "
                         f"'{fn} must be your own code, not an imported implementation'")
    if extra.strip():
        lines.append(extra.strip())
    if len(lines) == 1:
        lines.append("pass  # the instructor's copy of the self-check decides this one")
    return "\n".join(lines) + "\n"


def _new_id(*parts):
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:8]


def _cleared(nb):
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def master(path):
    "The instructor's notebook of one chapter: solutions and hidden tests marked in place."
    path = Path(path)
    nb = _cleared(nbformat.read(path, as_version=4))
    (cell,), checks = tagged(nb, "exercise"), tagged(nb, "exercise-check")
    solutions, extra = answers(path.stem)
    names = sorted(solutions, key=_order)
    stub = cell.source
    cell.source = stub + "".join(
        f"\n\n### BEGIN SOLUTION\n# {n}\n{solutions[n].strip()}\n### END SOLUTION" for n in names)
    hidden = "".join(f"### BEGIN HIDDEN TESTS\n{hidden_tests(stub, n, solutions[n], extra.get(n, ''))}"
                     "### END HIDDEN TESTS\n" for n in names)
    hidden_cell = nbformat.v4.new_code_cell(
        "# Hidden tests: only in the instructor's notebook; `make labs` leaves this cell out of the student's.\n"
        "# The autograder runs them after the self-check, in the namespace of the student's exercise cell.\n"
        + hidden.rstrip("\n"), metadata={"tags": [HIDDEN_TAG]})
    hidden_cell["id"] = _new_id(path.stem, HIDDEN_TAG)
    nb.cells.insert(nb.cells.index(checks[-1]) + 1, hidden_cell)
    nb.metadata["minisd_lab"] = {"chapter": path.stem, "exercises": names}
    return nb


def student(master_nb):
    "The student's notebook: the master without its solution regions and hidden tests."
    nb = copy.deepcopy(master_nb)
    nb.cells = [c for c in nb.cells if HIDDEN_TAG not in c.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        cell.source = HIDDEN_RE.sub("", SOLUTION_RE.sub("", cell.source))
    nb.metadata.pop("minisd_lab", None)
    return nb


def chapters(folder=ROOT / "chapters"):
    "The chapters with checked exercises."
    return [p for p in sorted(Path(folder).glob("*.ipynb"))
            if tagged(nbformat.read(p, as_version=4), "exercise-check")]


def build(out):
    out = Path(out)
    (out / "solutions").mkdir(parents=True, exist_ok=True)
    (out / "student").mkdir(parents=True, exist_ok=True)
    paths = chapters()
    for path in paths:
        nb = master(path)
        nbformat.validate(nb)
        nbformat.write(nb, out / "solutions" / path.name)
        nbformat.write(student(nb), out / "student" / path.name)
    (out / "README.md").write_text(KIT_README)
    return paths


KIT_README = """# minisd lab kit (generated by `make labs`; do not edit, rebuild)

- `student/`: hand these out. Solutions removed (the stubs raise NotImplementedError), public self-checks
  kept, hidden tests removed, outputs cleared.
- `solutions/`: the instructor's masters. Each exercise's answer sits between `### BEGIN SOLUTION` and
  `### END SOLUTION`; the cell tagged `exercise-hidden` holds the hidden tests. Keep these private.
- Grade a returned notebook (from the repository root, in its virtual environment):
  `.venv/bin/python tests/labs.py grade path/to/05_diffusion.ipynb` (add `--json` for a machine-readable result).
  It runs the student's exercise cell, the instructor's self-check and the hidden tests, and prints a point
  per exercise.
"""


# --- grading -------------------------------------------------------------------------------------

def _job(student_nb, master_nb):
    "What the grading process runs: the student's exercise cell, the instructor's check and hidden tests."
    cells = tagged(student_nb, "exercise")
    hidden = {}
    for cell in tagged(master_nb, HIDDEN_TAG):
        for region in HIDDEN_RE.findall(cell.source):
            m = NAME_RE.search(region)
            hidden.setdefault(m.group(1), []).append(region)
    return {
        "student": "\n\n".join(c.source for c in cells) if cells else None,
        "check": "\n\n".join(c.source for c in tagged(master_nb, "exercise-check")),
        "hidden": hidden,
        "exercises": master_nb.metadata["minisd_lab"]["exercises"],
    }


def _run_job(job):
    "Inside the grading process: run the job, return the verdicts. Never raises."
    import contextlib
    import io
    import traceback

    import minisd.core

    result = {"errors": [], "verdicts": {}, "hints": {}, "hidden": {}}
    verdicts, hints = result["verdicts"], result["hints"]

    def record(name, attempt, hint):
        try:
            ok = bool(attempt())
        except NotImplementedError:
            ok = False
        except Exception as e:  # noqa: BLE001 - a bug in the student's answer
            ok, hint = False, f"your code raised {type(e).__name__}: {e}"
        verdicts.setdefault(name, "correct" if ok else "not yet")
        hints.setdefault(name, "" if ok else hint)
        print(f"{name}: {'correct' if ok else 'not yet - ' + hint}")

    minisd.core.check_exercise = record
    import minisd
    if hasattr(minisd, "check_exercise"):
        minisd.check_exercise = record
    namespace = {"__name__": "__exercise__"}
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        if job["student"] is None:
            result["errors"].append("the notebook has no cell tagged `exercise`")
        else:
            try:
                tree = ast.parse(job["student"])
            except SyntaxError as e:
                result["errors"].append(f"the exercise cell does not parse: {e}")
                tree = None
            for node in tree.body if tree else []:
                try:
                    exec(compile(ast.Module([node], []), "<exercise cell>", "exec"), namespace)
                except BaseException as e:  # noqa: BLE001 - SystemExit included: grading goes on
                    result["errors"].append(f"line {node.lineno}: {type(e).__name__}: {e}")
            minisd.core.check_exercise = record  # again: the student's code may have replaced it
            if hasattr(minisd, "check_exercise"):
                minisd.check_exercise = record
            try:
                exec(compile(job["check"], "<check cell>", "exec"), namespace)
            except BaseException as e:  # noqa: BLE001
                result["errors"].append(f"the self-check stopped: {type(e).__name__}: {e}")
        for name, regions in job["hidden"].items():
            failures = []
            for region in regions:
                try:
                    exec(compile(region, f"<hidden tests, {name}>", "exec"), namespace)
                except BaseException as e:  # noqa: BLE001
                    failures.append(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
                    if not isinstance(e, AssertionError):
                        failures[-1] += " " + traceback.format_exc(limit=1).splitlines()[-1]
            result["hidden"][name] = failures
    result["output"] = sink.getvalue()[-4000:]
    return result


def grade(student_path, master_path=None, timeout=600):
    """Score one notebook: a dict with "chapter", "score", "total" and, per exercise, its points and why.

    The master defaults to labs/solutions/<same name>.ipynb, else it is built from chapters/.
    """
    student_path = Path(student_path)
    student_nb = nbformat.read(student_path, as_version=4)
    if master_path is None:
        built = Path("labs") / "solutions" / student_path.name
        master_path = built if built.exists() else ROOT / "chapters" / student_path.name
    master_path = Path(master_path)
    if not master_path.exists():
        raise SystemExit(f"no instructor's notebook for {student_path.name}: "
                         "pass --master labs/solutions/<chapter>.ipynb")
    master_nb = nbformat.read(master_path, as_version=4)
    if "minisd_lab" not in master_nb.metadata:  # a chapter: build its master in memory
        master_nb = master(master_path)
    job = _job(student_nb, master_nb)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("MINISD_PROFILE", "quick")
    try:
        run = subprocess.run([sys.executable, __file__, "_run"], input=json.dumps(job), text=True,
                             capture_output=True, timeout=timeout, cwd=ROOT, env=env)
        lines = run.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if run.returncode == 0 and lines else {
            "errors": [f"the grading process failed ({run.returncode}): {run.stderr[-2000:]}"]}
    except subprocess.TimeoutExpired:
        result = {"errors": [f"time limit of {timeout} s reached"]}
    report = {"chapter": master_nb.metadata["minisd_lab"]["chapter"], "notebook": str(student_path),
              "errors": result.get("errors", []), "exercises": {}}
    for name in job["exercises"]:
        verdict = result.get("verdicts", {}).get(name, "not run")
        failures = result.get("hidden", {}).get(name, ["not run"])
        points = int(verdict == "correct" and not failures)
        if points:
            why = "correct"
        elif verdict != "correct":
            hint = result.get("hints", {}).get(name)
            why = f"self-check: {verdict}" + (f" - {hint}" if hint else "")
        else:
            why = f"hidden test failed: {'; '.join(failures)}"
        report["exercises"][name] = {"points": points, "out_of": 1, "why": why}
    report["score"] = sum(e["points"] for e in report["exercises"].values())
    report["total"] = len(report["exercises"])
    return report


def format_report(report):
    lines = [f"{report['notebook']} (chapter {report['chapter']})"]
    for name, e in report["exercises"].items():
        lines.append(f"  {name:<12} {e['points']}/{e['out_of']}  {e['why']}")
    lines += [f"  note: {err}" for err in report["errors"]]
    lines.append(f"  score: {report['score']}/{report['total']}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python tests/labs.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write solutions/ and student/ notebooks for every chapter")
    b.add_argument("--out", default="labs")
    g = sub.add_parser("grade", help="score completed student notebooks, one point an exercise")
    g.add_argument("notebooks", nargs="+")
    g.add_argument("--master", help="the instructor's notebook (default: labs/solutions/<name>, else chapters/<name>)")
    g.add_argument("--timeout", type=int, default=600, help="seconds a notebook may take (default 600)")
    g.add_argument("--json", action="store_true", help="print one JSON object a notebook")
    sub.add_parser("_run", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command == "build":
        paths = build(args.out)
        print(f"{len(paths)} chapters: {args.out}/solutions/ (instructor) and {args.out}/student/ (hand out)")
    elif args.command == "grade":
        for nb in args.notebooks:
            report = grade(nb, args.master, args.timeout)
            print(json.dumps(report) if args.json else format_report(report))
    else:  # the grading process: a job on stdin, the result as the last line of stdout
        result = _run_job(json.loads(sys.stdin.read()))
        sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
