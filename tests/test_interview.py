"""Chapter 09 (no module): every question of the seed document has its section, with all five parts.

The notebook itself runs in the nbval test; here we check its structure against the seed document
(kept in the repository as tests/seed/interview_notes.md), so that a question cannot silently go
missing; that every evidence cell computes something rather than printing literals; that the quiz
hides its key; and that the glossary is bilingual.
"""
import ast
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "chapters" / "09_interview.ipynb"
GLOSSARY = ROOT / "assets" / "glossary.md"
SEED = ROOT / "tests" / "seed" / "interview_notes.md"
HAN = re.compile(r"[\u4e00-\u9fff]")
N_EXTRA = 39  # Q1 .. Q39


def cells():
    return nbformat.read(NOTEBOOK, as_version=4).cells


def sections(nb_cells, prefix):
    "The markdown cells that open a section ('## Seed N' or '## QN'), each with the code cells up to the next heading."
    found, current = [], None
    for cell in nb_cells:
        if cell.cell_type == "markdown" and re.match(rf"^## {prefix} ?\d+", cell.source):
            current = {"md": cell.source, "code": []}
            found.append(current)
        elif cell.cell_type == "markdown" and re.match(r"^#{1,2} ", cell.source.lstrip("-\n ")):
            current = None
        elif current is not None and cell.cell_type == "code":
            current["code"].append(cell.source)
        elif current is not None:
            current["md"] += "\n" + cell.source
    return found


# --- evidence must compute -------------------------------------------------------------------------------

_SHOW = {"print", "display"}  # calls that only show
_FORMAT = {"str", "repr", "format", "len", "int", "float", "round", "tuple", "list", "abs"}  # harmless on literals


def _literal_only(node):
    "True when the expression contains no name or attribute: constants, f-strings of constants, containers of them."
    return not any(isinstance(n, (ast.Name, ast.Attribute)) for n in ast.walk(node))


def _callee(call):
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def computes(source):
    """Does a code cell compute anything? It must hold a call that is neither a print/display nor a formatting
    builtin (str, len, ...) applied to literals only, e.g. `torch.randn(3)`, `unet(z, t, s)`, `len(x)`.
    A cell of prints of literals or of f-strings of literals does not."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _callee(node)
        if name in _SHOW:
            continue
        if name in _FORMAT and isinstance(node.func, ast.Name) and all(
                _literal_only(a) for a in [*node.args, *(k.value for k in node.keywords)]):
            continue
        if isinstance(node.func, ast.Attribute) and _literal_only(node.func.value) and all(
                _literal_only(a) for a in [*node.args, *(k.value for k in node.keywords)]):
            continue  # "a b".split(), "{}".format(3): still literals
        return True
    return False


def test_the_computation_check_can_fail():
    assert not computes('print("text-to-image: 10 of 10 steps, from pure noise")')
    assert not computes('print(f"SD 1.5: {512 * 512 * 3} -> {64 * 64 * 4} ({48}x)")\nprint("done")')
    assert not computes('print("{} steps".format(50), len("abc"), "a b".split())')
    assert computes('x = torch.randn(3)\nprint(x.std())')
    assert computes('print(f"{len(calls)} UNet calls")')
    assert computes('n = sum(q.numel() for q in unet.parameters())')


def test_every_evidence_cell_computes():
    nb_cells = cells()
    for s in sections(nb_cells, "Seed") + sections(nb_cells, "Q"):
        assert s["code"], f"no evidence cell after {s['md'][:40]!r}"
        for code in s["code"]:
            assert computes(code), f"an evidence cell of {s['md'][:40]!r} prints literals only:\n{code[:300]}"


def test_evidence_outputs_are_folded_for_self_test():
    "JupyterLab keeps an evidence cell's output collapsed until clicked, so the answers do not show at a glance."
    in_section = False
    for cell in cells():
        if cell.cell_type == "markdown":
            if re.match(r"^## (Seed|Q) ?\d+", cell.source):
                in_section = True
            elif re.match(r"^#{1,2} ", cell.source.lstrip("-\n ")):
                in_section = False
        elif in_section:
            assert cell.metadata.get("jupyter", {}).get("outputs_hidden"), f"output not folded:\n{cell.source[:80]}"


# --- structure -------------------------------------------------------------------------------------------

def test_fourteen_seed_sections_in_order_with_five_parts():
    found = sections(cells(), "Seed")
    assert [int(re.match(r"^## Seed (\d+)", s["md"]).group(1)) for s in found] == list(range(1, 15))
    for s in found:
        md = s["md"]
        assert "**题目：**" in md and "**Question:**" in md, md[:80]  # the question in Chinese and English
        assert "原答案评析" in md and re.search(r"\b(correct|incomplete|wrong) / ", md), md[:80]  # the seed, judged
        assert "**答：**" in md and "**Answer:**" in md, md[:80]  # the correct answer in both languages
        assert "要点清单" in md, md[:80]  # a rubric for self-grading a spoken answer
        assert md.count("<details>") == md.count("</details>") >= 3, md[:80]  # folded for self-test
        for row in re.findall(r"^\|.*\| (?:correct|incomplete|wrong) / .*$", md, re.M):
            assert HAN.search(row.split("|")[-2]), f"the reason needs Chinese too: {row[:100]}"


def test_every_seed_question_is_quoted():
    assert SEED.exists(), f"{SEED.relative_to(ROOT)} is missing: the chapter answers that document"
    questions = re.findall(r"\*\*题目：\*\*\s*(.+)", SEED.read_text(encoding="utf-8"))
    text = "\n".join(c.source for c in cells() if c.cell_type == "markdown")
    assert len(questions) == 14
    for q in questions:
        assert q.strip() in text, q


def test_extra_questions_are_bilingual_with_rubric_and_follow_ups():
    nb_cells = cells()
    found = sections(nb_cells, "Q")
    assert [int(re.match(r"^## Q(\d+)", s["md"]).group(1)) for s in found] == list(range(1, N_EXTRA + 1))
    for s in found:
        md = s["md"]
        assert "**答：**" in md and "**Answer:**" in md and "<details>" in md, md[:60]
        assert md.count("<details>") == md.count("</details>"), md[:60]
        assert "要点清单" in md and "追问" in md, md[:60]
    sheet = next(c.source for c in nb_cells if c.cell_type == "code" and c.source.startswith("QUESTIONS = {"))
    for k in range(1, N_EXTRA + 1):
        assert f'"Q{k}":' in sheet, f"Q{k} is missing from the question sheet"


def test_quiz_is_bilingual_and_hides_its_key():
    nb_cells = cells()
    stub = [c for c in nb_cells if "exercise" in c.metadata.get("tags", [])]
    check = [c for c in nb_cells if "exercise-check" in c.metadata.get("tags", [])]
    assert len(stub) == 1 and 1 <= len(check) <= 2  # the quiz's checks and the whiteboard exercises' checks
    check_source = "\n\n".join(c.source for c in check)
    quiz = sorted(int(n) for n in re.findall(r"^answer_(\d+) = None", stub[0].source, re.M))
    assert len(quiz) >= 15 and quiz == list(range(1, len(quiz) + 1)), quiz
    text = "\n".join(c.source for c in nb_cells if c.cell_type == "markdown")
    for k in quiz:
        item = re.search(rf"^{k}\. (.+?)(?=^\d+\. |\Z)", text[text.index("小测验"):], re.M | re.S)
        assert item and HAN.search(item.group(1)) and re.search(r"[A-Za-z]{4}", item.group(1)), f"quiz item {k}"
    # the key is compared as hashes: no plain answer such as `== 100` or `== "cvae"` in the check cell
    assert "sha256" in check_source
    assert not re.search(r"answer_\d+\)?\s*==\s*[\d\"'({]", check_source), "the quiz key is readable in the source"


def test_glossary_is_bilingual():
    rows = [r for r in GLOSSARY.read_text(encoding="utf-8").splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert len(rows) >= 40
    for row in rows:
        chinese, english = (c.strip() for c in row.strip("|").split("|")[:2])
        assert HAN.search(chinese), row
        assert re.search(r"[A-Za-z]", english), row
