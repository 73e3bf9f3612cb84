"""The math of ddpg.py, td3.py and sac.py: soft updates, targets, TD3's smoothing, SAC's squashed
log-probability and α loss, actions within any bounds, and terminated against truncated transitions."""

import csv
import math
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

import ddpg
import sac
import td3
from conftest import TIME_LIMIT

MODULES = [ddpg, td3, sac]
# asymmetric bounds of two sizes: scale (2, 5), bias (0, 5)
BOX = gym.spaces.Box(np.array([-2.0, 0.0], dtype=np.float32), np.array([2.0, 10.0], dtype=np.float32))


def constant_actor(module, tanh_output):
    """An actor of `module` on BOX whose (mean) action is bias + scale · tanh_output for every observation."""
    actor = module.Actor(obs_dim=3, action_space=BOX, hidden_size=4)
    last = actor.net[-2] if module is not sac else actor.mean
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.atanh(torch.tensor(tanh_output)))
    return actor


class HandCritics(nn.Module):
    """Twin critics we compute by hand: Q1(s, a) = s_0 + a_0, Q2(s, a) = 2 s_0 − a_0."""

    def forward(self, obs, action):
        return obs[:, 0] + action[:, 0], 2 * obs[:, 0] - action[:, 0]


# ---------------------------------------------------------------------------------------------------
# Soft target updates and actions within the bounds (all three scripts)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_soft_update_is_tau_theta_plus_one_minus_tau_theta_target(module):
    torch.manual_seed(0)
    source, target = module.Critic(3, BOX, 8), module.Critic(3, BOX, 8)
    with torch.no_grad():  # multiples of 1/8 and τ = 1/4: every product and sum below is exact in float32
        for p, tp in zip(source.parameters(), target.parameters()):
            p.copy_(torch.randint(-40, 40, p.shape) / 8.0)
            tp.copy_(torch.randint(-40, 40, tp.shape) / 8.0)
    before = [(p.clone(), tp.clone()) for p, tp in zip(source.parameters(), target.parameters())]
    module.soft_update(target, source, tau=0.25)
    for (p, tp), p_after, tp_after in zip(before, source.parameters(), target.parameters()):
        assert torch.equal(tp_after, 0.25 * p + 0.75 * tp)
        assert torch.equal(p_after, p), "the soft update changed the learned network"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_actions_lie_within_any_bounds(module):
    torch.manual_seed(0)
    actor = module.Actor(3, BOX, 16)
    obs = 100 * torch.randn(1000, 3)  # large inputs push tanh to ±1
    actions = actor(obs)[0] if module is sac else actor(obs)
    low, high = torch.as_tensor(BOX.low), torch.as_tensor(BOX.high)
    assert actions.shape == (1000, 2)
    assert torch.all(actions >= low) and torch.all(actions <= high)
    assert actions[:, 1].max() > 9.9 and actions[:, 1].min() < 0.1, "the actor does not span [0, 10]"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_critic_sees_the_action_rescaled_to_minus_one_one(module):
    critic = module.Critic(1, BOX, 4)
    for name in ("net", "q1", "q2"):
        if hasattr(critic, name):
            setattr(critic, name, nn.Identity())  # the critic then returns its input row (obs, rescaled a)
    seen = critic(torch.full((3, 1), 7.0), torch.tensor([[-2.0, 0.0], [0.0, 5.0], [2.0, 10.0]]))
    for inputs in seen if module is not ddpg else [seen]:
        assert inputs.tolist() == [[7.0, -1.0, -1.0], [7.0, 0.0, 0.0], [7.0, 1.0, 1.0]]


# ---------------------------------------------------------------------------------------------------
# Targets (DDPG-3, TD3-1, TD3-2, SAC-2)
# ---------------------------------------------------------------------------------------------------
REWARDS, TERMINATED = torch.tensor([1.0, 0.5, -1.0]), torch.tensor([0.0, 0.0, 1.0])
NEXT_OBS = torch.tensor([[3.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])


def test_ddpg_target_uses_the_target_actor_and_critic():
    actor = constant_actor(ddpg, [0.5, 0.0])  # μ'(s') = (1, 5)
    critic = lambda obs, action: obs[:, 0] * action[:, 0] + action[:, 1]  # noqa: E731  a hand-built Q'
    y = ddpg.td_target(actor, critic, REWARDS, NEXT_OBS, TERMINATED, gamma=0.9)
    assert not y.requires_grad
    assert y.tolist() == pytest.approx([1.0 + 0.9 * (3.0 + 5.0), 0.5 + 0.9 * (-1.0 + 5.0), -1.0])


def test_td3_target_is_the_minimum_of_the_two_target_critics():
    actor = constant_actor(td3, [0.5, 0.0])  # μ'(s') = (1, 5); with σ̃ = 0 there is no smoothing noise
    y = td3.td_target(actor, HandCritics(), REWARDS, NEXT_OBS, TERMINATED, gamma=0.9, policy_noise=0.0,
                      noise_clip=0.5)
    # Q1 = (4, 0, 3), Q2 = (5, −3, 3): the minimum is Q1 in the first row, Q2 in the second
    assert not y.requires_grad
    assert y.tolist() == pytest.approx([1.0 + 0.9 * 4.0, 0.5 + 0.9 * -3.0, -1.0])


def test_td3_smoothed_target_action_stays_in_bounds_and_its_noise_within_the_clip():
    torch.manual_seed(0)
    actor = constant_actor(td3, [0.0, 0.9])  # μ'(s') = (0, 9.5): the middle of [−2, 2], near the top of [0, 10]
    next_obs = torch.zeros(20_000, 3)
    actions = td3.smoothed_target_action(actor, next_obs, policy_noise=1.0, noise_clip=0.5)
    low, high = torch.as_tensor(BOX.low), torch.as_tensor(BOX.high)
    assert torch.all(actions >= low) and torch.all(actions <= high)
    noise = actions - torch.tensor([0.0, 9.5])
    # c = 0.5 of the half-range: ±1 in the first dimension, ±2.5 in the second (there cut by the bound 10)
    assert noise[:, 0].abs().max().item() == pytest.approx(1.0)
    assert (noise[:, 0].abs() > 0.999).float().mean() > 0.5, "σ̃ = 1 > c: most draws are clipped to ±c"
    assert noise[:, 1].min().item() == pytest.approx(-2.5) and actions[:, 1].max().item() == 10.0
    small = td3.smoothed_target_action(actor, next_obs, policy_noise=0.1, noise_clip=0.5)[:, 0]
    assert small.std().item() == pytest.approx(0.1 * 2.0, rel=0.05)  # σ̃ in units of the half-range


def test_sac_target_subtracts_alpha_log_pi_from_the_smaller_target_critic():
    actions, log_prob = torch.tensor([[1.0, 0.0]] * 3), torch.tensor([-1.0, 2.0, 0.5])
    y = sac.td_target(lambda obs: (actions, log_prob), HandCritics(), REWARDS, NEXT_OBS, TERMINATED,
                      gamma=0.9, alpha=0.2)
    assert not y.requires_grad
    assert y.tolist() == pytest.approx([1.0 + 0.9 * (4.0 + 0.2), 0.5 + 0.9 * (-3.0 - 0.4), -1.0])


# ---------------------------------------------------------------------------------------------------
# SAC: the squashed log-probability and the α loss
# ---------------------------------------------------------------------------------------------------
def test_squashed_log_prob_matches_torch_transformed_distribution():
    u = torch.tensor([[-2.5, 0.3], [0.0, -1.1], [1.7, 3.0]], dtype=torch.float64)
    mean = torch.tensor([[0.1, -0.2], [0.5, 0.0], [-1.0, 2.0]], dtype=torch.float64)
    log_std = torch.tensor([[0.0, -0.5], [0.3, -1.0], [0.7, 0.2]], dtype=torch.float64)
    scale, bias = torch.tensor([2.0, 0.5], dtype=torch.float64), torch.tensor([0.0, 3.0], dtype=torch.float64)
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform(), AffineTransform(bias, scale)])
    a = bias + scale * torch.tanh(u)
    expected = reference.log_prob(a).sum(dim=1)
    assert torch.allclose(sac.squashed_log_prob(u, mean, log_std, scale), expected, atol=1e-8)


def test_squashed_log_prob_matches_a_finite_difference_jacobian():
    u, mean, log_std, scale, bias = 0.8, 0.2, -0.3, 2.0, 0.0
    h = 1e-6
    squash = lambda x: bias + scale * math.tanh(x)  # noqa: E731
    jacobian = (squash(u + h) - squash(u - h)) / (2 * h)  # da/du, by a central difference
    std = math.exp(log_std)
    log_normal = -0.5 * ((u - mean) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi))
    got = sac.squashed_log_prob(torch.tensor([[u]], dtype=torch.float64), torch.tensor([[mean]], dtype=torch.float64),
                                torch.tensor([[log_std]], dtype=torch.float64), torch.tensor([scale], dtype=torch.float64))
    assert got.item() == pytest.approx(log_normal - math.log(jacobian), abs=1e-7)


def test_squashed_log_prob_stays_finite_where_tanh_saturates():
    u = torch.tensor([[12.0], [-15.0]])  # tanh(u) rounds to ±1 in float32: log(1 − tanh²) would be −inf
    got = sac.squashed_log_prob(u, torch.zeros(2, 1), torch.zeros(2, 1), torch.ones(1))
    # log(1 − tanh²(u)) → log 4 − 2|u| for large |u|
    expected = -0.5 * u[:, 0] ** 2 - 0.5 * math.log(2 * math.pi) - (math.log(4.0) - 2 * u[:, 0].abs())
    assert torch.all(torch.isfinite(got)) and torch.allclose(got, expected, rtol=1e-5)


def test_sac_actor_returns_the_log_prob_of_its_own_sample():
    torch.manual_seed(0)
    actor = sac.Actor(3, BOX, 8)
    obs = torch.randn(500, 3)
    actions, log_prob = actor(obs)
    hidden = actor.trunk(obs)
    mean, std = actor.mean(hidden), actor.log_std(hidden).exp()
    reference = TransformedDistribution(Normal(mean.double(), std.double()),
                                        [TanhTransform(), AffineTransform(actor.action_bias.double(),
                                                                          actor.action_scale.double())])
    inside = ((actions - actor.action_bias).abs() < 0.999 * actor.action_scale).all(dim=1)  # atanh stays exact
    expected = reference.log_prob(actions.double()).sum(dim=1)
    assert inside.sum() > 400
    assert torch.allclose(log_prob[inside].double(), expected[inside], atol=1e-3)
    assert log_prob.requires_grad, "the actor's sample must be reparameterized"


@pytest.mark.parametrize("entropy, alpha_goes", [(3.0, "down"), (-4.0, "up")])
def test_alpha_loss_moves_alpha_toward_the_target_entropy(entropy, alpha_goes):
    target_entropy = -1.0
    log_alpha = torch.tensor([math.log(0.5)], requires_grad=True)
    log_prob = torch.full((8,), -entropy, requires_grad=True)  # entropy is −E[log π]
    loss = sac.alpha_loss(log_alpha, log_prob, target_entropy)
    loss.backward()
    # dJ/d(log α) = −α (E[log π] + H̄)
    assert log_alpha.grad.item() == pytest.approx(-0.5 * (-entropy + target_entropy))
    assert log_prob.grad is None, "the α loss must not reach the actor"
    torch.optim.SGD([log_alpha], lr=0.1).step()
    assert (log_alpha.exp().item() < 0.5) == (alpha_goes == "down")


def test_no_autotune_keeps_alpha_fixed(tmp_path):
    summary = sac.train(sac.Args(total_timesteps=300, learning_starts=100, batch_size=16, buffer_size=300,
                                 hidden_size=16, log_frequency=50, eval_episodes=0, autotune=False, alpha=0.3,
                                 run_dir=str(tmp_path), cuda=False, save_model=False))
    with open(os.path.join(summary["run_dir"], "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(float(row["alpha"]) == pytest.approx(0.3) for row in rows)


# ---------------------------------------------------------------------------------------------------
# Terminated against truncated transitions in the replay buffer
# ---------------------------------------------------------------------------------------------------
def recorded_transitions(module, monkeypatch, tmp_path, env_id, steps):
    """Train `module` on env_id and return every transition the loop put in the replay buffer."""
    added = []
    original_add = module.ReplayBuffer.add

    def spy(self, obs, action, reward, next_obs, terminated):
        added.append((np.array(obs), np.array(next_obs), bool(terminated), np.array(action)))
        original_add(self, obs, action, reward, next_obs, terminated)

    monkeypatch.setattr(module.ReplayBuffer, "add", spy)
    module.train(module.Args(env_id=env_id, total_timesteps=steps, learning_starts=8, batch_size=4,
                             buffer_size=64, hidden_size=8, eval_episodes=1, run_dir=str(tmp_path), cuda=False,
                             save_model=False))
    for _, _, _, action in added:
        assert action.shape == (1,) and -1.0 <= action[0] <= 1.0
    return added


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_truncation_bootstraps_from_the_real_final_observation(module, monkeypatch, tmp_path):
    added = recorded_transitions(module, monkeypatch, tmp_path, "CountTruncatedContinuous-v0", steps=40)
    assert len(added) == 40
    assert not any(terminated for _, _, terminated, _ in added), "a time limit was stored as a termination"
    for obs, next_obs, _, _ in added:
        # s' is always the successor of s, also at the time limit (not the first obs of the next episode)
        assert next_obs[0] == obs[0] + 1 and next_obs[0] <= TIME_LIMIT
    assert sum(next_obs[0] == TIME_LIMIT for _, next_obs, _, _ in added) == 40 // TIME_LIMIT


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_termination_is_stored(module, monkeypatch, tmp_path):
    added = recorded_transitions(module, monkeypatch, tmp_path, "CountTerminatedContinuous-v0", steps=30)
    assert [terminated for _, _, terminated, _ in added] == [False, False, True] * 10
    assert all(next_obs[0] == obs[0] + 1 for obs, next_obs, _, _ in added)
