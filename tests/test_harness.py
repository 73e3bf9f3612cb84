"""Tests every algorithm script passes: smoke training, run folder contents, CLI errors, seeds, Ctrl-C."""

import glob
import json
import math
import os

import pytest
import torch

from conftest import cli_result, read_csv, tiny_args

EPISODE_COLUMNS = ["global_step", "episodic_return", "episodic_length", "wall_time"]


def assert_one_line_error(result, *words):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def csv_header(path) -> list:
    with open(path) as f:
        return f.readline().strip().split(",")


def check_run_folder(run_dir, args, summary, interrupted=False):
    """The files every run writes, with the conventions' columns."""
    assert json.load(open(os.path.join(run_dir, "args.json")))["seed"] == args.seed
    assert csv_header(os.path.join(run_dir, "episodes.csv")) == EPISODE_COLUMNS
    episodes = read_csv(os.path.join(run_dir, "episodes.csv"))
    assert episodes, "no training episode was logged"
    steps = [int(row["global_step"]) for row in episodes]
    assert steps == sorted(steps) and steps[-1] <= summary["global_step"]
    assert all(math.isfinite(float(row["episodic_return"])) for row in episodes)
    header = csv_header(os.path.join(run_dir, "metrics.csv"))
    assert header[0] == "global_step" and len(header) >= 2
    if not interrupted:
        metrics = read_csv(os.path.join(run_dir, "metrics.csv"))
        assert metrics, "no metrics row was logged"
        assert all(math.isfinite(float(value)) for value in metrics[-1].values())
    checkpoint = torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)
    assert checkpoint["args"]["env_id"] == args.env_id
    assert not glob.glob(os.path.join(run_dir, "*.tmp")), "a half-written file was left behind"


def watch_optimizers(monkeypatch) -> dict:
    """{id of an optimizer: its calls of step and zero_grad, in order}, for every Adam optimizer."""
    events = {}
    step, zero_grad = torch.optim.Adam.step, torch.optim.Optimizer.zero_grad

    def logged_step(self, *args, **kwargs):
        events.setdefault(id(self), []).append("step")
        return step(self, *args, **kwargs)

    def logged_zero_grad(self, *args, **kwargs):
        events.setdefault(id(self), []).append("zero_grad")
        return zero_grad(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", logged_step)
    monkeypatch.setattr(torch.optim.Optimizer, "zero_grad", logged_zero_grad)
    return events


def test_smoke_train(script, tmp_path, monkeypatch):
    """A tiny run of each script on its envs: its summary and files; and every gradient step follows a
    fresh gradient: between two steps of an optimizer its gradients were cleared (zero_grad), or each
    step would follow the sum of every gradient so far. (a3c's workers fill the shared optimizer's
    gradients from their own copies: tests/test_a3c.py checks those.)"""
    for env_id in script.smoke_envs:
        args = tiny_args(script, tmp_path / env_id, env_id=env_id)
        events = watch_optimizers(monkeypatch)
        summary = script.module().train(args)
        if script.name != "a3c":
            stepped = [calls for calls in events.values() if "step" in calls]
            assert stepped, "no optimizer step was taken"
            for calls in stepped:
                between_steps = " ".join(calls).split("step")[1:-1]
                assert all("zero_grad" in between for between in between_steps), calls[:12]
        assert set(summary) == {"eval_mean", "eval_std", "global_step", "sps", "run_dir"}
        assert summary["global_step"] == args.total_timesteps
        assert math.isfinite(summary["eval_mean"]) and summary["sps"] > 0
        check_run_folder(summary["run_dir"], args, summary)
        evaluation = json.load(open(os.path.join(summary["run_dir"], "eval.json")))
        assert evaluation["episodes"] == args.eval_episodes == len(evaluation["returns"])
        assert evaluation["mean"] == pytest.approx(sum(evaluation["returns"]) / args.eval_episodes)
        assert evaluation["global_step"] == summary["global_step"]
        assert evaluation["sps"] > 0 and evaluation["wall_time"] > 0


def test_same_seed_same_returns(script, tmp_path):
    if not script.deterministic:
        pytest.skip(f"{script.name} is asynchronous and not bit-reproducible")

    def returns(seed, folder):
        run_dir = script.module().train(tiny_args(script, tmp_path / folder, seed=seed))["run_dir"]
        return [list(row.values())[:3] for row in read_csv(os.path.join(run_dir, "episodes.csv"))]

    first, again, other = returns(3, "a"), returns(3, "b"), returns(4, "c")
    assert len(first) >= 3
    assert first == again
    assert first != other, "the seed has no effect"


@pytest.mark.parametrize("setting", [dict(learning_rate=-1.0), dict(total_timesteps=0)])
def test_nonsense_setting(script, tmp_path, capsys, setting):
    with pytest.raises(SystemExit) as stop:
        script.module().train(tiny_args(script, tmp_path, **setting))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and list(setting)[0] in err, err


# ---------------------------------------------------------------------------------------------------
# The command line, through subprocesses started in the background at the beginning of the session
# (conftest.cli_results), so that they use the second core while the in-process tests use the first.
# ---------------------------------------------------------------------------------------------------
def test_help(script, cli_results):
    result, _ = cli_result(cli_results, script, "help")
    assert result.returncode == 0, result.stderr
    assert "--env-id" in result.stdout and "--total-timesteps" in result.stdout


def test_wrong_action_space(script, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        script.module().train(tiny_args(script, tmp_path, env_id=script.wrong_env))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in (script.wrong_env, *script.suggested):
        assert word in err, err
    assert not os.listdir(tmp_path), "a rejected run must not leave a run folder"


def test_unknown_env_id(script, cli_results):
    result, cwd = cli_result(cli_results, script, "unknown_env_id")
    assert_one_line_error(result, "CartPol-v1", "CartPole")
    assert not os.path.exists(os.path.join(cwd, "runs")), "a rejected run must not leave a run folder"


def test_a_seed_outside_the_range_numpy_takes_is_one_line(script, cli_results, tmp_path, capsys):
    """--seed -3 ended in a numpy traceback (exit 1); numpy seeds lie in [0, 2**32)."""
    if script.name == "dqn":
        result, cwd = cli_result(cli_results, script, "negative_seed")
        assert_one_line_error(result, "seed", "-3")
        assert not os.path.exists(os.path.join(cwd, "runs")), "a rejected run must not leave a folder"
    for seed in (-3, 2**32):
        with pytest.raises(SystemExit) as stop:
            script.module().train(tiny_args(script, tmp_path, seed=seed))
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and len(err.splitlines()) == 1 and str(seed) in err, err
    assert not os.listdir(tmp_path), "a rejected run must not leave a run folder"


def test_ctrl_c_saves_and_exits_130(script, cli_results):
    """Ctrl-C in the middle of training: exit status 130, the model and the logs kept, the folder printed."""
    (returncode, out, err, episodes), cwd = cli_result(cli_results, script, "ctrl_c")
    assert returncode == 130, err
    assert "Traceback" not in err
    (run_dir,) = glob.glob(str(cwd / "runs" / "*"))
    assert os.path.relpath(run_dir, cwd) in out, "the run folder was not printed"
    saved = json.load(open(os.path.join(run_dir, "args.json")))
    args = script.module().Args(**{key: value for key, value in saved.items() if key in script.module().Args.__dataclass_fields__})
    check_run_folder(run_dir, args, {"global_step": 100000000}, interrupted=True)
    assert len(read_csv(os.path.join(run_dir, "episodes.csv"))) >= len(episodes)
    assert not os.path.exists(os.path.join(run_dir, "eval.json")), "an interrupted run has no evaluation"

