"""Every algorithm script is laid out the same way (README, "How every script is laid out"):
docstring with the lecture's steps → imports → per-env defaults → Args → networks and math → train() →
bookkeeping, whose shared part is the same, line for line, in every script."""

import ast
import glob
import os
import re

import pytest

from conftest import ROOT

SHARED_MARKER = "# From here to the end, every script of this repository has the same lines"
BOOKKEEPING_MARKER = "# Bookkeeping. A first reading can stop here"
SCRIPTS = sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(ROOT, "*.py")))
# train() of these scripts stays within 60 lines, the others within 100 (a3c's loop is its worker)
SHORT_TRAIN = {"dqn", "double_dqn", "dueling_dqn", "per_dqn", "rainbow", "ddpg", "td3", "sac"}
LABEL = re.compile(r"\b([A-Z][A-Z0-9]*)-(\d+)\b")


def source(name: str) -> str:
    with open(os.path.join(ROOT, f"{name}.py")) as f:
        return f.read()


def shared_part(text: str) -> str:
    start = text.index(SHARED_MARKER)
    return text[text.rindex("\n", 0, start - 1):]  # from the rule line above the marker


def test_every_script_is_checked():
    assert {"dqn", "ppo", "sac", "a3c"} <= set(SCRIPTS)


def test_shared_bookkeeping_is_identical_everywhere():
    reference = shared_part(source("dqn"))
    differ = [name for name in SCRIPTS if shared_part(source(name)) != reference]
    assert not differ, f"the shared bookkeeping of {differ} differs from dqn.py's: copy it from dqn.py"


@pytest.mark.parametrize("name", SCRIPTS)
def test_reading_order(name):
    text = source(name)
    tree = ast.parse(text)
    assert ast.get_docstring(tree), "a script starts with its docstring"
    order = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    assert order.index("Args") < order.index("train") < order.index("check_args") < order.index("Run")
    assert text.index("def train(") < text.index(BOOKKEEPING_MARKER) < text.index(SHARED_MARKER)
    first_def = min(node.lineno for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef)))
    imports = [node.lineno for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert max(imports) < first_def, "imports come before everything else"


@pytest.mark.parametrize("name", SCRIPTS)
def test_train_is_short(name):
    tree = ast.parse(source(name))
    train = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "train")
    lines = [line for line in source(name).splitlines()[train.lineno - 1:train.end_lineno] if line.strip()]
    limit = 60 if name in SHORT_TRAIN else 100
    assert len(lines) <= limit, f"train() of {name}.py has {len(lines)} lines, more than {limit}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_pointer_outside_the_file(name):
    text = source(name)
    for outside in ("PSEUDOCODE.md", "policy-based-rl.md", "BASELINES.md", "CONVENTIONS.md", "../shared",
                    "lecture/"):
        assert outside not in text, f"{name}.py points to {outside}, which a student who copies it lacks"


@pytest.mark.parametrize("name", SCRIPTS)
def test_docstring_lists_the_steps_the_code_tags(name):
    text = source(name)
    docstring = ast.get_docstring(ast.parse(text))
    listed = {m.group(0) for m in LABEL.finditer(docstring)}
    code = text[text.index('"""', 3) + 3:text.index(BOOKKEEPING_MARKER)]
    tagged = {m.group(0) for line in code.splitlines() if "#" in line
              for m in LABEL.finditer(line[line.index("#"):])}
    assert listed, "the docstring lists the lecture's steps"
    assert tagged <= listed, f"steps tagged in the code but not listed in the docstring: {tagged - listed}"
    assert listed <= tagged, f"steps listed in the docstring but tagged nowhere in the code: {listed - tagged}"
