"""README.md: every command in its bash blocks runs as written, in order, from a fresh copy of the repository
(with small budgets), and every link of README.md and RESULTS.md points to a file and heading that exist."""

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, SCRIPTS

DOCS = ["README.md", "RESULTS.md"]
TINY = {script.name: script.tiny for script in SCRIPTS}  # the harness's few-second budgets, per script
EVALUATE_EPISODES = 2
# a command inside a line of shell: up to the next ;, &&, ||, | or the end of the line
PYTHON_COMMAND = re.compile(r"python (\w+)\.py([^;&|]*)")


def read(name: str) -> str:
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def bash_blocks(text: str) -> list:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def flags(overrides: dict) -> str:
    return " ".join(f"--{name.replace('_', '-')} {value}" for name, value in overrides.items())


def shrink(command: str) -> str:
    """One command with a small budget: the harness's tiny settings appended to an algorithm script's
    arguments, fewer episodes for evaluate.py; any other command as it is."""
    def smaller(match):
        script, arguments = match.group(1), match.group(2)
        extra = (flags(TINY[script]) if script in TINY else
                 f"--episodes {EVALUATE_EPISODES}" if script == "evaluate" else "")
        if not extra:
            return match.group(0)
        return f"python {script}.py{arguments.rstrip()} {extra}" + (" " if arguments.endswith(" ") else "")
    return PYTHON_COMMAND.sub(smaller, command)


def as_test_runs(line: str) -> str:
    """A README line as the test runs it: without its comment, its `pip install` parts and the test command
    itself (the tests are what runs this), the rest shrunk; "" when nothing is left."""
    code = re.split(r"\s+#\s", " " + line, maxsplit=1)[0].strip()
    parts = [part.strip() for part in code.split("&&")]
    kept = [part for part in parts if part and not part.startswith("pip install")
            and not part.startswith("python -m pytest")]
    return shrink(" && ".join(kept))


def readme_commands() -> list:
    """[(the README's line, the line the test runs)] of every bash block, in order."""
    return [(line, as_test_runs(line)) for block in bash_blocks(read("README.md"))
            for line in block.splitlines() if line.strip()]


def test_the_readme_commands_are_read_and_shrunk():
    commands = readme_commands()
    assert commands[0] == ("pip install -r requirements.txt && python ppo.py", f"python ppo.py {flags(TINY['ppo'])}")
    assert ('pip install -r requirements.txt "gymnasium[atari,other]" minatar && python -m pytest tests/', "") in commands
    for original, runs in commands:
        for script in re.findall(r"python (\w+)\.py", original):
            if script in TINY:
                assert flags(TINY[script]) in runs, runs
            elif script == "evaluate":
                assert len(re.findall(rf"--episodes {EVALUATE_EPISODES}\b", runs)) == original.count("evaluate.py"), runs
    loop = "for seed in 1 2 3; do python ppo.py --seed $seed; done  # three seeds"
    assert as_test_runs(loop) == f"for seed in 1 2 3; do python ppo.py --seed $seed {flags(TINY['ppo'])}; done"


@pytest.fixture
def fresh_copy(tmp_path):
    """The scripts, evaluate.py, plots/ and requirements.txt in a folder of their own, and a `python` on PATH
    that is this interpreter (with its packages)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for path in glob.glob(os.path.join(ROOT, "*.py")) + [os.path.join(ROOT, "requirements.txt")]:
        shutil.copy(path, repo)
    shutil.copytree(os.path.join(ROOT, "plots"), repo / "plots", ignore=shutil.ignore_patterns("__pycache__"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return repo, env


# the optional packages a README line may install, and the module each one brings
OPTIONAL = {"minatar": "minatar", '"gymnasium[atari,other]"': "ale_py"}


def missing_optional_package(line: str) -> str:
    """The optional package `line` installs that this Python lacks ("" if none): its command cannot run here."""
    installs = " ".join(part for part in line.split("&&") if part.strip().startswith("pip install"))
    return next((package for package, module in OPTIONAL.items()
                 if package in installs.split() and importlib.util.find_spec(module) is None), "")


def test_every_readme_command_runs_in_order_from_a_fresh_copy(fresh_copy):
    repo, env = fresh_copy
    for original, command in readme_commands():
        if not command or missing_optional_package(original):
            continue  # a line for an optional package this Python lacks: test_pixels says so, skipping
        result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command], cwd=repo, env=env,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, (f"README command failed (exit {result.returncode}):\n  {original}\n"
                                        f"run as:\n  {command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    # what the README says these commands write
    assert glob.glob(str(repo / "runs" / "eval" / "CartPole-v1__ppo__1__*" / "eval.json"))
    assert glob.glob(str(repo / "runs" / "eval" / "CartPole-v1__ppo__1__*" / "videos" / "*.gif"))
    assert (repo / "runs" / "CartPole-v1.png").exists()


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower()).replace("_", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(name: str) -> set:
    text = re.sub(r"^```.*?^```", "", read(name), flags=re.DOTALL | re.MULTILINE)  # no headings in code
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


@pytest.mark.parametrize("name", DOCS)
def test_every_link_points_to_a_file_and_heading_that_exist(name):
    text = re.sub(r"^```.*?^```", "", read(name), flags=re.DOTALL | re.MULTILINE)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        path = path or name
        if not os.path.exists(os.path.join(ROOT, path)):
            broken.append(f"{target}: no file {path}")
        elif anchor and path.endswith(".md") and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path}")
    assert not broken, f"{name}: broken links: {broken}"


def test_the_functions_the_readme_names_exist():
    """The README names where each step lives (`td_target` ... in `dqn.py`): the names must be there."""
    text = read("README.md")
    named = [(script, name) for names, script in re.findall(r"((?:`\w+`(?:,\s+|\s+and\s+)?)+)\s+in\s+`(\w+\.py)`", text)
             for name in re.findall(r"`(\w+)`", names)]
    table = text[text.index("| label | step | where in `dqn.py` |"):]
    table = table[:table.index("\n\n")]
    named += [("dqn.py", name) for cell in re.findall(r"\| `([\w.]+)`[^|]*\|\n", table) for name in cell.split(".")]
    assert len(named) >= 9
    missing = [f"{name} in {script}" for script, name in named
               if not re.search(rf"^\s*(def|class) {name}\b", read(script), flags=re.MULTILINE)]
    assert not missing, f"the README names what is not there: {missing}"
