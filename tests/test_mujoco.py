"""The MuJoCo locomotion tasks (issue 28): every script that takes Box actions has one "MuJoCo" row in ENV_DEFAULTS,
shared by Hopper, HalfCheetah, Walker2d, Ant, Swimmer and Humanoid of any version; Pendulum-v1 keeps exactly the
values it had; an env without a row borrows the tuned row of its kind of action space with a "warning:" line and a
record in args.json; and each script trains a few hundred steps on Hopper-v5. No MuJoCo result is measured here."""

import json
import os
import sys

import gymnasium as gym
import pytest
import torch

from conftest import read_csv

BOX_SCRIPTS = ["ddpg", "td3", "sac", "ppo", "trpo", "a2c", "a3c", "reinforce"]
TASKS = ("Hopper", "HalfCheetah", "Walker2d", "Ant", "Swimmer", "Humanoid")
RECORD = {"row": "MuJoCo", "tuned_on": ", ".join(TASKS), "borrowed": False}
IMAGE_ROWS = {"ppo": {"MinAtar": ("MinAtar/",), "Atari": ("ALE/",)}}  # the rows of its images (tests/test_pixels.py)

# What each script resolves on a MuJoCo task with no other flag: the row and the plain defaults that mean the same
# there, written out here (not read from the scripts) so that an edit of a row fails until this is edited too.
# ddpg, td3 and sac share networks, batch, warm-up and budget; see each script's ENV_DEFAULTS for the origins.
OFF_POLICY = dict(total_timesteps=1_000_000, learning_rate=3e-4, buffer_size=1_000_000, gamma=0.99, tau=0.005,
                  batch_size=256, hidden_size=256, learning_starts=10_000, torch_threads=2)
MUJOCO = {
    "ddpg": dict(OFF_POLICY, exploration_noise=0.1),
    "td3": dict(OFF_POLICY, exploration_noise=0.1, policy_noise=0.2, noise_clip=0.5, policy_frequency=2),
    "sac": dict(OFF_POLICY, autotune=True, alpha=1.0),
    "ppo": dict(total_timesteps=999_424, learning_rate=3e-4, anneal_lr=True, num_envs=1, num_steps=2048, gamma=0.99,
                gae_lambda=0.95, hidden_size=64, log_std_init=0.0, norm_obs=True, norm_reward=True, norm_adv=True,
                ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, update_epochs=10, num_minibatches=32, clip_coef=0.2),
    "trpo": dict(total_timesteps=1_001_472, learning_rate=1e-3, num_envs=2, num_steps=1024, gamma=0.99,
                 gae_lambda=0.95, hidden_size=64, log_std_init=0.0, norm_obs=True, norm_reward=True, norm_adv=True,
                 max_kl=0.01, anneal_max_kl=False, cg_iters=25, cg_damping=0.1, backtrack_iters=10,
                 backtrack_coef=0.8, update_epochs=20, num_minibatches=16),
    "a2c": dict(total_timesteps=1_000_000, learning_rate=7e-4, num_envs=1, num_steps=5, gamma=0.99, gae_lambda=1.0,
                hidden_size=64, log_std_init=0.0, norm_obs=True, norm_reward=True, norm_adv=False, ent_coef=0.0,
                vf_coef=0.5, max_grad_norm=0.5),
    "a3c": dict(total_timesteps=1_000_000, learning_rate=7e-4, num_steps=5, gamma=0.99, gae_lambda=1.0,
                hidden_size=64, log_std_init=0.0, norm_reward=True, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5),
    "reinforce": dict(total_timesteps=1_000_000, learning_rate=3e-4, num_episodes=4, gamma=0.99, hidden_size=64,
                      log_std_init=-0.5, norm_obs=False, norm_reward=False, norm_adv=True),
}

# Every setting but the run's plumbing, as main resolved it on Pendulum-v1 before issue 28 (`git show main:ddpg.py`
# and the ENV_DEFAULTS of the others): Pendulum-v1 must resolve to exactly these values.
PENDULUM = {
    "ddpg": {'total_timesteps': 15000, 'learning_rate': 0.001, 'buffer_size': 200000, 'gamma': 0.98, 'tau': 0.005,
             'batch_size': 128, 'hidden_size': 64, 'learning_starts': 5000, 'exploration_noise': 0.1,
             'log_frequency': 500},
    "td3": {'total_timesteps': 15000, 'learning_rate': 0.001, 'buffer_size': 200000, 'gamma': 0.98, 'tau': 0.005,
            'batch_size': 128, 'hidden_size': 64, 'learning_starts': 5000, 'exploration_noise': 0.1,
            'policy_noise': 0.2, 'noise_clip': 0.5, 'policy_frequency': 2, 'log_frequency': 500},
    "sac": {'total_timesteps': 15000, 'learning_rate': 0.001, 'buffer_size': 200000, 'gamma': 0.98, 'tau': 0.005,
            'batch_size': 128, 'hidden_size': 64, 'learning_starts': 5000, 'autotune': True, 'alpha': 0.2,
            'log_frequency': 500},
    "ppo": {'total_timesteps': 147456, 'learning_rate': 0.001, 'anneal_lr': True, 'num_envs': 4, 'num_steps': 1024,
            'gamma': 0.9, 'gae_lambda': 0.95, 'hidden_size': 64, 'log_std_init': 0.0, 'norm_obs': False,
            'norm_reward': False, 'norm_adv': True, 'ent_coef': 0.0, 'vf_coef': 0.5, 'max_grad_norm': 0.5,
            'update_epochs': 10, 'num_minibatches': 64, 'clip_coef': 0.2, 'log_frequency': 2000},
    "a2c": {'total_timesteps': 499968, 'learning_rate': 0.003, 'anneal_lr': True, 'num_envs': 8, 'num_steps': 8,
            'gamma': 0.9, 'gae_lambda': 0.9, 'hidden_size': 64, 'log_std_init': 0.0, 'bound_mean': True,
            'norm_obs': False, 'norm_reward': True, 'norm_adv': False, 'ent_coef': 0.01, 'vf_coef': 0.5,
            'max_grad_norm': 0.5, 'log_frequency': 2000},
    "a3c": {'total_timesteps': 300000, 'learning_rate': 0.001, 'anneal_lr': True, 'num_workers': 2, 'num_steps': 8,
            'gamma': 0.9, 'gae_lambda': 0.9, 'hidden_size': 64, 'log_std_init': 0.0, 'bound_mean': True,
            'norm_reward': True, 'ent_coef': 0.01, 'vf_coef': 0.5, 'max_grad_norm': 0.5, 'log_frequency': 2000},
    "trpo": {'total_timesteps': 200704, 'learning_rate': 0.001, 'num_envs': 2, 'num_steps': 1024, 'gamma': 0.9,
             'gae_lambda': 0.95, 'hidden_size': 64, 'log_std_init': 0.0, 'norm_obs': True, 'norm_reward': True,
             'norm_adv': True, 'max_kl': 0.01, 'anneal_max_kl': True, 'cg_iters': 15, 'cg_damping': 0.1,
             'backtrack_iters': 10, 'backtrack_coef': 0.8, 'update_epochs': 15, 'num_minibatches': 16,
             'log_frequency': 2000},
    "reinforce": {'total_timesteps': 1000000, 'learning_rate': 0.003, 'anneal_lr': True, 'num_episodes': 2,
                  'gamma': 0.9, 'baseline': True, 'hidden_size': 64, 'log_std_init': 0.0, 'bound_mean': True,
                  'norm_obs': False, 'norm_reward': True, 'norm_adv': True, 'log_frequency': 2000},
}
PLUMBING = {"env_id", "seed", "cuda", "torch_deterministic", "torch_threads", "eval_episodes", "eval_every",
            "run_dir", "save_model", "exp_name", "settings_row"}

# A few hundred steps, a small rollout or warm-up, one evaluation episode; the row's networks otherwise
SMALL = {
    "ddpg": dict(total_timesteps=300, learning_starts=200, batch_size=32, buffer_size=1_000, log_frequency=50),
    "td3": dict(total_timesteps=300, learning_starts=200, batch_size=32, buffer_size=1_000, log_frequency=50),
    "sac": dict(total_timesteps=300, learning_starts=200, batch_size=32, buffer_size=1_000, log_frequency=50),
    "ppo": dict(total_timesteps=320, num_envs=1, num_steps=64, update_epochs=2, num_minibatches=2, log_frequency=64),
    "trpo": dict(total_timesteps=384, num_envs=2, num_steps=64, update_epochs=2, num_minibatches=2,
                 log_frequency=128),
    "a2c": dict(total_timesteps=300, num_envs=1, num_steps=5, log_frequency=50),
    "a3c": dict(total_timesteps=300, num_workers=1, num_steps=5, log_frequency=50),
    "reinforce": dict(total_timesteps=300, num_episodes=2, log_frequency=50),
}
RUN = dict(eval_episodes=1, eval_every=150, cuda=False)


def module(name):
    return __import__(name)


def parse(mod, argv: list, monkeypatch):
    monkeypatch.setattr(sys, "argv", [f"{mod.__name__}.py", *argv])
    return mod.parse_command_line()


def flags(settings: dict) -> list:
    return [part for key, value in settings.items() for part in (f"--{key.replace('_', '-')}", str(value))]


def resolved(args) -> dict:
    return {key: value for key, value in vars(args).items() if key not in PLUMBING}


def test_every_box_script_has_the_one_shared_mujoco_row():
    for name in BOX_SCRIPTS:
        mod = module(name)
        images = IMAGE_ROWS.get(name, {})
        others = [row for row in mod.ENV_DEFAULTS if row not in ("CartPole-v1", "Pendulum-v1", *images)]
        assert others == ["MuJoCo"], name
        assert mod.SHARED_ROWS == {"MuJoCo": TASKS, **images}, name
        assert mod.TUNED_ON[gym.spaces.Box] == "Pendulum-v1", name


@pytest.mark.parametrize("name", BOX_SCRIPTS)
@pytest.mark.parametrize("env_id", ["Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"])
def test_a_mujoco_task_takes_the_mujoco_row_with_no_other_flag(name, env_id, capsys, monkeypatch):
    mod = module(name)
    args = parse(mod, ["--env-id", env_id], monkeypatch)
    out = capsys.readouterr().out
    assert out.startswith("defaults for MuJoCo: ") and "warning" not in out, out
    assert {key: getattr(args, key) for key in MUJOCO[name]} == MUJOCO[name]
    assert {key: getattr(args, key) for key in mod.ENV_DEFAULTS["MuJoCo"]} == mod.ENV_DEFAULTS["MuJoCo"]
    assert args.settings_row == RECORD
    # the same in-process, as the tests and the benchmark call train(Args(...))
    assert resolved(mod.with_env_defaults(mod.Args(env_id=env_id), gym.make(env_id))) == resolved(args)


@pytest.mark.parametrize("name", BOX_SCRIPTS)
def test_any_version_of_the_six_tasks_takes_the_mujoco_row_and_no_other_task_does(name):
    """The part of the id before "-v" picks the row: Hopper-v4 too; HumanoidStandup-v5 is another task."""
    mod = module(name)
    hopper = gym.make("Hopper-v5")
    for env_id in [f"{task}-v4" for task in TASKS] + [f"{task}-v5" for task in TASKS]:
        assert mod.with_env_defaults(mod.Args(env_id=env_id), hopper).settings_row == RECORD, env_id
    standup = mod.with_env_defaults(mod.Args(env_id="HumanoidStandup-v5"), hopper)
    assert standup.settings_row == {"row": "Pendulum-v1", "tuned_on": "Pendulum-v1", "borrowed": True}


@pytest.mark.parametrize("name", BOX_SCRIPTS)
def test_pendulum_keeps_exactly_the_values_it_had(name, capsys, monkeypatch):
    mod = module(name)
    args = parse(mod, ["--env-id", "Pendulum-v1"], monkeypatch)
    assert resolved(args) == PENDULUM[name]
    assert args.settings_row == {"row": "Pendulum-v1", "tuned_on": "Pendulum-v1", "borrowed": False}
    assert "warning" not in capsys.readouterr().out
    if name in ("ddpg", "td3", "sac"):  # their default env: no flag at all; one torch thread for its small networks
        assert resolved(parse(mod, [], monkeypatch)) == PENDULUM[name]
        assert args.torch_threads == 1


@pytest.mark.parametrize("name", BOX_SCRIPTS)
def test_an_env_without_a_row_borrows_pendulum_with_a_warning_and_a_record(name, tmp_path, capsys, monkeypatch):
    """InvertedPendulum-v5 (a MuJoCo env, but not one of the six tasks) takes the Pendulum-v1 row: one line starting
    with "warning:" names the env, the row and the env it was tuned on, once (the command line's parse, then
    train()), and args.json records it."""
    mod = module(name)
    small = {key: value for key, value in SMALL[name].items() if key != "total_timesteps"}
    argv = ["--env-id", "InvertedPendulum-v5", "--total-timesteps", "300", "--run-dir", str(tmp_path),
            *flags(dict(small, eval_episodes=1, eval_every=0)), "--no-cuda"]
    args = parse(mod, argv, monkeypatch)
    assert {key: getattr(args, key) for key in mod.ENV_DEFAULTS["Pendulum-v1"] if key not in SMALL[name]} == \
        {key: value for key, value in mod.ENV_DEFAULTS["Pendulum-v1"].items() if key not in SMALL[name]}
    summary = mod.train(args)
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: InvertedPendulum-v5 has no row in ENV_DEFAULTS: its per-env defaults come from "
                        "the row Pendulum-v1, tuned on Pendulum-v1, not on InvertedPendulum-v5"], out
    saved = json.load(open(os.path.join(summary["run_dir"], "args.json")))
    assert saved["settings_row"] == {"row": "Pendulum-v1", "tuned_on": "Pendulum-v1", "borrowed": True}


@pytest.mark.parametrize("name", BOX_SCRIPTS)
def test_a_few_hundred_steps_on_hopper_write_the_run_folder(name, tmp_path, capsys):
    mod = module(name)
    summary = mod.train(mod.Args(env_id="Hopper-v5", run_dir=str(tmp_path), **SMALL[name], **RUN))
    assert "warning" not in capsys.readouterr().out
    folder = summary["run_dir"]
    assert os.path.basename(folder).startswith(f"Hopper-v5__{name}__1__")
    assert {"args.json", "episodes.csv", "metrics.csv", "eval_curve.csv", "eval.json", "model.pt"} <= set(
        os.listdir(folder))
    saved = json.load(open(os.path.join(folder, "args.json")))
    assert saved["settings_row"] == RECORD
    assert saved["hidden_size"] == MUJOCO[name]["hidden_size"] and saved["gamma"] == 0.99
    assert read_csv(os.path.join(folder, "episodes.csv")), "no training episode ended"
    assert read_csv(os.path.join(folder, "metrics.csv")), "no metrics logged"
    evaluation = json.load(open(os.path.join(folder, "eval.json")))
    assert evaluation["episodes"] == 1 and summary["global_step"] == saved["total_timesteps"]
    model = torch.load(os.path.join(folder, "model.pt"), weights_only=True)
    if name == "ppo":
        # observation normalization on: the statistics are saved, and the evaluations (the curve's and the final
        # one) used them frozen: they count the training observations only, the reset and one per step
        obs_rms = model["normalizer"]["obs_rms"]
        assert obs_rms["count"] == pytest.approx(1e-4 + 1 + summary["global_step"])
        assert obs_rms["mean"].abs().sum() > 0
