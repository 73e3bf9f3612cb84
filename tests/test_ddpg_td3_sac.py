"""The math of ddpg.py, td3.py and sac.py: soft updates, targets, TD3's smoothing, SAC's squashed
log-probability and α loss, actions within any bounds, and terminated against truncated transitions.

Then the updates and the loop that calls them (issue 13): one-update tests run each script's own update_critic,
update_actor and update_alpha once, with plain SGD, on linear networks whose step is written out here; call-site
tests spy on them during a short train() and check what the loop passes and when (γ, τ, the targets' Polyak
averages, TD3's delay and smoothing noise, SAC's α) and what it logs. Last, the two review findings: SAC's target
entropy independent of the action bounds, and no run that ends before its first gradient step."""

import csv
import inspect
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
from conftest import TIME_LIMIT, CountEnv

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


def test_td3_q1_value_is_the_first_critic_of_the_pair():
    """The actor's objective (TD3-5) calls q1_value, a shortcut for the first output of the critic pair: the
    same network, fed the same rescaled action. Catches it fed the raw action, or the second critic."""
    torch.manual_seed(0)
    critic = td3.Critic(3, BOX, 8)
    obs = torch.randn(6, 3)
    actions = torch.as_tensor(BOX.low) + torch.rand(6, 2) * torch.as_tensor(BOX.high - BOX.low)
    with torch.no_grad():
        assert torch.allclose(critic.q1_value(obs, actions), critic(obs, actions)[0])


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
                                 hidden_size=16, log_frequency=50, eval_episodes=0, eval_every=0, autotune=False, alpha=0.3,
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
                             buffer_size=64, hidden_size=8, eval_episodes=1, eval_every=0, run_dir=str(tmp_path), cuda=False,
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
@pytest.mark.parametrize("limit", ["", "AtLimit"], ids=["before-the-limit", "at-the-limit"])
def test_termination_is_stored(module, limit, monkeypatch, tmp_path):
    """A termination is stored as terminated, also when the time limit cuts the episode on the same step
    (terminated and truncated both true)."""
    added = recorded_transitions(module, monkeypatch, tmp_path, f"CountTerminated{limit}Continuous-v0", steps=30)
    assert [terminated for _, _, terminated, _ in added] == [False, False, True] * 10
    assert all(next_obs[0] == obs[0] + 1 for obs, next_obs, _, _ in added)


# ---------------------------------------------------------------------------------------------------
# One update on networks we can compute by hand (issue 13). Each script's own update_critic, update_actor
# (and sac's update_alpha) run once with plain SGD, so the step is lr · gradient; the expected parameters,
# loss and return values are written out below, not taken from the scripts' helpers.
# ---------------------------------------------------------------------------------------------------
LR, GAMMA = 0.1, 0.9
OBS = torch.tensor([[1.0, 0.5, -1.0], [0.2, -1.0, 0.5], [-0.6, 0.4, 1.0]])
ACTIONS = torch.tensor([[0.5, 2.0], [-1.0, 6.0], [1.5, 9.0]])  # within BOX
BATCH = (OBS, ACTIONS, REWARDS, NEXT_OBS, TERMINATED)


class LinearCritics(nn.Module):
    """Q_i(s, a) = w_i · [s, a], one row of `weights` per critic: one critic like ddpg's, or twins like td3's and
    sac's (then forward returns a tuple)."""

    def __init__(self, weights):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(weights))

    def forward(self, obs, action):
        q = torch.cat([obs, action], dim=1) @ self.w.T
        return q[:, 0] if len(self.w) == 1 else tuple(q.unbind(dim=1))

    def q1_value(self, obs, action):  # td3's: the first critic alone
        return self.forward(obs, action)[0]


class LinearActor(nn.Module):
    """A deterministic actor μ(s) = W s (no tanh, no bounds)."""

    def __init__(self, weight):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(weight))

    def forward(self, obs):
        return obs @ self.w.T


def expected_critic_step(weights, y):
    """One SGD step on Σ_i MSE(Q_i(s, a), y) for the linear critics Q_i = w_i · x, x = [s, a]:
    w_i ← w_i − lr · (2/n) Σ_j (w_i · x_j − y_j) x_j. Returns (new weights, loss, Q_1(s, a))."""
    x = torch.cat([OBS, ACTIONS], dim=1)
    errors = x @ weights.T - y[:, None]  # one column per critic
    return weights - LR * 2 * errors.T @ x / len(x), (errors ** 2).mean(dim=0).sum(), (x @ weights.T)[:, 0]


def check_critic_step(module, weights, target, y, *extra, **keywords):
    """Run module.update_critic once on BATCH with SGD and compare with expected_critic_step(weights, y);
    `target` is what update_critic takes third (the target actor, or sac's actor); `extra` and
    `keywords` are its arguments after γ (td3's smoothing noise is keyword-only)."""
    critic = LinearCritics(weights)
    critic_target = LinearCritics([[1.0, 0.0, 0.0, 0.5, 0.1], [-1.0, 0.0, 0.0, 1.0, 0.2]][:len(weights)])
    target_before = critic_target.w.detach().clone()
    loss, q_values = module.update_critic(critic, torch.optim.SGD(critic.parameters(), lr=LR), target, critic_target,
                                          BATCH, GAMMA, *extra, **keywords)
    new_weights, expected_loss, expected_q = expected_critic_step(torch.tensor(weights), y)
    assert torch.allclose(critic.w, new_weights, atol=1e-5), "the critic did not step down its loss toward y"
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-5)
    assert torch.allclose(q_values, expected_q, atol=1e-5)
    assert torch.equal(critic_target.w, target_before), "the critic update must not touch the target critics"


# Q'_1(s', a') = s'_0 + 0.5 a'_0 + 0.1 a'_1, Q'_2(s', a') = −s'_0 + a'_0 + 0.2 a'_1: the target critics of
# check_critic_step. At a' = (1, 5) they are (4, 0, 3) and (−1, 3, 0) on NEXT_OBS: row 0 takes Q'_2, row 1 Q'_1.
def target_q(next_actions):
    """(Q'_1, Q'_2) of check_critic_step's target critics at (NEXT_OBS, next_actions), written out."""
    s0, a0, a1 = NEXT_OBS[:, 0], next_actions[:, 0], next_actions[:, 1]
    return s0 + 0.5 * a0 + 0.1 * a1, -s0 + a0 + 0.2 * a1


def test_ddpg_update_critic_is_one_step_on_the_squared_td_error():
    """Catches a critic loss of the wrong sign (the critic would climb its error) and a target that is not
    r + γ (1 − terminated) Q'(s', μ'(s'))."""
    next_q, _ = target_q(torch.tensor([[1.0, 5.0]] * 3))  # μ'(s') = (1, 5)
    y = REWARDS + GAMMA * (1 - TERMINATED) * next_q
    check_critic_step(ddpg, [[0.2, -0.1, 0.3, 0.4, 0.1]], constant_actor(ddpg, [0.5, 0.0]), y)


def test_td3_update_critic_regresses_both_critics_on_the_smaller_target_critic():
    """Catches min → max in the clipped double Q, a wrong sign of the critic loss, one critic left out."""
    q1, q2 = target_q(torch.tensor([[1.0, 5.0]] * 3))  # μ'(s') = (1, 5); σ̃ = 0: no smoothing noise
    assert (q1 < q2).any() and (q2 < q1).any()
    y = REWARDS + GAMMA * (1 - TERMINATED) * torch.where(q1 < q2, q1, q2)
    check_critic_step(td3, [[0.2, -0.1, 0.3, 0.4, 0.1], [-0.3, 0.2, 0.1, -0.2, 0.3]],
                      constant_actor(td3, [0.5, 0.0]), y, policy_noise=0.0, noise_clip=0.5)


def test_sac_update_critic_subtracts_the_entropy_term_from_the_smaller_target_critic():
    """Catches the entropy term −α log π(ã'|s') dropped from the target (or added), min → max in the target,
    and a wrong sign of the critic loss."""
    next_actions, next_log_prob, alpha = torch.tensor([[1.0, 5.0]] * 3), torch.tensor([-1.0, 2.0, 0.5]), 0.5
    q1, q2 = target_q(next_actions)
    y = REWARDS + GAMMA * (1 - TERMINATED) * (torch.where(q1 < q2, q1, q2) - alpha * next_log_prob)
    check_critic_step(sac, [[0.2, -0.1, 0.3, 0.4, 0.1], [-0.3, 0.2, 0.1, -0.2, 0.3]],
                      lambda obs: (next_actions, next_log_prob), y, alpha)


def test_td3_update_critic_evaluates_the_target_critics_at_smoothed_actions():
    """Catches TD3-1's target policy smoothing removed from the target (Q' evaluated at μ'(s') itself): the
    actions Q' sees are μ'(s') plus noise of σ̃ · scale, clipped to ±c · scale."""
    torch.manual_seed(0)
    seen = []

    def critic_target(obs, action):  # records the actions of the target and returns Q'_1 = Q'_2 = 0
        seen.append(action)
        return torch.zeros(len(obs)), torch.zeros(len(obs))

    n, policy_noise, noise_clip = 4000, 0.3, 0.4
    critic = LinearCritics([[0.0] * 5, [0.0] * 5])
    batch = (torch.zeros(n, 3), torch.zeros(n, 2), torch.zeros(n), torch.zeros(n, 3), torch.zeros(n))
    td3.update_critic(critic, torch.optim.SGD(critic.parameters(), lr=LR), constant_actor(td3, [0.0, 0.0]),
                      critic_target, batch, GAMMA, policy_noise=policy_noise, noise_clip=noise_clip)
    noise = seen[0] - torch.tensor([0.0, 5.0])  # μ'(s') = (0, 5), the middle of BOX; scale (2, 5)
    scale = torch.tensor([2.0, 5.0])
    assert torch.allclose(noise.abs().amax(dim=0), noise_clip * scale), "the noise is not clipped to ±c · scale"
    assert torch.all(noise.std(dim=0) > 0.7 * policy_noise * scale), "no (or too little) smoothing noise"
    assert torch.all(noise.std(dim=0) < policy_noise * scale)


@pytest.mark.parametrize("module", [ddpg, td3], ids=lambda m: m.__name__)
def test_update_actor_moves_the_action_uphill_on_the_first_critic(module):
    """Catches a sign flip of the actor loss −mean Q_1(s, μ(s)) (the actor would descend the critic). For
    μ(s) = W s and Q_1(s, a) = e · s + c · a the gradient of the loss is −c mean(s)ᵀ, so W ← W + lr c mean(s)ᵀ.
    td3's second critic has another slope: the actor follows Q_1 only, as in the paper."""
    weight = [[0.1, -0.2, 0.3], [0.0, 0.4, -0.1]]
    actor = LinearActor(weight)
    critic = LinearCritics([[0.5, 0.1, -0.2, 1.0, -2.0], [0.3, 0.0, 0.1, -3.0, 0.5]][:1 if module is ddpg else 2])
    critic_before = critic.w.detach().clone()
    c, e = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.1, -0.2])
    q_before = OBS @ e + OBS @ torch.tensor(weight).T @ c
    loss = module.update_actor(actor, torch.optim.SGD(actor.parameters(), lr=LR), critic, BATCH)
    assert loss.item() == pytest.approx(-q_before.mean().item(), rel=1e-6)
    assert torch.allclose(actor.w, torch.tensor(weight) + LR * torch.outer(c, OBS.mean(dim=0)), atol=1e-6)
    assert (OBS @ e + OBS @ actor.w.T @ c).mean() > q_before.mean(), "Q(s, μ(s)) did not rise"
    assert torch.equal(critic.w, critic_before), "the actor step must not change the critic"
    assert critic.w.grad is None and critic.w.requires_grad, "the critic is frozen for the actor step only"


class GaussianActor(nn.Module):
    """A reparameterized one-dimensional Gaussian policy with fixed noise ε: ã = m + e^ℓ ε, and
    log π(ã|s) = −ℓ − ε²/2 − ½ log 2π, with m and ℓ the parameters (no tanh, the same for every state)."""

    def __init__(self, m, log_std, eps):
        super().__init__()
        self.m, self.log_std, self.eps = nn.Parameter(torch.tensor(m)), nn.Parameter(torch.tensor(log_std)), eps

    def forward(self, obs):
        actions = self.m + self.log_std.exp() * self.eps
        return actions, (-self.log_std - self.eps ** 2 / 2 - 0.5 * math.log(2 * math.pi)).sum(dim=1)


def test_sac_update_actor_is_one_step_on_alpha_log_pi_minus_the_smaller_critic():
    """Catches a sign flip of the actor loss, the entropy term α log π dropped from it, and min → max over the
    twin critics. With ã = m + e^ℓ ε, Q_i(s, a) = e_i · s + c_i a and i* the smaller critic in each row:
    dL/dm = −mean c_i*, dL/dℓ = −α − mean c_i* e^ℓ ε."""
    m, log_std, alpha = 0.2, -0.5, 0.5
    eps = torch.tensor([[0.5], [-1.0], [1.5]])
    actor = GaussianActor(m, log_std, eps)
    critic = LinearCritics([[1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, -1.0]])  # Q1 = s_0 + 2a, Q2 = s_2 − a
    actions = m + math.exp(log_std) * eps[:, 0]
    q1, q2 = OBS[:, 0] + 2 * actions, OBS[:, 2] - actions
    assert (q1 < q2).any() and (q2 < q1).any()
    slope = torch.where(q1 < q2, 2.0, -1.0)  # dQ_i*/da
    log_prob = -log_std - eps[:, 0] ** 2 / 2 - 0.5 * math.log(2 * math.pi)
    loss, returned_log_prob = sac.update_actor(actor, torch.optim.SGD(actor.parameters(), lr=LR), critic, BATCH, alpha)
    assert loss.item() == pytest.approx((alpha * log_prob - torch.minimum(q1, q2)).mean().item(), rel=1e-6)
    assert torch.allclose(returned_log_prob, log_prob)
    assert actor.m.item() == pytest.approx(m + LR * slope.mean().item(), rel=1e-6)
    expected_log_std = log_std - LR * (-alpha - (slope * math.exp(log_std) * eps[:, 0]).mean().item())
    assert actor.log_std.item() == pytest.approx(expected_log_std, rel=1e-6)
    assert critic.w.grad is None and critic.w.requires_grad, "the critics are frozen for the actor step only"


@pytest.mark.parametrize("entropy, alpha_goes", [(3.0, "down"), (-4.0, "up")])
def test_sac_update_alpha_is_one_step_toward_the_target_entropy(entropy, alpha_goes):
    """Catches a reversed α update: α must fall when the entropy −mean log π is above the target H̄ and rise when
    below. J(α) = −α mean(log π + H̄), so d J / d log α = −α (mean log π + H̄)."""
    alpha, target_entropy = 0.5, -1.0
    log_alpha = torch.tensor([math.log(alpha)], requires_grad=True)
    log_prob = torch.tensor([-entropy - 0.5, -entropy + 0.5], requires_grad=True)
    new_alpha = sac.update_alpha(log_alpha, torch.optim.SGD([log_alpha], lr=LR), log_prob, target_entropy)
    expected_log_alpha = math.log(alpha) - LR * (-alpha * (-entropy + target_entropy))
    assert log_alpha.item() == pytest.approx(expected_log_alpha, rel=1e-6)
    assert new_alpha.item() == pytest.approx(math.exp(expected_log_alpha), rel=1e-6) and not new_alpha.requires_grad
    assert (new_alpha.item() < alpha) == (alpha_goes == "down")
    assert log_prob.grad is None, "the α step must not reach the actor"


# ---------------------------------------------------------------------------------------------------
# The loop: spies on the update functions during a short train() check what it passes and when (issue 13)
# ---------------------------------------------------------------------------------------------------
LEARNING_STARTS, UPDATES = 16, 12  # 12 gradient steps after 16 random ones
SPIED = dict(env_id="Pendulum-v1", total_timesteps=LEARNING_STARTS + UPDATES, learning_starts=LEARNING_STARTS,
             batch_size=16, buffer_size=100, hidden_size=8, log_frequency=4, gamma=0.77, tau=0.3, eval_episodes=0,
             eval_every=0, cuda=False, save_model=False)
EXTRA = {ddpg: {}, td3: dict(policy_frequency=3, policy_noise=0.3, noise_clip=0.4), sac: dict(alpha=0.3)}
UPDATE_FUNCTIONS = ("update_critic", "update_actor", "update_alpha")


def spied_train(module, monkeypatch, tmp_path, **settings):
    """Train `module` with SPIED and EXTRA settings while spying on its update functions. Returns the calls in
    order, each a dict: name, step (the environment step), args (by parameter name), result, params (the
    parameter vector of every network at the call: actor and critic from Run.save, and the targets passed to
    update_critic), and for update_alpha the gradient of log α it left; and the rows of metrics.csv."""
    calls, networks, step = [], {}, [LEARNING_STARTS]
    original_save = module.Run.save

    def save(run, **parts):
        networks.update(actor=parts["actor"], critic=parts["critic"])
        original_save(run, **parts)

    def spy_on(name, original):
        signature = inspect.signature(original)

        def spy(*args, **kwargs):
            arguments = signature.bind(*args, **kwargs).arguments
            if name == "update_critic":
                step[0] += 1
                networks.update({k: v for k, v in arguments.items() if k in ("actor_target", "critic_target")})
            params = {k: nn.utils.parameters_to_vector(v.parameters()).detach().clone() for k, v in networks.items()}
            result = original(*args, **kwargs)
            call = dict(name=name, step=step[0], args=arguments, result=result, params=params)
            if name == "update_alpha":
                call["log_alpha_grad"] = arguments["log_alpha"].grad.clone()
            calls.append(call)
            return result
        return spy

    monkeypatch.setattr(module.Run, "save", save)
    for name in UPDATE_FUNCTIONS:
        if hasattr(module, name):
            monkeypatch.setattr(module, name, spy_on(name, getattr(module, name)))
    summary = module.train(module.Args(**{**SPIED, **EXTRA[module], "run_dir": str(tmp_path), **settings}))
    with open(os.path.join(summary["run_dir"], "metrics.csv"), newline="") as f:
        return calls, list(csv.DictReader(f))


def loss_of(result):
    """The loss update_actor returned (sac's returns the loss and log π)."""
    return result[0] if isinstance(result, tuple) else result


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_train_passes_gamma_and_the_targets_follow_by_polyak_averaging(module, monkeypatch, tmp_path):
    """Catches γ ignored at the call site, target networks that never follow (soft_update removed, τ = 0, or its
    arguments swapped so that the online network follows the target), and for td3 a delay removed: between two
    critic updates a target moves to θ' + τ (θ − θ') exactly when the targets are due (every step for ddpg and
    sac, every policy_frequency-th for td3), and stays put otherwise; td3's actor also changes only then."""
    calls, _ = spied_train(module, monkeypatch, tmp_path)
    critic_calls = [call for call in calls if call["name"] == "update_critic"]
    assert [call["step"] for call in critic_calls] == list(range(LEARNING_STARTS + 1, LEARNING_STARTS + UPDATES + 1))
    assert all(call["args"]["gamma"] == 0.77 for call in critic_calls)
    every = EXTRA[module].get("policy_frequency", 1)
    tau = SPIED["tau"]
    pairs = [("critic_target", "critic")] + ([("actor_target", "actor")] if module is not sac else [])
    for now, after in zip(critic_calls, critic_calls[1:]):
        due = now["step"] % every == 0
        before, later = now["params"], after["params"]
        assert (not torch.equal(before["actor"], later["actor"])) == due, f"actor update at step {now['step']}"
        for target, online in pairs:
            expected = before[target] + tau * (later[online] - before[target]) if due else before[target]
            assert torch.allclose(later[target], expected, atol=1e-6), f"{target} at step {now['step']}"
    for target, _ in pairs:
        first, last = critic_calls[0]["params"], critic_calls[-1]["params"]
        assert not torch.equal(first[target], last[target]), f"{target} never moved"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_targets_start_as_copies_of_the_learned_networks(module, monkeypatch, tmp_path):
    """Before the first update, φ' = φ (and for ddpg and td3 θ' = θ): the targets start as copies. Catches a
    target network left at its own random initialization, which the Polyak averages forget only slowly."""
    calls, _ = spied_train(module, monkeypatch, tmp_path)
    first = next(call for call in calls if call["name"] == "update_critic")["params"]
    assert torch.equal(first["critic_target"], first["critic"]), "φ' did not start as a copy of φ"
    if module is not sac:
        assert torch.equal(first["actor_target"], first["actor"]), "θ' did not start as a copy of θ"


def test_td3_train_delays_the_actor_and_passes_the_smoothing_noise(monkeypatch, tmp_path):
    """Catches TD3-3's delay removed (an actor update after every critic update instead of every
    policy_frequency-th) and the target policy smoothing noise dropped at the call site (σ̃ or c not passed)."""
    calls, _ = spied_train(td3, monkeypatch, tmp_path)
    expected = []
    for step in range(LEARNING_STARTS + 1, LEARNING_STARTS + UPDATES + 1):
        expected += [("update_critic", step)] + ([("update_actor", step)] if step % 3 == 0 else [])
    assert [(call["name"], call["step"]) for call in calls] == expected
    for call in calls:
        if call["name"] == "update_critic":
            assert (call["args"]["policy_noise"], call["args"]["noise_clip"]) == (0.3, 0.4)


def test_sac_train_passes_the_current_alpha_and_the_log_prob_of_the_actor_step(monkeypatch, tmp_path):
    """Catches a stale or fixed α at the call sites (the entropy term of the target and of the actor loss must use
    the α of the last update_alpha, the starting α before), and update_alpha fed other log-probabilities than
    those of the actor step, taken in [−1, 1] units: log π + log 2 on Pendulum, whose actions lie in [−2, 2]."""
    calls, _ = spied_train(sac, monkeypatch, tmp_path)
    assert [call["name"] for call in calls] == list(UPDATE_FUNCTIONS) * UPDATES
    alpha = torch.tensor([0.3])
    for critic_call, actor_call, alpha_call in zip(calls[::3], calls[1::3], calls[2::3]):
        assert torch.allclose(critic_call["args"]["alpha"], alpha)
        assert torch.allclose(actor_call["args"]["alpha"], alpha)
        assert torch.allclose(alpha_call["args"]["log_prob"], actor_call["result"][1] + math.log(2.0))
        alpha = alpha_call["result"]
    assert alpha.item() != pytest.approx(0.3), "α was never tuned"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_train_logs_the_losses_the_updates_return(module, monkeypatch, tmp_path):
    """Catches a sign flip of the actor (or critic) loss at the call site: each row of metrics.csv holds the losses
    that update_critic and the last update_actor returned (td3: nan before its first actor update), and sac's α
    and entropy −mean log π in [−1, 1] units (−mean log π − log 2 on Pendulum, whose actions lie in [−2, 2])."""
    calls, rows = spied_train(module, monkeypatch, tmp_path, log_frequency=1)
    assert [int(row["global_step"]) for row in rows] == list(range(LEARNING_STARTS + 1, LEARNING_STARTS + UPDATES + 1))
    for row in rows:
        so_far = [call for call in calls if call["step"] <= int(row["global_step"])]
        last = {call["name"]: call for call in so_far}
        critic_loss, q_values = last["update_critic"]["result"]
        assert float(row["critic_loss"]) == pytest.approx(critic_loss.item(), rel=1e-6)
        assert float(row["q_mean"]) == pytest.approx(q_values.mean().item(), rel=1e-6)
        if "update_actor" not in last:
            assert module is td3 and math.isnan(float(row["actor_loss"]))
            continue
        assert float(row["actor_loss"]) == pytest.approx(loss_of(last["update_actor"]["result"]).item(), rel=1e-6)
        if module is sac:
            assert float(row["alpha"]) == pytest.approx(last["update_alpha"]["result"].item(), rel=1e-6)
            entropy = -last["update_actor"]["result"][1].mean().item() - math.log(2.0)
            assert float(row["entropy"]) == pytest.approx(entropy, rel=1e-6)


# ---------------------------------------------------------------------------------------------------
# Review findings: the temperature's target independent of the action bounds; no run without a gradient step
# ---------------------------------------------------------------------------------------------------
class BoundedCountEnv(CountEnv):
    """conftest's CountEnv (observation [t, 1] whatever the action, reward 1) with actions in
    Box(−bound, bound, (dim,)): runs with other bounds see the same states."""

    def __init__(self, bound, dim):
        super().__init__(continuous=True)
        self.action_space = gym.spaces.Box(-bound, bound, shape=(dim,), dtype=np.float32)


BOUNDS, DIM = (1.0, 2.0, 0.4), 6
for _bound in BOUNDS:
    gym.register(f"BoundedCount{_bound}-v0", entry_point=BoundedCountEnv, max_episode_steps=TIME_LIMIT,
                 kwargs={"bound": _bound, "dim": DIM})


def test_sac_alpha_step_does_not_depend_on_the_action_bounds(monkeypatch, tmp_path):
    """The target entropy −dim(A) of Haarnoja et al. is meant for actions in [−1, 1]. Catches it compared with the
    entropy in env units, which is lower by Σ log scale for a = bias + scale · tanh(u): the first α gradient, for
    the same policy (same seed, same states, same noise), must be the same for bounds ±1, ±2 and ±0.4 in 6
    dimensions, and for ±1 it is −α (mean log π − dim(A))."""
    grads = {}
    for bound in BOUNDS:
        with monkeypatch.context() as spies:  # each run its own spies
            calls, _ = spied_train(sac, spies, tmp_path / str(bound), env_id=f"BoundedCount{bound}-v0",
                                   total_timesteps=LEARNING_STARTS + 1)
        first = next(call for call in calls if call["name"] == "update_alpha")
        grads[bound] = first["log_alpha_grad"].item()
        if bound == 1.0:
            log_prob = first["args"]["log_prob"]
            assert grads[bound] == pytest.approx(-0.3 * (log_prob.mean().item() - DIM), rel=1e-5)
    assert grads[2.0] == pytest.approx(grads[1.0], rel=1e-4, abs=1e-5)
    assert grads[0.4] == pytest.approx(grads[1.0], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
@pytest.mark.parametrize("total_timesteps", [100, 60])
def test_no_gradient_step_is_refused(module, total_timesteps, tmp_path, capsys):
    """Catches a run with total_timesteps at or below learning_starts, which would train nothing without a word:
    exit status 2 and one line naming learning_starts and both numbers, before any run folder."""
    with pytest.raises(SystemExit) as stop:
        module.train(module.Args(total_timesteps=total_timesteps, learning_starts=100, batch_size=16,
                                 run_dir=str(tmp_path), cuda=False, save_model=False))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "learning_starts" in err and "100" in err and str(total_timesteps) in err, err
    assert not os.listdir(tmp_path), "a rejected run must not leave a run folder"
