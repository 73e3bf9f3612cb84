"""plots/teaching.py's Rainbow ablation (teaching_rainbow_ablation.png): the full agent against each part turned
off by its flag. Apart from tests/test_plots.py so that only this file names rainbow.py there: mutate.py runs
every test file that names a script on each of its mutants."""

import json
import os
import re
import sys

import rainbow
from conftest import ROOT
from test_plots import fake_run

sys.path.insert(0, os.path.join(ROOT, "plots"))
import teaching  # noqa: E402

# experiment name: the settings of its run that differ from rainbow.py's defaults
ABLATION = {"rainbow": {}, "rainbow-no-double": {"double": False}, "rainbow-no-dueling": {"dueling": False},
            "rainbow-no-per": {"per": False}, "rainbow-n-step-1": {"n_step": 1},
            "rainbow-no-distributional": {"distributional": False}, "rainbow-no-noisy": {"noisy": False}}
TINY_RAINBOW = dict(learning_starts=100, batch_size=16, buffer_size=300, hidden_size=16, target_network_frequency=100,
                    log_frequency=100, eval_episodes=1)


def test_the_ablation_turns_off_the_parts_of_rainbows_table():
    """Each variant of the figure is one row of rainbow.py's ablation table, and every row has its variant."""
    table = re.findall(r"^  (--[a-z-]+(?: 1)?)\s+RAINBOW-\d", rainbow.__doc__, flags=re.MULTILINE)
    flags = [teaching.command_line_flags(off) for off, _ in teaching.ABLATION_PARTS.values()]
    assert sorted(flags) == sorted(table) and len(table) == 6
    assert {teaching.ABLATION_FULL, *teaching.ABLATION_PARTS} == set(ABLATION)


def test_rainbow_ablation_trains_the_missing_runs_once_and_draws_them(tmp_path, capsys):
    """At 300 steps and one seed: without runs and without training, one line and no figure; with training, the
    7 runs, each with its part off and the others on, and the figure; called again, the same runs, none
    trained; at another budget none of them counts."""
    out, run_dir = tmp_path / "png", tmp_path / "ablation"
    out.mkdir()
    assert teaching.rainbow_ablation(str(out), str(run_dir), 300, seeds=(1,), settings=TINY_RAINBOW) == {}
    assert "teaching_rainbow_ablation.png: skipped, no finished rainbow.py runs of 300 steps under " \
           f"{run_dir}" in capsys.readouterr().out
    assert not os.listdir(out)

    results = teaching.rainbow_ablation(str(out), str(run_dir), 300, seeds=(1,), settings=TINY_RAINBOW, train=True)
    assert os.path.getsize(out / "teaching_rainbow_ablation.png") > 10_000
    assert sorted(results) == sorted(ABLATION)
    assert sorted(name.split("__")[1] for name in os.listdir(run_dir)) == sorted(ABLATION)
    assert capsys.readouterr().out.count(": trained 300 steps in ") == 7
    defaults = rainbow.Args()
    for name, runs in results.items():
        assert [run.seed for run in runs] == [1] and runs[0].evaluation["global_step"] == 300
        args = json.load(open(os.path.join(runs[0].path, "args.json")))
        changed = {key: args[key] for key in ("double", "dueling", "per", "n_step", "distributional", "noisy")
                   if args[key] != getattr(defaults, key)}
        assert (args["exp_name"], args["env_id"], changed) == (name, "CartPole-v1", ABLATION[name])

    folders = sorted(os.listdir(run_dir))
    again = teaching.rainbow_ablation(str(out), str(run_dir), 300, seeds=(1,), settings=TINY_RAINBOW, train=True)
    assert {name: [run.path for run in runs] for name, runs in again.items()} == \
        {name: [run.path for run in runs] for name, runs in results.items()}
    assert sorted(os.listdir(run_dir)) == folders and "trained" not in capsys.readouterr().out
    assert teaching.ablation_experiment(str(run_dir), 400, seeds=(1,), settings=TINY_RAINBOW) == {}


def test_without_ablation_runs_main_skips_the_figure_with_one_line(tmp_path, monkeypatch, capsys):
    """No rainbow.py runs under RUN_DIR/rainbow_ablation and no --ablation-train: one line, no figure."""
    run_dir, out = tmp_path / "runs", tmp_path / "png"
    fake_run(run_dir, "CartPole-v1", "dqn", 1, 1, [10.0, 20.0], eval_mean=20.0, exp_name="dqn")
    monkeypatch.setattr(sys, "argv", ["teaching.py", "--run-dir", str(run_dir), "--out", str(out)])
    teaching.main()
    assert f"{out / 'teaching_rainbow_ablation.png'}: skipped, no finished rainbow.py runs of 100,000 steps under " \
           f"{run_dir / 'rainbow_ablation'}" in capsys.readouterr().out
    assert not os.path.exists(out / "teaching_rainbow_ablation.png")
