"""The math of a2c.py and ppo.py: GAE with terminated against truncated steps, the vector-env loop's final
observations and masks, log-probabilities, the clipped objective, normalization saved with the model, and
the Gaussian mean kept inside the action bounds (a2c.py and a3c.py)."""

import json
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_post_hook

import a2c
import a3c
import ppo
from conftest import TIME_LIMIT

BOTH = pytest.mark.parametrize("module", [a2c, ppo], ids=["a2c", "ppo"])


# ---------------------------------------------------------------------------------------------------
# GAE
# ---------------------------------------------------------------------------------------------------
def reference_gae(rewards, values, next_values, terminated, dones, gamma, lam):
    """Â_t = Σ_k (γλ)^k δ_{t+k}, summed forward until the episode's last step inside the rollout."""
    steps, envs = rewards.shape
    advantages = np.zeros((steps, envs))
    for env in range(envs):
        for t in range(steps):
            total, weight = 0.0, 1.0
            for k in range(t, steps):
                bootstrap = 0.0 if terminated[k, env] else gamma * next_values[k, env]
                total += weight * (rewards[k, env] + bootstrap - values[k, env])
                if dones[k, env]:
                    break
                weight *= gamma * lam
            advantages[t, env] = total
    return advantages


@BOTH
def test_gae_against_a_plain_loop_with_a_termination_and_a_truncation(module):
    rng = np.random.default_rng(0)
    steps, gamma, lam = 6, 0.9, 0.8
    rewards = rng.normal(size=(steps, 2)).astype(np.float32)
    values = rng.normal(size=(steps, 2)).astype(np.float32)
    next_values = np.concatenate([values[1:], rng.normal(size=(1, 2))]).astype(np.float32)
    terminated, truncated = np.zeros((steps, 2), bool), np.zeros((steps, 2), bool)
    terminated[2, 0] = True  # env 0's episode ends in the MDP at t = 2
    truncated[3, 1] = True  # env 1's episode is cut by a time limit at t = 3 ...
    next_values[3, 1] = 7.0  # ... so its successor's value is V(final observation), not V(next episode's start)
    next_values[2, 0] = 123.0  # a termination must ignore whatever value stands here
    dones = terminated | truncated

    advantages, returns = module.compute_gae(rewards, values, next_values, terminated, dones, gamma, lam)
    expected = reference_gae(rewards, values, next_values, terminated, dones, gamma, lam)
    np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(returns, expected + values, rtol=1e-5, atol=1e-5)
    # by hand: the last step of each episode is a one-step TD error
    assert advantages[2, 0] == pytest.approx(rewards[2, 0] - values[2, 0])
    assert advantages[3, 1] == pytest.approx(rewards[3, 1] + gamma * 7.0 - values[3, 1])
    assert advantages[2, 1] == pytest.approx(
        rewards[2, 1] + gamma * values[3, 1] - values[2, 1] + gamma * lam * advantages[3, 1], rel=1e-5)


# ---------------------------------------------------------------------------------------------------
# The vector-env loop: real final observations and the two masks
# ---------------------------------------------------------------------------------------------------
class CountCritic(nn.Module):
    """V(s) = t, the step counter of CountEnv's observation [t, 1]: values show which observation was used."""

    def __init__(self, obs_dim, hidden_size):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, obs):
        return obs[..., 0] + 0.0 * self.bias


def recorded_rollouts(module, monkeypatch, tmp_path, env_id):
    """Train on a CountEnv with V(s) = t and return the arrays every compute_gae call received."""
    calls = []
    original_gae = module.compute_gae

    def spy(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
        calls.append(dict(values=values.copy(), next_values=next_values.copy(), terminated=terminated.copy(),
                          dones=dones.copy(), rewards=rewards.copy()))
        return original_gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda)

    monkeypatch.setattr(module, "Critic", CountCritic)
    monkeypatch.setattr(module, "compute_gae", spy)
    extra = dict(update_epochs=1, num_minibatches=1) if module is ppo else {}
    module.train(module.Args(env_id=env_id, total_timesteps=42, num_envs=2, num_steps=7, norm_obs=False,
                             norm_reward=False, eval_episodes=0, save_model=False, run_dir=str(tmp_path),
                             cuda=False, **extra))
    assert len(calls) == 3
    return {key: np.concatenate([call[key] for call in calls]) for key in calls[0]}


@BOTH
@pytest.mark.parametrize("kind", ["Discrete", "Continuous"])
def test_truncation_bootstraps_from_the_real_final_observation(module, kind, monkeypatch, tmp_path):
    r = recorded_rollouts(module, monkeypatch, tmp_path, f"CountTruncated{kind}-v0")
    # every successor is t + 1, also where the time limit hit (V(final obs) = TIME_LIMIT, not V(reset obs) = 0)
    np.testing.assert_array_equal(r["next_values"], r["values"] + 1)
    assert not r["terminated"].any(), "a time limit was stored as a termination"
    np.testing.assert_array_equal(r["dones"], r["values"] == TIME_LIMIT - 1)
    assert r["dones"].sum() == 2 * (21 // TIME_LIMIT)
    np.testing.assert_array_equal(r["rewards"], 1.0)


@BOTH
@pytest.mark.parametrize("kind", ["Discrete", "Continuous"])
def test_termination_stops_the_bootstrap(module, kind, monkeypatch, tmp_path):
    r = recorded_rollouts(module, monkeypatch, tmp_path, f"CountTerminated{kind}-v0")
    np.testing.assert_array_equal(r["terminated"], r["values"] == 2)  # the step from t = 2 to t = 3 ends it
    np.testing.assert_array_equal(r["dones"], r["terminated"])
    going_on = ~r["terminated"]
    np.testing.assert_array_equal(r["next_values"][going_on], r["values"][going_on] + 1)


# ---------------------------------------------------------------------------------------------------
# Log-probabilities and entropies of both policies
# ---------------------------------------------------------------------------------------------------
@BOTH
def test_categorical_log_prob_and_entropy(module):
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]])
    actions = torch.tensor([2, 0])
    log_probs = module.categorical_log_prob(logits, actions)
    z = np.exp(1) + np.exp(2) + np.exp(3)
    assert log_probs[0].item() == pytest.approx(3 - np.log(z), rel=1e-6)  # by hand
    reference = torch.distributions.Categorical(logits=logits)
    assert torch.allclose(log_probs, reference.log_prob(actions))
    assert torch.allclose(module.categorical_entropy(logits), reference.entropy())


@BOTH
def test_gaussian_log_prob_and_entropy(module):
    mean = torch.tensor([[0.5, -1.0], [0.0, 0.0]])
    log_std = torch.tensor([0.0, np.log(2.0)])
    actions = torch.tensor([[1.5, 0.0], [-0.3, 2.5]])
    log_probs = module.gaussian_log_prob(mean, log_std, actions)
    half_log_2pi = 0.5 * np.log(2 * np.pi)
    by_hand = (-0.5 * 1.0 ** 2 - half_log_2pi) + (-0.5 * (1.0 / 2.0) ** 2 - np.log(2.0) - half_log_2pi)
    assert log_probs[0].item() == pytest.approx(by_hand, rel=1e-6)
    reference = torch.distributions.Normal(mean, log_std.exp())
    assert torch.allclose(log_probs, reference.log_prob(actions).sum(-1))
    assert module.gaussian_entropy(log_std).item() == pytest.approx(reference.entropy()[0].sum().item(), rel=1e-6)


@BOTH
def test_gaussian_actor_uses_the_unclipped_sample_and_the_env_gets_it_clipped(module):
    torch.manual_seed(0)
    actor = module.GaussianActor(obs_dim=3, action_dim=1, hidden_size=8, log_std_init=1.0)  # σ = e: wide
    obs = torch.zeros(500, 3)
    with torch.no_grad():
        actions, log_probs = actor.sample(obs)
        assert torch.allclose(log_probs, actor.log_prob_entropy(obs, actions)[0])
    space = gym.spaces.Box(-2.0, 2.0, shape=(1,), dtype=np.float32)
    assert (actions.abs() > 2).any(), "the sample itself is never clipped"
    sent = module.env_actions(actions.numpy(), space)
    assert np.abs(sent).max() == 2.0 and np.array_equal(sent, np.clip(actions.numpy(), -2, 2))


@pytest.mark.parametrize("module", [a2c, a3c], ids=["a2c", "a3c"])
def test_bound_mean_squashes_only_the_mean_into_the_bounds(module):
    torch.manual_seed(0)
    actor = module.GaussianActor(obs_dim=3, action_dim=2, hidden_size=8, log_std_init=0.0)
    obs = torch.randn(50, 3) * 100  # large inputs: the raw mean network's output leaves the bounds
    with torch.no_grad():
        nn.init.normal_(actor.mean[-1].weight, std=10.0)
        raw = actor.mean(obs)
        assert (raw.abs() > 5).any()
        low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
        actor.bound_mean(low, high)
        expected = torch.tensor([0.0, 0.5]) + torch.tensor([2.0, 0.5]) * torch.tanh(raw)  # center + half-width · tanh
        assert torch.allclose(actor.mode(obs), expected, atol=1e-6)
        assert (actor.mode(obs) >= torch.tensor(low, dtype=torch.float32)).all()
        assert (actor.mode(obs) <= torch.tensor(high, dtype=torch.float32)).all()
        actions, log_probs = actor.sample(obs)  # the sample is still an unsquashed Gaussian around that mean
        reference = torch.distributions.Normal(expected, 1.0).log_prob(actions).sum(-1)
        assert torch.allclose(log_probs, reference, atol=1e-5)
    assert set(actor.state_dict()) >= {"center", "half_width"}, "the bounds travel with the weights in model.pt"
    unbounded = module.GaussianActor(obs_dim=3, action_dim=1, hidden_size=8, log_std_init=0.0)
    unbounded.bound_mean(np.array([-np.inf]), np.array([np.inf]))  # infinite bounds: left unbounded
    assert unbounded.center is None


# ---------------------------------------------------------------------------------------------------
# PPO's clipped objective
# ---------------------------------------------------------------------------------------------------
def test_clipped_objective_has_no_gradient_where_the_ratio_is_clipped_in_the_advantages_direction():
    ratios = torch.tensor([1.5, 0.5, 1.5, 0.5, 1.1])
    advantages = torch.tensor([1.0, -1.0, -1.0, 1.0, 2.0])
    new_log_prob = ratios.log().requires_grad_()
    loss, approx_kl, clip_fraction = ppo.clipped_surrogate(new_log_prob, torch.zeros(5), advantages, 0.2)
    loss.backward()
    # samples 0 and 1: the ratio left [0.8, 1.2] on the side their advantage pushes it: clipped, no gradient.
    # The others take the unclipped branch: d/dlog π of −r Â / n is −r Â / n.
    expected_grad = torch.tensor([0.0, 0.0, 1.5 * 1.0, -0.5 * 1.0, -1.1 * 2.0]) / 5
    assert torch.allclose(new_log_prob.grad, expected_grad)
    expected_loss = -(1.2 * 1.0 + 0.8 * -1.0 + 1.5 * -1.0 + 0.5 * 1.0 + 1.1 * 2.0) / 5
    assert loss.item() == pytest.approx(expected_loss, rel=1e-6)
    assert clip_fraction.item() == pytest.approx(4 / 5)
    assert approx_kl.item() == pytest.approx(((ratios - 1) - ratios.log()).mean().item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------------
# Normalization: the statistics, their checkpoint, and their use by the evaluation
# ---------------------------------------------------------------------------------------------------
@BOTH
def test_running_mean_std_matches_numpy(module):
    rng = np.random.default_rng(1)
    batches = [rng.normal(3.0, 2.0, size=(n, 2)) for n in (5, 1, 17)]
    rms = module.RunningMeanStd((2,))
    for batch in batches:
        rms.update(batch)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, everything.mean(0), rtol=1e-4)
    np.testing.assert_allclose(rms.var, everything.var(0), rtol=1e-4)


@BOTH
def test_normalization_is_saved_with_the_model_and_used_by_the_evaluation(module, monkeypatch, tmp_path):
    seen = []  # the observations given to the deterministic policy: only the evaluations call mode()
    original_mode = module.GaussianActor.mode
    monkeypatch.setattr(module.GaussianActor, "mode", lambda self, obs: seen.append(obs) or original_mode(self, obs))
    extra = dict(update_epochs=1, num_minibatches=1) if module is ppo else {}
    summary = module.train(module.Args(env_id="Pendulum-v1", total_timesteps=256, num_envs=2, num_steps=32,
                                       norm_obs=True, norm_reward=True, eval_episodes=1, run_dir=str(tmp_path),
                                       cuda=False, **extra))
    checkpoint = torch.load(os.path.join(summary["run_dir"], "model.pt"), weights_only=True)
    obs_rms = checkpoint["normalizer"]["obs_rms"]
    assert obs_rms["count"] > 256 and checkpoint["normalizer"]["return_rms"]["count"] > 256
    assert not torch.allclose(obs_rms["var"], torch.ones(3, dtype=torch.float64)), "no statistics were gathered"
    # train()'s evaluation saw its first observation normalized by the saved statistics, frozen: model.pt,
    # written after the evaluation, counts only the 2 first observations and the 2 × 128 of the training steps
    args = module.Args(**checkpoint["args"])
    raw, _ = gym.make("Pendulum-v1").reset(seed=args.seed + 10_000)
    expected = (raw - obs_rms["mean"].numpy()) / np.sqrt(obs_rms["var"].numpy() + 1e-8)
    np.testing.assert_allclose(seen[0].numpy(), expected, rtol=1e-5)
    assert obs_rms["count"] == pytest.approx(1e-4 + 2 + 256), "the evaluation updated the statistics"

    # rebuild the policy from model.pt alone and evaluate it again: the same returns
    normalizer = module.Normalizer(3, args.num_envs, args.gamma, args.norm_obs, args.norm_reward)
    normalizer.load_state_dict(checkpoint["normalizer"])
    actor = module.GaussianActor(3, 1, args.hidden_size, args.log_std_init)
    if getattr(args, "bound_mean", False):  # a2c.py: the bounds are buffers, saved in model.pt
        actor.bound_mean(np.array([-1.0]), np.array([1.0]))  # placeholders, overwritten by the checkpoint
    actor.load_state_dict(checkpoint["actor"])
    action_space = gym.make("Pendulum-v1").action_space

    def policy(obs):  # as train() builds it: normalized with the statistics frozen, the mean clipped to the bounds
        action = actor.mode(torch.as_tensor(normalizer.observation(obs, update=False)))
        return module.env_actions(action.numpy(), action_space)

    seen.clear()
    returns = module.evaluate(policy, args)
    assert returns == json.load(open(os.path.join(summary["run_dir"], "eval.json")))["returns"]
    np.testing.assert_allclose(seen[0].numpy(), expected, rtol=1e-5)
    assert normalizer.obs_rms.count == obs_rms["count"], "the evaluation updated the statistics"


# ---------------------------------------------------------------------------------------------------
# Per-env defaults
# ---------------------------------------------------------------------------------------------------
@BOTH
def test_per_env_defaults_fill_only_the_settings_left_unset(module):
    pendulum = module.with_env_defaults(module.Args(env_id="Pendulum-v1", gamma=0.5), gym.make("Pendulum-v1"))
    assert pendulum.gamma == 0.5  # given on the command line: kept
    assert pendulum.gae_lambda == module.ENV_DEFAULTS["Pendulum-v1"]["gae_lambda"]
    assert pendulum.total_timesteps == module.ENV_DEFAULTS["Pendulum-v1"]["total_timesteps"]
    # an env without its own row takes the row of the tuned env with the same kind of action space
    acrobot = module.with_env_defaults(module.Args(env_id="Acrobot-v1"), gym.make("Acrobot-v1"))
    assert acrobot.num_envs == module.ENV_DEFAULTS["CartPole-v1"]["num_envs"]
    assert None not in vars(acrobot).values()


# ---------------------------------------------------------------------------------------------------
# Updates per rollout: A2C one gradient step, PPO update_epochs × num_minibatches
# ---------------------------------------------------------------------------------------------------
@BOTH
def test_gradient_steps_per_rollout(module, tmp_path):
    steps = []
    hook = register_optimizer_step_post_hook(lambda *_: steps.append(1))
    extra = dict(update_epochs=3, num_minibatches=4) if module is ppo else {}
    try:
        module.train(module.Args(total_timesteps=96, num_envs=2, num_steps=16, eval_episodes=0, save_model=False,
                                 run_dir=str(tmp_path), cuda=False, **extra))
    finally:
        hook.remove()
    rollouts = 96 // (2 * 16)
    assert len(steps) == (rollouts * 3 * 4 if module is ppo else rollouts)
