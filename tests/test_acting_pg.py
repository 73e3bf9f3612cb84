"""The policy-gradient scripts (reinforce.py, a2c.py, a3c.py, ppo.py, trpo.py) watched while they act, not only
while they learn: the actions of training are samples of the script's own policy (softmax on Discrete actions,
N(μ, σ²) on Box actions, the env getting the sample clipped into the bounds and the batch keeping it as drawn),
the final evaluation plays the most probable or the mean action; the learning-rate schedules (a3c's from the
step counter shared by all its workers); observation normalization in the final evaluation, in the time
limit's bootstrap and in model.pt; TRPO's line search (the KL's direction, the demand that the surrogate
improves); A3C's workers, each seeded with seed + rank."""

import json
import math
import os
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

import a2c
import a3c
import evaluate
import ppo
import reinforce
import trpo
from conftest import TIME_LIMIT, CountEnv, CountValue, snapshot

LOG_STD = math.log(0.5)  # σ = 0.5 for the Box tests: log σ ≠ σ, and log σ < 0
LOGIT_BIAS = [0.0, 1.1]  # Discrete: π(1|s) ≈ 0.75 from the start, far from uniform and from greedy
MEAN_BIAS = 1.0  # Box: μ ≈ 1 unsquashed, tanh(1) ≈ 0.76 squashed: the squashing shows, and draws leave [-1, 1]


# ---------------------------------------------------------------------------------------------------
# Acting: what each script's actor samples while it trains, what the env gets, what the batch keeps
# ---------------------------------------------------------------------------------------------------
def policy_of(actor, obs: torch.Tensor):
    """The distribution π_θ(·|s), written out here from the actor's networks: ("discrete", probabilities) or
    ("box", μ, σ), μ = c + h · tanh(net(s)) where the script squashes the mean into the bounds (bound_mean)."""
    with torch.no_grad():
        if hasattr(actor, "logits"):
            return "discrete", actor.logits(obs).softmax(-1)
        mean = actor.mean(obs)
        if getattr(actor, "center", None) is not None:
            mean = actor.center + actor.half_width * torch.tanh(mean)
        return "box", mean, actor.log_std.exp().expand_as(mean)


def mode_of(actor, obs: torch.Tensor) -> np.ndarray:
    """The deterministic policy, written out: the most probable action, or the mean clipped into [-1, 1]."""
    kind, *params = policy_of(actor, obs)
    if kind == "discrete":
        return params[0].argmax(-1).numpy()
    return np.clip(params[0].numpy(), -1.0, 1.0)


def as_rows(policy, actions, log_probs, actor):
    """One sample() call's record, one row per state (a3c's worker samples one state at a time, without a
    batch dimension): (policy, actions, log-probabilities, actor)."""
    kind, *params = policy
    width = params[0].shape[-1]
    policy = (kind, *(p.reshape(-1, width) for p in params))
    actions = snapshot(actions).reshape(-1, 1 if kind == "discrete" else width)
    return policy, actions, snapshot(log_probs).reshape(-1), actor


def watch_the_actor(module, monkeypatch):
    """Replace the module's two actor classes by subclasses that start far from uniform (LOGIT_BIAS, MEAN_BIAS
    on the last layer's bias) and record every sample() call: π_θ(·|s) at that moment (policy_of), the actions
    drawn, their log-probabilities and the actor. Also records every action a CountEnv receives, with the
    step counter t of the state it was taken in. Returns (samples, env_steps)."""
    samples, env_steps = [], []

    class Categorical(module.CategoricalActor):
        def __init__(self, *args):
            super().__init__(*args)
            with torch.no_grad():
                self.logits[-1].bias.copy_(torch.tensor(LOGIT_BIAS))

        def sample(self, obs):
            policy = policy_of(self, obs)
            actions, log_probs = super().sample(obs)
            samples.append(as_rows(policy, actions, log_probs, self))
            return actions, log_probs

    class Gaussian(module.GaussianActor):
        def __init__(self, *args):
            super().__init__(*args)
            with torch.no_grad():
                self.mean[-1].bias.fill_(MEAN_BIAS)

        def sample(self, obs):
            policy = policy_of(self, obs)
            actions, log_probs = super().sample(obs)
            samples.append(as_rows(policy, actions, log_probs, self))
            return actions, log_probs

    monkeypatch.setattr(module, "CategoricalActor", Categorical)
    monkeypatch.setattr(module, "GaussianActor", Gaussian)
    original_step = CountEnv.step

    def step(env, action):
        env_steps.append((env.t, np.array(action)))
        return original_step(env, action)

    monkeypatch.setattr(CountEnv, "step", step)
    return samples, env_steps


def spy_on_batches(module, monkeypatch, name, actions_of):
    """Record the actions of every batch the update function `name` receives (actions_of(args) picks them)."""
    stored, original = [], getattr(module, name)

    def spy(*args, **kwargs):
        stored.append(snapshot(actions_of(args)))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return stored


UPDATE_ACTIONS = {  # the update function of each script, and where the batch's actions sit in its arguments
    "reinforce": ("update", lambda args: args[3][1]),
    "a2c": ("update", lambda args: args[3][1]),
    "ppo": ("ppo_update", lambda args: args[3][1]),
    "trpo": ("trpo_update", lambda args: args[2]),
    "a3c": ("compute_gradients", lambda args: args[2][1]),
}


def check_the_samples_follow_the_policy(samples):
    """Every sample() call drew from the π_θ(·|s) recorded at that call, and scored the draw under it:
    Discrete, the number of action-1 draws is Σ π(1|s) to within 4 standard deviations; Box, (a − μ) / σ has
    mean 0 (4 standard errors) and variance 1 (±30%)."""
    kind = samples[0][0][0]
    actions = torch.cat([a for _, a, _, _ in samples]).double()
    log_probs = torch.cat([lp for _, _, lp, _ in samples]).double()
    n = len(actions)
    if kind == "discrete":
        probs = torch.cat([policy[1] for policy, *_ in samples]).double()
        a = actions[:, 0].long()
        assert set(a.tolist()) <= {0, 1}
        p1 = probs[:, 1]
        z = ((a == 1).double() - p1).sum() / (p1 * (1 - p1)).sum().sqrt()
        assert abs(z.item()) < 4, f"{(a == 1).sum().item()} draws of action 1 where π expects {p1.sum().item():.1f}"
        expected_log_probs = probs[torch.arange(n), a].log()
    else:
        mean = torch.cat([policy[1] for policy, *_ in samples]).double()
        std = torch.cat([policy[2] for policy, *_ in samples]).double()
        z = (actions - mean) / std
        assert abs(z.mean().item()) < 4 / math.sqrt(z.numel()), "the samples are not centred on μ_θ(s)"
        assert 0.7 < z.var().item() < 1.3, "the samples' spread is not σ"
        expected_log_probs = torch.distributions.Normal(mean, std).log_prob(actions).sum(-1)
    torch.testing.assert_close(log_probs, expected_log_probs, rtol=1e-4, atol=1e-4)
    return actions.numpy(), kind


def check_what_the_env_and_the_batch_got(samples, env_steps, stored):
    """The env got each sampled action, clipped into [-1, 1] for Box actions; the batches kept them unclipped."""
    assert samples, "the actor's sample() was never called: training did not draw from the policy"
    kind = samples[0][0][0]
    sampled, _ = check_the_samples_follow_the_policy(samples)
    played = np.array([np.reshape(action, -1) for _, action in env_steps[:len(sampled)]], dtype=np.float64)
    assert len(played) == len(sampled)
    learned = np.concatenate([np.reshape(a.numpy(), (len(a), -1)) for a in stored]).astype(np.float64)
    assert len(learned) > 0
    np.testing.assert_array_equal(learned, sampled[:len(learned)], err_msg="the batch does not hold the draws")
    if kind == "discrete":
        np.testing.assert_array_equal(played, sampled)
    else:
        assert (np.abs(sampled) > 1).sum() >= 10, "the test needs draws outside the bounds"
        np.testing.assert_allclose(played, np.clip(sampled, -1, 1), rtol=1e-6)
        assert (np.abs(learned) > 1).any(), "the batch holds clipped actions"


def check_the_evaluation_plays_the_mode(actor, eval_steps, episodes):
    """Each evaluation step's action is the mode of the trained actor in that step's state [t, 1]."""
    assert len(eval_steps) == episodes * TIME_LIMIT
    states = torch.tensor([[float(t), 1.0] for t, _ in eval_steps])
    played = np.array([np.reshape(action, -1) for _, action in eval_steps], dtype=np.float64)
    expected = mode_of(actor, states).reshape(len(states), -1)
    np.testing.assert_allclose(played, expected, rtol=1e-5, atol=1e-6,
                               err_msg="the evaluation does not play the most probable / mean action")


ACTING = [  # (module, Args overrides of a 256-step run on a CountTruncated env, without observation normalization)
    (reinforce, dict(num_episodes=2, norm_obs=False)),
    (a2c, dict(num_envs=2, num_steps=16, norm_obs=False)),
    (ppo, dict(num_envs=2, num_steps=16, update_epochs=1, num_minibatches=2, norm_obs=False)),
    (trpo, dict(num_envs=2, num_steps=16, update_epochs=1, num_minibatches=2, norm_obs=False)),
]


@pytest.mark.parametrize("module, settings", ACTING, ids=[m.__name__ for m, _ in ACTING])
@pytest.mark.parametrize("kind", ["Discrete", "Continuous"])
def test_training_samples_the_policy_and_the_evaluation_plays_its_mode(module, settings, kind, monkeypatch,
                                                                       tmp_path):
    """A 256-step train() on CountTruncated (states [t, 1]) with a policy far from uniform from the start. While
    training, every action is a draw of the actor's own π_θ(·|s) at that moment (softmax of the logits; or
    N(μ_θ(s), σ²) with the mean squashed where the script says so and σ = exp(log σ)), the env gets it (clipped
    into [-1, 1] for Box actions) and the batch learns from the draw itself, unclipped. The final evaluation
    plays the most probable action, or the mean clipped into the bounds, of the trained actor. Catches the
    greedy action (or the mean) played while training, a sample drawn with the wrong σ or around the unsquashed
    mean, the batch holding the clipped action, and the evaluation sampling instead of playing the mode."""
    samples, env_steps = watch_the_actor(module, monkeypatch)
    name, actions_of = UPDATE_ACTIONS[module.__name__]
    stored = spy_on_batches(module, monkeypatch, name, actions_of)
    episodes = 4
    module.train(module.Args(env_id=f"CountTruncated{kind}-v0", total_timesteps=256, hidden_size=8,
                             log_std_init=LOG_STD, eval_episodes=episodes, eval_every=0, save_model=False,
                             run_dir=str(tmp_path), cuda=False, **settings))
    assert samples, "the actor's sample() was never called: training did not draw from the policy"
    check_the_evaluation_plays_the_mode(samples[-1][3], env_steps[256:], episodes)
    assert sum(len(a) for _, a, _, _ in samples) == 256, "sample() was called outside the training steps"
    check_what_the_env_and_the_batch_got(samples, env_steps, stored)


class OneWorker:
    """A stand-in for a3c.Workers, the worker's side, for one worker() called in the test's own process: the
    step counter (shared by all the workers in a3c.Workers) and the messages. `others` pretends that other
    workers take that many steps each time this one takes one."""

    def __init__(self, others: int = 0):
        self.global_step = SimpleNamespace(value=0)
        self.others, self.episodes, self.sent = others, 0, []

    def keep_going(self) -> bool:
        return True

    def claim_step(self, total_timesteps: int) -> bool:
        if self.global_step.value >= total_timesteps:
            return False
        self.global_step.value += 1 + self.others
        return True

    def rewards(self, reward: float, done: bool):
        self.episodes += int(done)

    def send(self, kind: str, *row):
        self.sent.append((kind, *row))


def run_a3c_worker(args: a3c.Args, rank: int = 0, workers=None, optimizer=None, networks=None):
    """a3c.worker(rank, ...) in this process on global networks made as train() makes them (or `networks`),
    with plain SGD unless an optimizer is given. Returns the global networks and the stand-in."""
    env = gym.make(args.env_id)
    actor, critic = networks or a3c.make_networks(env, args)
    env.close()
    optimizer = optimizer or torch.optim.SGD([*actor.parameters(), *critic.parameters()], lr=1e-3)
    workers = workers or OneWorker()
    a3c.worker(rank, args, actor, critic, optimizer, workers)
    return actor, critic, workers


A3C_TINY = dict(num_steps=5, hidden_size=8, log_std_init=LOG_STD, gamma=0.9, gae_lambda=1.0, ent_coef=0.0,
                norm_reward=False, learning_rate=1e-3, cuda=False)


@pytest.mark.parametrize("kind", ["Discrete", "Continuous"])
def test_a3c_worker_samples_the_policy_and_the_evaluation_plays_its_mode(kind, monkeypatch, tmp_path):
    """A3C, the same checks in two parts. A worker() in this process, 256 steps: every action is a draw of the
    local actor's π_θ(·|s), the env gets it (clipped for Box actions), the gradients are computed on the draw
    itself. Then a train() with one worker process: the evaluation in the main process plays the mode of the
    trained actor saved in model.pt."""
    samples, env_steps = watch_the_actor(a3c, monkeypatch)
    name, actions_of = UPDATE_ACTIONS["a3c"]
    stored = spy_on_batches(a3c, monkeypatch, name, actions_of)
    run_a3c_worker(a3c.Args(env_id=f"CountTruncated{kind}-v0", total_timesteps=256, **A3C_TINY))
    check_what_the_env_and_the_batch_got(samples, env_steps, stored)
    assert sum(len(a) for _, a, _, _ in samples) == len(env_steps) == 256

    env_steps.clear()  # the worker process records its own steps in its own memory: these are the evaluation's
    episodes = 4
    args = a3c.Args(env_id=f"CountTruncated{kind}-v0", total_timesteps=60, num_workers=1,
                    eval_episodes=episodes, eval_every=0, run_dir=str(tmp_path), **A3C_TINY)
    summary = a3c.train(args)
    saved = torch.load(os.path.join(summary["run_dir"], "model.pt"), weights_only=True)
    actor = a3c.make_networks(gym.make(args.env_id), args)[0]
    actor.load_state_dict(saved["actor"])
    check_the_evaluation_plays_the_mode(actor, env_steps, episodes)


# ---------------------------------------------------------------------------------------------------
# Learning-rate schedules
# ---------------------------------------------------------------------------------------------------
def learning_rates_at_each_step(module, **settings):
    """The learning rate of every optimizer step of a short train(), read just before the step."""
    rates = []
    hook = register_optimizer_step_pre_hook(lambda optimizer, *_: rates.append(optimizer.param_groups[0]["lr"]))
    try:
        module.train(module.Args(hidden_size=8, eval_episodes=0, save_model=False, cuda=False, **settings))
    finally:
        hook.remove()
    return rates


@pytest.mark.parametrize("module, steps_per_rollout", [(a2c, 1), (ppo, 2 * 2)], ids=["a2c", "ppo"])
def test_the_learning_rate_decays_linearly_to_zero_over_the_rollouts(module, steps_per_rollout, tmp_path):
    """4 rollouts of 2 × 8 steps with α = 0.004: rollout k (from 0) is learned with α (1 − k / 4): 0.004, 0.003,
    0.002, 0.001, in each of its gradient steps (A2C one, PPO 2 epochs × 2 mini-batches), so that the last
    policy settles; with --no-anneal-lr every step uses α. Catches the decay left out, off by one rollout (the
    last rate 0: the last rollout is wasted), or counted in gradient steps rather than rollouts."""
    extra = dict(update_epochs=2, num_minibatches=2) if module is ppo else {}
    settings = dict(total_timesteps=64, num_envs=2, num_steps=8, learning_rate=0.004, run_dir=str(tmp_path), **extra)
    rates = learning_rates_at_each_step(module, anneal_lr=True, **settings)
    expected = [0.004 * (1 - k / 4) for k in range(4) for _ in range(steps_per_rollout)]
    assert rates == pytest.approx(expected)
    assert learning_rates_at_each_step(module, anneal_lr=False, **settings) == [0.004] * len(expected)


def test_a3c_decays_the_learning_rate_by_the_steps_of_all_the_workers(monkeypatch):
    """worker() in this process, while pretended other workers take 2 steps for each of its own (the shared
    counter grows by 3 a step): each of its updates uses α (1 − g / T), g the shared step counter when its
    rollout began, which all workers advance, not the worker's own step count (a third of it here). The
    optimizer's learning rate is set before the rollout: read it at each optimizer step."""
    args = a3c.Args(env_id="CountTerminatedDiscrete-v0", total_timesteps=60, anneal_lr=True,
                    **dict(A3C_TINY, num_steps=2, learning_rate=0.01))
    env = gym.make(args.env_id)
    actor, critic = a3c.make_networks(env, args)
    optimizer = torch.optim.SGD([*actor.parameters(), *critic.parameters()], lr=args.learning_rate)
    workers = OneWorker(others=2)
    seen = []  # (learning rate, shared step counter) at each optimizer step, at the end of a rollout
    optimizer.register_step_pre_hook(lambda opt, *_: seen.append((opt.param_groups[0]["lr"],
                                                                  workers.global_step.value)))
    run_a3c_worker(args, workers=workers, optimizer=optimizer, networks=(actor, critic))
    assert len(seen) >= 10
    counter_at_start = [0] + [step for _, step in seen[:-1]]  # a rollout begins where the one before ended
    expected = [0.01 * max(1 - g / 60, 0.0) for g in counter_at_start]
    assert [lr for lr, _ in seen] == pytest.approx(expected)
    assert seen[-1][0] < 0.01 * 0.2, "the rate did not fall with the shared counter"


# ---------------------------------------------------------------------------------------------------
# Observation normalization: the time limit's bootstrap, the final evaluation, model.pt and evaluate.py
# ---------------------------------------------------------------------------------------------------
NORMALIZING = [  # every script with norm_obs, and the settings of its short runs
    (reinforce, dict(num_episodes=2)),
    (a2c, dict(num_envs=2, num_steps=8)),
    (ppo, dict(num_envs=2, num_steps=8, update_epochs=1, num_minibatches=1)),
    (trpo, dict(num_envs=2, num_steps=8, update_epochs=1, num_minibatches=1)),
]
NORMALIZING_IDS = [m.__name__ for m, _ in NORMALIZING]


def spy_on_normalization(module, monkeypatch):
    """Record every Normalizer.observation call: its input, the update flag, the statistics before and after
    the call and the output. While `phase["evaluating"]` is True (set during the script's evaluate()), the
    calls are tagged as the evaluation's."""
    calls, phase, original = [], {"evaluating": False}, module.Normalizer.observation

    def observation(self, obs, update):
        rms = self.obs_rms
        before = (rms.mean.copy(), rms.var.copy(), rms.count)
        out = original(self, obs, update=update)
        calls.append(dict(obs=np.array(obs, dtype=np.float64), update=update, before=before,
                          after=(rms.mean.copy(), rms.var.copy(), rms.count), out=out.copy(),
                          evaluating=phase["evaluating"]))
        return out

    monkeypatch.setattr(module.Normalizer, "observation", observation)
    original_evaluate = module.evaluate

    def evaluating(*args, **kwargs):
        phase["evaluating"] = True
        try:
            return original_evaluate(*args, **kwargs)
        finally:
            phase["evaluating"] = False

    monkeypatch.setattr(module, "evaluate", evaluating)
    return calls


def normalized(obs, mean, var):
    return np.clip((obs - mean) / np.sqrt(var + 1e-8), -10, 10)


def check_frozen(call):
    """The call normalized its input with the statistics it found, and left them as they were."""
    mean, var, count = call["before"]
    assert not call["update"]
    assert call["after"][2] == count, "the statistics were updated"
    np.testing.assert_array_equal(call["after"][0], mean)
    np.testing.assert_allclose(call["out"], normalized(call["obs"], mean, var), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("module, settings", NORMALIZING, ids=NORMALIZING_IDS)
def test_the_time_limit_bootstrap_normalizes_the_real_final_observation_without_updating(module, settings,
                                                                                          monkeypatch, tmp_path):
    """With norm_obs on, on CountTruncated (every episode cut after TIME_LIMIT steps, final observation
    [TIME_LIMIT, 1]) and V(s) = the first number of the (normalized) observation: each time limit's bootstrap
    value is V of the real final observation normalized with the statistics of that moment, frozen, the very
    input the networks saw in training. Catches the final observation left raw (V = 5), normalized with an
    update of the statistics (it would count a state twice), or the next episode's first observation used."""
    calls = spy_on_normalization(module, monkeypatch)
    value_class, returns_function = ("Baseline", "reward_to_go") if module is reinforce else ("Critic", "compute_gae")
    monkeypatch.setattr(module, value_class, CountValue)
    recorded, original = [], getattr(module, returns_function)

    def spy(*args):
        recorded.append(snapshot(args))
        return original(*args)

    monkeypatch.setattr(module, returns_function, spy)
    module.train(module.Args(env_id="CountTruncatedDiscrete-v0", total_timesteps=64, hidden_size=8, norm_obs=True,
                             norm_reward=False, eval_episodes=0, eval_every=0, save_model=False, run_dir=str(tmp_path),
                             cuda=False, **settings))
    if module is reinforce:  # reward_to_go(rewards, terminated, truncated, final_values, γ)
        cut = np.concatenate([args[2] for args in recorded])
        bootstraps = np.concatenate([args[3] for args in recorded])[cut]
    else:  # compute_gae(rewards, values, next_values, terminated, dones, γ, λ)
        cut = np.concatenate([args[4] & ~args[3] for args in recorded])
        bootstraps = np.concatenate([args[2] for args in recorded])[cut]
    assert cut.sum() >= 6
    frozen = [call for call in calls if not call["update"]]
    final_obs = np.concatenate([call["obs"].reshape(-1, 2) for call in frozen]) if frozen else np.zeros((0, 2))
    assert len(final_obs) >= len(bootstraps), "the final observations were not normalized with frozen statistics"
    np.testing.assert_array_equal(final_obs, [[TIME_LIMIT, 1.0]] * len(final_obs))
    for call in frozen:
        check_frozen(call)
    values = np.concatenate([call["out"].reshape(-1, 2)[:, 0] for call in frozen])
    np.testing.assert_allclose(bootstraps, values[:len(bootstraps)], rtol=1e-5, atol=1e-5)
    assert not np.allclose(bootstraps, TIME_LIMIT), "the final observation was left raw"


@pytest.mark.parametrize("module, settings", NORMALIZING, ids=NORMALIZING_IDS)
def test_the_evaluation_normalizes_with_frozen_statistics_that_model_pt_carries_to_evaluate_py(module, settings,
                                                                                                monkeypatch,
                                                                                                tmp_path):
    """A 256-step Pendulum train() with norm_obs and norm_reward on. Its final evaluation normalizes every
    observation with the training's statistics, frozen (model.pt, written after the evaluation, holds exactly
    the statistics of the training observations); model.pt holds the observation and reward statistics; and
    evaluate.py, which rebuilds the policy from model.pt alone (saved_policy), normalizes in the same way and
    plays the same returns as eval.json. Catches the statistics updated during an evaluation, left out of
    model.pt or not loaded by saved_policy."""
    calls = spy_on_normalization(module, monkeypatch)
    summary = module.train(module.Args(env_id="Pendulum-v1", total_timesteps=256, hidden_size=8, norm_obs=True,
                                       norm_reward=True, eval_episodes=1, eval_every=0, run_dir=str(tmp_path / "runs"),
                                       cuda=False, **settings))
    checkpoint = torch.load(os.path.join(summary["run_dir"], "model.pt"), weights_only=True)
    obs_rms, return_rms = checkpoint["normalizer"]["obs_rms"], checkpoint["normalizer"]["return_rms"]
    trained = [call for call in calls if call["update"]]
    assert obs_rms["count"] == pytest.approx(1e-4 + sum(len(call["obs"].reshape(-1, 3)) for call in trained)), \
        "model.pt does not hold the statistics of the training observations alone"
    assert not torch.allclose(obs_rms["var"], torch.ones(3, dtype=torch.float64)), "no statistics were gathered"
    assert return_rms["count"] > 256, "the reward statistics are not in model.pt"
    in_evaluation = [call for call in calls if call["evaluating"]]
    assert len(in_evaluation) == 200  # one Pendulum episode
    for call in in_evaluation:
        check_frozen(call)
        np.testing.assert_allclose(call["before"][0], obs_rms["mean"].numpy())
        np.testing.assert_allclose(call["before"][1], obs_rms["var"].numpy())

    calls.clear()
    (again,) = evaluate.main([summary["run_dir"], "--out", str(tmp_path / "eval"), "--no-cuda"])
    expected = json.load(open(os.path.join(summary["run_dir"], "eval.json")))["returns"]
    if module is trpo:  # equal to rounding only: see test_trpo_evaluate_py_replays_a_box_evaluation_bit_for_bit
        assert again["returns"] == pytest.approx(expected, rel=1e-6)
    else:
        assert again["returns"] == expected
    assert len(calls) == 200
    for call in calls:  # saved_policy's normalizer, rebuilt from model.pt
        check_frozen(call)
        np.testing.assert_allclose(call["before"][0], obs_rms["mean"].numpy())


# ---------------------------------------------------------------------------------------------------
# TRPO's line search: KL(π_old ‖ π_new), within δ, and a surrogate that improves
# ---------------------------------------------------------------------------------------------------
def forward_and_reverse_kl(old, new):
    """The mean over the states of KL(old ‖ new) and KL(new ‖ old), by torch.distributions."""
    kl = torch.distributions.kl_divergence
    return kl(old, new).mean().item(), kl(new, old).mean().item()


def categorical(logits):
    return torch.distributions.Categorical(logits=logits)


def gaussian(mean, log_std):
    return torch.distributions.Independent(torch.distributions.Normal(mean, log_std.exp().expand_as(mean)), 1)


def test_the_actors_kl_is_from_the_old_policy_to_the_new_one():
    """actor.kl(old, obs), the KL of the trust region, is the mean KL(π_old ‖ π_θ) (TRPO-3, TRPO-4), checked
    where the two directions differ by far: a softmax whose probabilities moved a lot, and a Gaussian whose σ
    halved. Catches the arguments of the KL swapped."""
    torch.manual_seed(0)
    obs = torch.randn(16, 3)
    actor = trpo.CategoricalActor(3, 3, 8, 0.0)
    with torch.no_grad():
        old = actor.distribution(obs)
        actor.logits[-1].weight.normal_(std=2.0)
        forward, reverse = forward_and_reverse_kl(categorical(old), categorical(actor.logits(obs)))
        assert abs(forward - reverse) > 0.2 * forward
        assert actor.kl(old, obs).item() == pytest.approx(forward, rel=1e-4)

    actor = trpo.GaussianActor(3, 2, 8, 0.0)
    with torch.no_grad():
        old = actor.distribution(obs)
        actor.log_std.fill_(math.log(0.5))
        actor.mean[-1].bias.fill_(0.3)
        forward, reverse = forward_and_reverse_kl(gaussian(*old), gaussian(actor.mean(obs), actor.log_std))
        assert abs(forward - reverse) > 0.2 * forward
        assert actor.kl(old, obs).item() == pytest.approx(forward, rel=1e-4)


def line_search_on_a_fixed_step(monkeypatch, log_std_step: float, max_kl: float):
    """trpo_update on a Gaussian actor (σ = 1, μ ≈ 0) whose natural-gradient step is replaced by a step of
    log σ alone. The batch's advantages reward actions near the mean and punish far ones: narrowing σ raises
    the surrogate, widening it lowers it. Returns the stats, the actor, π_old and the batch's states."""
    torch.manual_seed(0)
    actor = trpo.GaussianActor(obs_dim=3, action_dim=1, hidden_size=8, log_std_init=0.0)
    obs = torch.randn(8, 3)
    actions = torch.tensor([[0.1], [-0.2], [0.05], [-0.1], [2.5], [-2.4], [2.8], [-2.6]])
    advantages = torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0])
    with torch.no_grad():
        old = actor.distribution(obs)
        old_log_probs, _ = actor.log_prob_entropy(obs, actions)
    step = torch.cat([(torch.full_like(p, log_std_step) if p is actor.log_std else torch.zeros_like(p)).flatten()
                      for p in actor.parameters()])
    monkeypatch.setattr(trpo, "natural_gradient_step", lambda *args, **kwargs: step.clone())
    stats = trpo.trpo_update(actor, obs, actions, old_log_probs, advantages, max_kl=max_kl, cg_iters=3,
                             cg_damping=0.1, backtrack_iters=10, backtrack_coef=0.8)
    return stats, actor, old, obs


def test_the_line_search_bounds_kl_from_the_old_policy_to_the_new_one(monkeypatch):
    """A full step that narrows σ from 1 to e^−0.5 ≈ 0.61 (log σ − 0.5) and raises the surrogate. Its
    KL(π_old ‖ π_new) is 0.36, its KL(π_new ‖ π_old) 0.18: with δ = 0.3 the full step leaves the trust region,
    and the line search must shrink it once, to 0.8 of it (KL(π_old ‖ π_new) = 0.21 ≤ δ), and report that KL.
    A line search that measured the KL the other way would take the full step."""
    stats, actor, old, obs = line_search_on_a_fixed_step(monkeypatch, log_std_step=-0.5, max_kl=0.3)
    assert stats["step_accepted"] == 1.0 and stats["line_search_steps"] == 1
    assert actor.log_std.item() == pytest.approx(-0.5 * 0.8)
    with torch.no_grad():
        forward, reverse = forward_and_reverse_kl(gaussian(*old), gaussian(actor.mean(obs), actor.log_std))
    assert stats["kl"] == pytest.approx(forward, rel=1e-4) and forward <= 0.3
    assert abs(forward - reverse) > 0.2 * forward


def test_the_line_search_rejects_steps_that_lower_the_surrogate_even_inside_the_trust_region(monkeypatch):
    """A step that widens σ slightly (log σ + 0.1): its KL, 0.01 at most, is inside δ = 0.05 at every fraction
    of it, but it lowers the surrogate at every fraction (the batch rewards actions near the mean). The line
    search must reject it and keep θ_k: a search that only checked the KL would take a step that makes the
    policy worse. The opposite step, which narrows σ, is taken whole."""
    stats, actor, old, obs = line_search_on_a_fixed_step(monkeypatch, log_std_step=0.1, max_kl=0.05)
    assert stats["step_accepted"] == 0.0 and stats["line_search_steps"] == 10
    assert actor.log_std.item() == 0.0, "θ_k was not kept"
    stats, actor, _, _ = line_search_on_a_fixed_step(monkeypatch, log_std_step=-0.1, max_kl=0.05)
    assert stats["step_accepted"] == 1.0 and stats["line_search_steps"] == 0
    assert stats["surrogate_improvement"] > 0 and stats["kl"] <= 0.05


# ---------------------------------------------------------------------------------------------------
# A3C's workers: each with its own seed, seed + rank
# ---------------------------------------------------------------------------------------------------
def a_workers_rollouts(monkeypatch, seed: int, rank: int):
    """worker(rank) in this process, 40 CartPole steps with args.seed = seed, from the same global networks
    every time: the states and actions of its rollouts, and the global parameters after them."""
    rollouts, original = [], a3c.compute_gradients

    def spy(local_actor, local_critic, batch, *rest):
        rollouts.append(snapshot(batch[:2]))
        return original(local_actor, local_critic, batch, *rest)

    monkeypatch.setattr(a3c, "compute_gradients", spy)
    args = a3c.Args(env_id="CartPole-v1", seed=seed, total_timesteps=40, **A3C_TINY)
    torch.manual_seed(1234)  # the same global networks for every call, whatever the worker's seed
    networks = a3c.make_networks(gym.make(args.env_id), args)
    # random generators left in a state of their own before each call: the worker must seed them itself
    torch.manual_seed(100 * seed + rank)
    np.random.seed(100 * seed + rank)
    actor, critic, _ = run_a3c_worker(args, rank=rank, networks=networks)
    states = torch.cat([obs for obs, _ in rollouts])
    actions = torch.cat([a for _, a in rollouts])
    return states, actions, torch.nn.utils.parameters_to_vector([*actor.parameters(), *critic.parameters()])


def test_each_a3c_worker_seeds_everything_with_seed_plus_rank(monkeypatch):
    """Worker 1 of a run with seed 1 must play exactly what worker 0 of a run with seed 2 plays (the same
    first state of its env, the same sampled actions, the same updates): both seed their env and torch with
    seed + rank = 2, whatever state the random generators were in. And workers 0 and 1 of one run must play
    different episodes (their first states differ): otherwise the workers repeat each other and decorrelate
    nothing."""
    rank1_states, rank1_actions, rank1_after = a_workers_rollouts(monkeypatch, seed=1, rank=1)
    same_states, same_actions, same_after = a_workers_rollouts(monkeypatch, seed=2, rank=0)
    replays = "worker 1 of seed 1 does not replay worker 0 of seed 2"
    torch.testing.assert_close(rank1_states, same_states, rtol=0, atol=0, msg=f"{replays}: its env's states")
    torch.testing.assert_close(rank1_actions, same_actions, rtol=0, atol=0, msg=f"{replays}: its sampled actions")
    torch.testing.assert_close(rank1_after, same_after, rtol=0, atol=0, msg=f"{replays}: its updates")
    first_state = gym.make("CartPole-v1").reset(seed=2)[0]
    np.testing.assert_array_equal(rank1_states[0].numpy(), first_state)
    rank0_states, rank0_actions, _ = a_workers_rollouts(monkeypatch, seed=1, rank=0)
    assert not torch.equal(rank0_states[0], rank1_states[0]), "two workers start the same episode"
    assert not torch.equal(rank0_actions, rank1_actions)

def test_trpo_evaluate_py_replays_a_box_evaluation_bit_for_bit(tmp_path):
    """evaluate.py promises to reproduce a run's eval.json: the same policy on the same start states gives the
    same returns. On Box actions the mean action is a float, and Pendulum's returns show its last bit.
    trpo_update used to leave the parameters as views into one flat vector, where matrix products
    round differently from the copies model.pt holds."""
    summary = trpo.train(trpo.Args(env_id="Pendulum-v1", total_timesteps=32, num_envs=2, num_steps=16,
                                   hidden_size=8, norm_obs=False, update_epochs=1, num_minibatches=1,
                                   eval_episodes=1, run_dir=str(tmp_path / "runs"), cuda=False))
    (again,) = evaluate.main([summary["run_dir"], "--out", str(tmp_path / "eval"), "--no-cuda"])
    assert again["returns"] == json.load(open(os.path.join(summary["run_dir"], "eval.json")))["returns"]
