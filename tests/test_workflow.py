"""What a student does after the first run: evaluate a saved model again and watch it (evaluate.py), name
and compare runs (--exp-name), and a command line that reads the same in every script."""

import glob
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import fields

import gymnasium as gym
import pytest
from PIL import Image

from conftest import ROOT, SCRIPTS, tiny_args

import evaluate  # noqa: E402  (ROOT is on sys.path through conftest)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{script name: (args, summary)} of one tiny training run per script, on its first smoke env, with an
    experiment name; trained once, read by the tests below."""
    done = {}

    def trained(script):
        if script.name not in done:
            args = tiny_args(script, tmp_path_factory.mktemp(script.name), env_id=script.smoke_envs[0],
                             exp_name="lr_test", eval_episodes=2)
            done[script.name] = args, script.module().train(args)
        return done[script.name]
    return trained


def test_evaluate_reproduces_the_final_evaluation_in_a_folder_of_its_own(script, runs, tmp_path, capsys):
    args, summary = runs(script)
    model = os.path.join(summary["run_dir"], "model.pt")
    before = sorted(os.listdir(summary["run_dir"]))
    (again,) = evaluate.main([model, "--out", str(tmp_path), "--no-cuda"])
    assert again["returns"] == json.load(open(os.path.join(summary["run_dir"], "eval.json")))["returns"]
    assert sorted(os.listdir(summary["run_dir"])) == before, "the evaluation wrote into the training run"
    assert os.path.dirname(again["folder"]) == str(tmp_path)
    written = json.load(open(os.path.join(again["folder"], "eval.json")))
    assert written["returns"] == again["returns"] and written["first_seed"] == script.module().TEST_SEED
    assert written["script"] == script.name and written["env_id"] == args.env_id
    out = capsys.readouterr().out
    assert "episode 1/2" in out and "episode 2/2" in out, "no progress line per episode"
    (more,) = evaluate.main([summary["run_dir"], "--episodes", "3", "--seed", "7", "--out", str(tmp_path)])
    assert more["first_seed"] == 7 == json.load(open(os.path.join(more["folder"], "eval.json")))["first_seed"]
    (shifted,) = evaluate.main([summary["run_dir"], "--episodes", "1", "--seed", str(script.module().TEST_SEED + 1),
                                "--out", str(tmp_path)])
    # the same start state; a batch of one may round a continuous action's last digits differently
    assert shifted["returns"] == pytest.approx(again["returns"][1:2], rel=1e-6), "--seed S must start at env seed S"
    (zero,) = evaluate.main([summary["run_dir"], "--episodes", "1", "--seed", "0", "--out", str(tmp_path)])
    assert zero["first_seed"] == 0
    assert len(more["returns"]) == 3 and more["folder"] != again["folder"]


def test_evaluate_saves_each_episode_as_a_gif(tmp_path):
    """The video code is the tool's, the same for every script: one Box env (Pendulum) here, CartPole
    through the command line below."""
    settings = next(s for s in SCRIPTS if s.name == "ddpg")
    summary = settings.module().train(tiny_args(settings, tmp_path / "runs", eval_episodes=2))
    (result,) = evaluate.main([os.path.join(summary["run_dir"], "model.pt"), "--capture-video",
                               "--out", str(tmp_path / "eval")])
    assert not os.path.exists(os.path.join(summary["run_dir"], "videos"))
    for episode in range(2):
        with Image.open(os.path.join(result["folder"], "videos", f"episode-{episode}.gif")) as gif:
            assert gif.format == "GIF" and gif.n_frames >= 2


def test_evaluate_on_the_command_line_with_a_pattern(tmp_path):
    import dqn
    dqn.train(dqn.Args(total_timesteps=300, learning_starts=100, batch_size=16, eval_episodes=1, cuda=False,
                       run_dir=str(tmp_path / "runs")))
    pattern = str(tmp_path / "runs" / "CartPole-v1__dqn__1__*" / "model.pt")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), pattern, "--episodes", "2",
                             "--capture-video"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "episode 2/2" in result.stdout and "over 2 episodes" in result.stdout
    (folder,) = glob.glob(str(tmp_path / "runs" / "eval" / "CartPole-v1__dqn__1__*"))
    assert sorted(os.listdir(os.path.join(folder, "videos"))) == ["episode-0.gif", "episode-1.gif"]


@pytest.mark.parametrize("what", ["README.md", "missing.pt", "a pickle"])
def test_evaluate_refuses_what_is_not_our_model_with_one_line(what, tmp_path, capsys):
    path = os.path.join(ROOT, what) if what == "README.md" else str(tmp_path / what)
    if what == "a pickle":
        import torch
        torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(SystemExit) as stop:
        evaluate.main([path, "--out", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and path in err and "weights_only" not in err, err


def test_exp_name_names_the_run_folder_and_args_json_records_the_script(script, runs):
    args, summary = runs(script)
    assert os.path.basename(summary["run_dir"]).split("__")[:3] == [args.env_id, "lr_test", str(args.seed)]
    saved = json.load(open(os.path.join(summary["run_dir"], "args.json")))
    assert saved["exp_name"] == "lr_test" and saved["script"] == script.name
    assert saved["total_timesteps"] == summary["global_step"], "args.json holds the budget the run trained"


def parse(module, argv: list, monkeypatch):
    """Args as the script's command line gives them (with its per-env defaults, where it has them)."""
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *argv])
    return module.parse_command_line()


def test_every_boolean_is_a_flag_pair(script, monkeypatch):
    """--x turns a setting on and --no-x off, in every script, per-env defaults included."""
    module = script.module()
    booleans = [field.name for field in fields(module.Args) if field.type in (bool, "bool")]
    assert "cuda" in booleans
    for name in booleans:
        flag = name.replace("_", "-")
        for argv, expected in (([f"--{flag}"], True), ([f"--no-{flag}"], False)):
            assert getattr(parse(module, argv, monkeypatch), name) is expected


PER_ENV = [s for s in SCRIPTS if hasattr(s.module(), "ENV_DEFAULTS")]
# A game of each namespace that a row stands for (SHARED_ROWS), and the optional package that brings its envs
NAMESPACE_GAMES = {"MinAtar/": ("MinAtar/Breakout-v1", "minatar"), "ALE/": ("ALE/Pong-v5", "ale_py")}


@pytest.mark.parametrize("script", PER_ENV, ids=[s.name for s in PER_ENV])
def test_per_env_defaults_fill_what_the_command_line_leaves_and_say_so(script, capsys, monkeypatch):
    """Filled in before parsing, so that --help shows the values a run would use, not None. A row shared by
    several tasks (SHARED_ROWS: "MuJoCo") is tried on its first task, a namespace's row ("MinAtar", "Atari") on
    one of its games, when its optional package is installed."""
    module = script.module()
    for row in module.ENV_DEFAULTS:
        task = module.SHARED_ROWS[row][0] if row in module.SHARED_ROWS else None
        env_id = f"{task}-v5" if task else row
        if task in NAMESPACE_GAMES:
            env_id, package = NAMESPACE_GAMES[task]
            if importlib.util.find_spec(package) is None:
                continue
        args = parse(module, ["--env-id", env_id, "--total-timesteps=1234"], monkeypatch)
        assert None not in [getattr(args, field.name) for field in fields(module.Args)
                            if field.name not in ("eval_episodes", "eval_every")]  # Run fills these in
        assert args.total_timesteps == 1234, "a setting given on the command line was overwritten"
        for key, value in module.ENV_DEFAULTS[row].items():
            assert key == "total_timesteps" or getattr(args, key) == value
        assert args.settings_row == {"row": row, "tuned_on": args.settings_row["tuned_on"], "borrowed": False}
        out = capsys.readouterr().out
        assert out.startswith(f"defaults for {row}: ") and "total_timesteps" not in out, out
        assert "warning" not in out, out


UNKNOWN_DISCRETE = {"rainbow": "MountainCar-v0"}  # rainbow has a row for Acrobot-v1


@pytest.mark.parametrize("name", ["a2c", "ppo", "trpo", "a3c", "reinforce", "rainbow"])
def test_an_env_without_a_row_says_which_row_it_borrowed(name, capsys):
    """A clear warning, not a word at the end of a line: the env, the row it borrowed, the env that row was tuned
    on (tests/test_mujoco.py checks the same for the Box scripts and the record in args.json)."""
    module = __import__(name)
    env_id = UNKNOWN_DISCRETE.get(name, "Acrobot-v1")
    args = module.with_env_defaults(module.Args(env_id=env_id), gym.make(env_id))
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and env_id in warnings[0] and "row CartPole-v1" in warnings[0], out
    assert "tuned on CartPole-v1" in warnings[0], out
    assert args.settings_row == {"row": "CartPole-v1", "tuned_on": "CartPole-v1", "borrowed": True}
    assert args.total_timesteps == module.ENV_DEFAULTS["CartPole-v1"]["total_timesteps"]
    # once: a second pass (train() after the command line's) does not warn again
    module.with_env_defaults(args, gym.make(env_id))
    assert "warning" not in capsys.readouterr().out


ROLLOUTS = [s for s in SCRIPTS if hasattr(s.module(), "whole_rollouts")]


@pytest.mark.parametrize("script", ROLLOUTS, ids=[s.name for s in ROLLOUTS])
def test_a_budget_of_part_of_a_rollout_is_rounded_up_with_one_line(script, tmp_path, capsys):
    """ppo.py trained 28,672 steps when asked for 30,000; now it rounds up to whole rollouts and says so."""
    module = script.module()
    rollout = script.tiny["num_envs"] * script.tiny["num_steps"]
    asked = 3 * rollout + 1
    summary = module.train(tiny_args(script, tmp_path, total_timesteps=asked))
    assert summary["global_step"] == 4 * rollout
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "rounded up" in line] == [
        f"total_timesteps {asked:,} rounded up to {4 * rollout:,}, whole rollouts of num_envs × num_steps"
        f" = {script.tiny['num_envs']} × {script.tiny['num_steps']} = {rollout:,} steps"]
    capsys.readouterr()
    module.train(tiny_args(script, tmp_path, total_timesteps=4 * rollout))
    assert "rounded" not in capsys.readouterr().out, "a whole number of rollouts is not rounded"
