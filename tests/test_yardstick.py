"""The yardstick (issue 27): every run's final evaluation plays the env's fixed test set, the same start states
whatever the training seed, with the documented number of episodes; the curve during training plays its own
fixed episodes every eval_every steps into eval_curve.csv, without changing what training does."""

import json
import os
import re

import gymnasium as gym
import numpy as np
import pytest

from conftest import ROOT, SCRIPTS, read_csv, tiny_args

BY_NAME = {script.name: script for script in SCRIPTS}


def spy_on_evaluations(module, monkeypatch) -> list:
    """[(episodes, first_seed, [the first observation of each episode])] of every evaluate() call of the script."""
    calls, original = [], module.evaluate

    class FirstObservations(gym.Wrapper):
        def __init__(self, env, starts):
            super().__init__(env)
            self.starts = starts

        def reset(self, *, seed=None, options=None):
            obs, info = self.env.reset(seed=seed, options=options)
            self.starts.append(obs.tolist())
            return obs, info

    def spy(policy, make_env, episodes, first_seed):
        starts = []
        calls.append((episodes, first_seed, starts))
        return original(policy, lambda: FirstObservations(make_env(), starts), episodes, first_seed)

    monkeypatch.setattr(module, "evaluate", spy)
    return calls


@pytest.mark.parametrize("name", ["dqn", "ppo", "sac"])
def test_two_training_seeds_are_judged_on_the_same_start_states(name, tmp_path, monkeypatch):
    """Seeds 3 and 4 train different policies but play the same test: episode e from env seed TEST_SEED + e, as
    many episodes as TEST_EPISODES gives the env, whatever the seed."""
    script = BY_NAME[name]
    module = script.module()
    env_id = script.smoke_envs[0]
    finals = {}
    for seed in (3, 4):
        calls = spy_on_evaluations(module, monkeypatch)
        args = tiny_args(script, tmp_path / str(seed), env_id=env_id, seed=seed, eval_episodes=None, eval_every=0)
        summary = module.train(args)
        (final,) = calls  # eval_every=0: the final evaluation only
        finals[seed] = final
        episodes, first_seed, starts = final
        assert first_seed == module.TEST_SEED == 1_000_000
        assert episodes == module.TEST_EPISODES[env_id] == len(starts)
        evaluation = json.load(open(os.path.join(summary["run_dir"], "eval.json")))
        assert evaluation["episodes"] == episodes and evaluation["first_seed"] == module.TEST_SEED
        assert json.load(open(os.path.join(summary["run_dir"], "args.json")))["eval_episodes"] == episodes
    assert finals[3][2] == finals[4][2], "two training seeds were evaluated from different start states"
    env = gym.make(env_id)
    assert finals[3][2] == [env.reset(seed=module.TEST_SEED + e)[0].tolist() for e in range(len(finals[3][2]))]
    assert len({tuple(start) for start in finals[3][2]}) == len(finals[3][2]), "the test repeats a start state"


def test_evaluate_seeds_every_episode_of_the_test():
    """Episode e of evaluate(policy, make_env, episodes, first_seed) starts from env seed first_seed + e, each
    episode seeded, not only the first, each episode's return its own."""
    module = BY_NAME["dqn"].module()
    seeds = []

    class Recorder(gym.Wrapper):
        def reset(self, **named):
            seeds.append(named.get("seed"))
            return self.env.reset(**named)

    returns = module.evaluate(lambda obs: np.zeros(len(obs), int), lambda: Recorder(gym.make("CartPole-v1")), 4, 123)
    assert seeds == [123, 124, 125, 126]
    alone = []  # each episode played by itself: the returns of evaluate() are those episodes' own
    for seed in range(123, 127):
        env, done = gym.make("CartPole-v1"), False
        env.reset(seed=seed)
        alone.append(0.0)
        while not done:
            _, reward, terminated, truncated, _ = env.step(0)
            alone[-1], done = alone[-1] + reward, terminated or truncated
    assert returns == alone and len(set(alone)) > 1


def test_the_default_number_of_test_episodes_per_env_is_the_documented_one():
    """The README's table of the test sets gives every env's number of episodes (and every MinAtar game's), and
    every script fills eval_episodes with it: an env of the table its own, a MinAtar game 100, another env 10."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    documented = {env: int(n) for env, n in re.findall(r"^\| ([\w/]+?(?:-v\d)?)(?: \(.*?\))? \| (\d+) \|", readme,
                                                      re.MULTILINE)}
    assert documented == {"CartPole-v1": 20, "Acrobot-v1": 30, "Pendulum-v1": 100, "MinAtar/": 100}
    expected = {"CartPole-v1": 20, "Acrobot-v1": 30, "Pendulum-v1": 100, "MinAtar/Breakout-v1": 100,
                "MinAtar/SpaceInvaders-v0": 100, "ALE/Pong-v5": 10, "Hopper-v5": 10, "MountainCar-v0": 10}
    for script in SCRIPTS:
        module = script.module()
        assert module.TEST_EPISODES == documented, script.name
        for env_id, episodes in expected.items():
            args = module.Args(env_id=env_id)
            module.evaluation_settings(args, 1_000)
            assert args.eval_episodes == episodes, (script.name, env_id)
            args = module.Args(env_id=env_id, eval_episodes=7)
            module.evaluation_settings(args, 1_000)
            assert args.eval_episodes == 7, (script.name, env_id)


def test_the_curve_plays_its_own_episodes_every_eval_every_steps(tmp_path, monkeypatch):
    """dqn.py with 800 steps: by default a point every 40 steps (20 a run), each the mean and std of CURVE_EPISODES
    episodes from env seed CURVE_SEED, in eval_curve.csv; eval_every 0 writes no point."""
    script = BY_NAME["dqn"]
    module = script.module()
    calls = spy_on_evaluations(module, monkeypatch)
    summary = module.train(tiny_args(script, tmp_path / "a", eval_every=None))
    rows = read_csv(os.path.join(summary["run_dir"], "eval_curve.csv"))
    assert [int(row["global_step"]) for row in rows] == list(range(40, 801, 40))
    curve_calls, final_call = calls[:-1], calls[-1]
    assert [(episodes, first_seed) for episodes, first_seed, _ in curve_calls] == \
        [(module.CURVE_EPISODES, module.CURVE_SEED)] * 20
    assert final_call[1] == module.TEST_SEED
    assert json.load(open(os.path.join(summary["run_dir"], "args.json")))["eval_every"] == 40
    for row in rows:
        assert float(row["eval_std"]) >= 0 and 0 < float(row["eval_time"]) <= float(row["wall_time"])
    walls = [float(row["wall_time"]) for row in rows]
    assert walls == sorted(walls)
    summary = module.train(tiny_args(script, tmp_path / "b", eval_every=0))
    assert read_csv(os.path.join(summary["run_dir"], "eval_curve.csv")) == []


def test_the_curve_means_are_the_returns_of_its_episodes(tmp_path, monkeypatch):
    """Each row's eval_mean and eval_std are those of the returns evaluate() gave for that point."""
    script = BY_NAME["ppo"]
    module = script.module()
    returns, original = [], module.evaluate

    def recording(*positional):
        returns.append(original(*positional))
        return returns[-1]

    monkeypatch.setattr(module, "evaluate", recording)
    summary = module.train(tiny_args(script, tmp_path, eval_every=128))
    rows = read_csv(os.path.join(summary["run_dir"], "eval_curve.csv"))
    assert len(rows) == 4 == len(returns) - 1
    for row, point in zip(rows, returns):
        assert float(row["eval_mean"]) == pytest.approx(np.mean(point))
        assert float(row["eval_std"]) == pytest.approx(np.std(point))  # of the returns, as in eval.json


@pytest.mark.parametrize("name", [s.name for s in SCRIPTS if s.deterministic])
def test_the_curve_does_not_change_training(name, tmp_path):
    """Evaluating during training leaves training as it was: the same episodes and the same final evaluation with
    and without the curve (no random draw taken from training, no normalizer statistics updated, NoisyNet's
    noise back on after it, the training env untouched)."""
    script = BY_NAME[name]
    fields = script.module().Args.__dataclass_fields__
    # the settings where a curve could disturb training: normalization on, NoisyNet's noise large enough to
    # change actions (with the tiny network's small noise, acting on the means picks the same actions)
    extra = {**({"norm_obs": True} if "norm_obs" in fields else {}),
             **({"noisy_sigma0": 5.0} if "noisy_sigma0" in fields else {})}
    runs = {}
    for every in (0, 50):
        env_id = script.smoke_envs[-1]
        summary = script.module().train(tiny_args(script, tmp_path / str(every), env_id=env_id, eval_every=every,
                                                  **extra))
        episodes = [list(row.values())[:3] for row in read_csv(os.path.join(summary["run_dir"], "episodes.csv"))]
        curve = read_csv(os.path.join(summary["run_dir"], "eval_curve.csv"))
        runs[every] = episodes, json.load(open(os.path.join(summary["run_dir"], "eval.json")))["returns"], curve
    assert runs[0][2] == [] and len(runs[50][2]) >= 2, "the curve was not drawn"
    assert runs[50][0] == runs[0][0], "the curve changed the training episodes"
    assert runs[50][1] == runs[0][1], "the curve changed the final evaluation"


def test_rainbow_draws_its_curve_without_noise(tmp_path, monkeypatch):
    """RAINBOW-6 holds for the curve too: every forward pass of its evaluations, and of the final one, goes
    through the noisy layers in eval mode (the means μ), and training goes on with the noise on."""
    script = BY_NAME["rainbow"]
    module = script.module()
    evaluating, forwards, calls = [None], {}, []  # the first seed of the evaluation under way: [its layers' modes]
    original, forward = module.evaluate, module.NoisyLinear.forward

    def spy(policy, env, episodes, first_seed):
        evaluating[0] = first_seed
        calls.append(first_seed)
        forwards.setdefault(first_seed, [])
        try:
            return original(policy, env, episodes, first_seed)
        finally:
            evaluating[0] = None

    def recording_forward(layer, x):
        forwards.setdefault(evaluating[0], []).append(layer.training)
        return forward(layer, x)

    monkeypatch.setattr(module, "evaluate", spy)
    monkeypatch.setattr(module.NoisyLinear, "forward", recording_forward)
    module.train(tiny_args(script, tmp_path, eval_every=100, save_model=False))
    assert calls == [module.CURVE_SEED] * 8 + [module.TEST_SEED], "8 curve points, then the test"
    assert forwards[module.CURVE_SEED] and not any(forwards[module.CURVE_SEED]), "a curve point acted with noise"
    assert forwards[module.TEST_SEED] and not any(forwards[module.TEST_SEED]), "the final test acted with noise"
    assert forwards[None] and all(forwards[None]), "training went on with the noise off"


@pytest.mark.parametrize("family", [["dqn", "double_dqn", "dueling_dqn", "per_dqn"], ["ddpg", "td3", "sac"]],
                         ids=["dqn-family", "ddpg-td3-sac"])
def test_siblings_share_every_setting_but_their_idea(family):
    """`diff dqn.py double_dqn.py` shows the idea, not tuning: every setting two siblings both have defaults to the
    same value (the settings only one of them has are its idea's own, such as PER's α and β)."""
    from dataclasses import fields
    defaults = {name: {f.name: f.default for f in fields(BY_NAME[name].module().Args) if f.name != "exp_name"}
                for name in family}
    # ddpg, td3 and sac keep their per-env settings in ENV_DEFAULTS: the same rows, the same values
    rows = {name: getattr(BY_NAME[name].module(), "ENV_DEFAULTS", {}) for name in family}
    assert len({tuple(rows[name]) for name in family}) == 1, f"{family} have different rows: {rows}"
    for row in rows[family[0]]:
        for name in family:
            assert defaults[name].keys() >= rows[name][row].keys()
            defaults[name] = {**defaults[name], **{f"{key} ({row})": value for key, value in rows[name][row].items()}}
    for first in family:
        for second in family:
            shared = defaults[first].keys() & defaults[second].keys()
            differ = {key: (defaults[first][key], defaults[second][key]) for key in shared
                      if defaults[first][key] != defaults[second][key]}
            assert not differ, f"{first}.py and {second}.py differ in {differ}"


def test_a3c_copies_the_global_actor_before_each_curve_point_and_the_final_evaluation(tmp_path, monkeypatch):
    """a3c.py's main process evaluates a copy of the shared actor (the workers go on changing the global one):
    the global weights are copied into it before every point of the curve and before the final evaluation."""
    script = BY_NAME["a3c"]
    module = script.module()
    made, loads, original_make = [], [], module.make_networks

    def make(env, args):
        networks = original_make(env, args)
        made.append(networks)
        if len(made) == 2:  # the main process's second call: the evaluation's copy of the actor
            copy, load = networks[0], networks[0].load_state_dict
            copy.load_state_dict = lambda state, *more: loads.append(1) or load(state, *more)
        return networks

    monkeypatch.setattr(module, "make_networks", make)
    summary = module.train(tiny_args(script, tmp_path, eval_every=1, total_timesteps=3_000, save_model=False))
    rows = read_csv(os.path.join(summary["run_dir"], "eval_curve.csv"))
    assert len(loads) == len(rows) + 1, f"{len(loads)} copies for {len(rows)} curve points and the final evaluation"


def test_evaluations_play_envs_made_for_testing_and_training_its_own(script, tmp_path, monkeypatch):
    """make_env(training=False) for every env the greedy curve and the final test play, training=True for the
    training env: on Atari only the former plays whole games for the game's own score (test_pixels.py)."""
    module, calls = script.module(), []
    make_env = module.make_env

    def recording(env_id, training=True, **options):
        calls.append(training)
        return make_env(env_id, training, **options)

    monkeypatch.setattr(module, "make_env", recording)
    module.train(tiny_args(script, tmp_path))
    evaluations = [call for call in calls if call is False]
    assert calls[0] is True, "train() makes its training env first"
    # the curve's points and the final test: at least one env each, none of them the training kind
    assert len(evaluations) >= 2 and calls.count(True) + len(evaluations) == len(calls), calls
