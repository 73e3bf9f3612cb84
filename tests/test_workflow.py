"""What a student does after the first run: watch the agent (--capture-video), evaluate a saved model
(--eval-only), name and compare runs (--exp-name), and a command line that reads the same in every script."""

import json
import os
import subprocess
import sys
from dataclasses import fields

import pytest
from PIL import Image

from conftest import ROOT, SCRIPTS, tiny_args


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


@pytest.mark.parametrize("name", ["ddpg"])
def test_capture_video_saves_each_evaluation_episode_as_a_gif(name, tmp_path):
    """The video code is the same in every script: one Box env (Pendulum) here, and CartPole through the
    command line below."""
    module = __import__(name)
    settings = next(s for s in SCRIPTS if s.name == name)
    args = tiny_args(settings, tmp_path, env_id="Pendulum-v1", capture_video=True, eval_episodes=2)
    summary = module.train(args)
    evaluation = json.load(open(os.path.join(summary["run_dir"], "eval.json")))
    for episode, episode_return in enumerate(evaluation["returns"]):
        path = os.path.join(summary["run_dir"], "videos", f"episode-{episode}.gif")
        assert os.path.getsize(path) > 0
        with Image.open(path) as gif:
            assert gif.format == "GIF" and gif.n_frames >= 2


def test_eval_only_reproduces_the_final_evaluation(script, runs):
    args, summary = runs(script)
    module = script.module()
    saved = os.path.join(summary["run_dir"], "model.pt")
    again = module.evaluate_saved(module.Args(eval_only=saved))
    assert again["returns"] == json.load(open(os.path.join(summary["run_dir"], "eval.json")))["returns"]
    more = module.evaluate_saved(module.Args(eval_only=saved, eval_episodes=3), given={"eval_episodes"})
    assert len(more["returns"]) == 3


def test_eval_only_refuses_another_scripts_model_or_env(script, runs, capsys):
    args, summary = runs(script)
    saved = os.path.join(summary["run_dir"], "model.pt")
    other = "ppo" if script.name != "ppo" else "dqn"
    wrong = [(__import__(other), {}), (script.module(), {"env_id"})]
    for module, given in wrong:
        with pytest.raises(SystemExit) as stop:
            module.evaluate_saved(module.Args(eval_only=saved, env_id="Acrobot-v1"), given=given)
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and saved in err, err


def test_the_command_line_evaluates_a_saved_model_with_video(tmp_path):
    import dqn
    args = dqn.Args(total_timesteps=300, learning_starts=100, batch_size=16, eval_episodes=1, cuda=False,
                    run_dir=str(tmp_path))
    run_dir = dqn.train(args)["run_dir"]
    model = os.path.join(run_dir, "model.pt")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "dqn.py"), "--eval-only", model,
                             "--eval-episodes", "2", "--capture-video"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "over 2 episodes" in result.stdout
    assert sorted(os.listdir(os.path.join(run_dir, "videos"))) == ["episode-0.gif", "episode-1.gif"]


def test_exp_name_names_the_run_folder_and_args_json_records_the_machine(script, runs):
    args, summary = runs(script)
    assert os.path.basename(summary["run_dir"]).split("__")[:3] == [args.env_id, "lr_test", str(args.seed)]
    saved = json.load(open(os.path.join(summary["run_dir"], "args.json")))
    assert saved["exp_name"] == "lr_test" and saved["script"] == script.name and saved["device"] == "cpu"
    for key in ("python", "torch", "gymnasium", "numpy", "cpu"):
        assert saved[key], key


def test_every_boolean_is_a_flag_pair(script, monkeypatch):
    """--x turns a setting on and --no-x off, in every script, per-env defaults included."""
    module = script.module()
    booleans = [field.name for field in fields(module.Args) if field.type in (bool, "bool")]
    assert "cuda" in booleans and "capture_video" in booleans
    for name in booleans:
        flag = name.replace("_", "-")
        for argv, expected in (([f"--{flag}"], True), ([f"--no-{flag}"], False)):
            monkeypatch.setattr(sys, "argv", [f"{script.name}.py", *argv])
            args, given = module.parse_command_line()
            assert getattr(args, name) is expected and name in given


def test_per_env_defaults_are_filled_before_parsing(script, monkeypatch, capsys):
    """The command line (and so --help) shows the values a run would use, not None."""
    module = script.module()
    for env_id in script.smoke_envs:
        monkeypatch.setattr(sys, "argv", [f"{script.name}.py", "--env-id", env_id])
        args, _ = module.parse_command_line()
        assert None not in [getattr(args, field.name) for field in fields(module.Args)]
        table = getattr(module, "ENV_DEFAULTS", {})
        for key, value in table.get(env_id, {}).items():
            assert getattr(args, key) == value


@pytest.mark.parametrize("name", ["a2c", "ppo", "trpo", "a3c", "reinforce"])
def test_an_env_without_a_row_says_which_row_it_borrowed(name, monkeypatch, capsys):
    module = __import__(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--env-id", "Acrobot-v1"])
    args, _ = module.parse_command_line()
    out = capsys.readouterr().out
    assert "defaults for CartPole-v1 (Acrobot-v1 has no row" in out, out
    assert args.gamma == module.ENV_DEFAULTS["CartPole-v1"]["gamma"]
