"""Rainbow's math (issue 16): C51's projection, n-step returns at episode ends and time limits, NoisyNet's
factorized noise and its noise-free evaluation, one update written out by hand (double target, dueling head,
PER weights and new priorities), and what train() passes to the update, the buffer and the evaluation.

Each test is built to fail when the math breaks: a wrong split between neighbouring atoms, a bootstrap after a
termination, a γ instead of γ^k, a window reaching into the next episode, independent (not factorized) noise,
noise left on in the evaluation, the target network choosing a* with --double, weights left out of the loss.
"""

import csv
import inspect
import math
import os
import re
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import rainbow
from conftest import TIME_LIMIT


def flat(net):
    return nn.utils.parameters_to_vector(net.parameters()).detach().clone()


# ---------------------------------------------------------------------------------------------------
# RAINBOW-5: C51's projection
# ---------------------------------------------------------------------------------------------------
def reference_projection(support, probs, reward, terminated, discount):
    """m for one transition, atom by atom: T z = r + γ^k (1 − terminated) z clipped to [v_min, v_max], and its
    probability split between the atoms on either side in proportion to the distance to the other one."""
    support, probs = [float(z) for z in support], [float(p) for p in probs]
    v_min, v_max = support[0], support[-1]
    delta_z = (v_max - v_min) / (len(support) - 1)
    m = [0.0] * len(support)
    for z, p in zip(support, probs):
        tz = min(max(float(reward) + (0.0 if terminated else float(discount)) * z, v_min), v_max)
        b = (tz - v_min) / delta_z
        lower, upper = math.floor(b), math.ceil(b)
        if lower == upper:
            m[lower] += p
        else:
            m[lower] += p * (upper - b)
            m[upper] += p * (b - lower)
    return m


FIVE_ATOMS = torch.linspace(-2.0, 2.0, 5)  # z = −2, −1, 0, 1, 2 and Δz = 1
P = [0.1, 0.2, 0.3, 0.25, 0.15]


def test_projection_by_hand_on_five_atoms():
    """Each row worked out by hand, with b = T z + 2 the position of T z in atoms."""
    rows = [  # (reward, terminated, discount, m)
        # T z = 0.5 + 0.5 z = −0.5, 0, 0.5, 1, 1.5: b = 1.5, 2 (on an atom), 2.5, 3 (on an atom), 3.5
        (0.5, 0.0, 0.5, [0.0, 0.05, 0.2 + 0.05 + 0.15, 0.15 + 0.25 + 0.075, 0.075]),
        # T z = 1.5 + z = −0.5, 0.5, 1.5, 2.5, 3.5: the last two beyond v_max, clipped to 2
        (1.5, 0.0, 1.0, [0.0, 0.05, 0.05 + 0.1, 0.1 + 0.15, 0.15 + 0.25 + 0.15]),
        # T z = −3 + 0.5 z <= −2 for every atom: everything below v_min lands on it
        (-3.0, 0.0, 0.5, [1.0, 0.0, 0.0, 0.0, 0.0]),
        # terminated: T z = r for every atom, no bootstrap whatever the discount; b = 2.3
        (0.3, 1.0, 0.9, [0.0, 0.0, 0.7, 0.3, 0.0]),
        # terminated on an atom (l = u): all of the mass there, none lost
        (1.0, 1.0, 0.9, [0.0, 0.0, 0.0, 1.0, 0.0]),
        # on the end atoms exactly (b = 0 and b = 4)
        (-2.0, 1.0, 0.9, [1.0, 0.0, 0.0, 0.0, 0.0]),
        (2.0, 1.0, 0.9, [0.0, 0.0, 0.0, 0.0, 1.0]),
    ]
    rewards, terminated, discounts, expected = (torch.tensor(column) for column in zip(*rows))
    m = rainbow.project_distribution(FIVE_ATOMS, torch.tensor([P] * len(rows)), rewards, terminated, discounts)
    assert torch.allclose(m, expected, atol=1e-6), m
    assert torch.allclose(m.sum(1), torch.ones(len(rows)), atol=1e-6), "the projection lost probability mass"
    for row, (reward, done, discount, _) in zip(m, rows):  # the loop reference agrees with the hand computation
        assert np.allclose(reference_projection(FIVE_ATOMS, P, reward, done, discount), row, atol=1e-6)


def test_projection_matches_the_loop_on_51_atoms():
    """Random distributions, rewards inside and beyond the support, integer rewards (b on an atom), every k."""
    generator = torch.Generator().manual_seed(0)
    support = torch.linspace(0.0, 100.0, 51)  # CartPole-v1's support, Δz = 2
    probs = torch.rand(12, 51, generator=generator).softmax(1)
    rewards = torch.tensor([0.0, 1.0, 2.0, 2.97, 4.0, -5.0, 99.0, 150.0, 1.0, 2.0, 0.5, 3.0])
    terminated = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    discounts = torch.tensor([0.99, 1.0, 1.0, 0.99 ** 3, 0.9, 0.5, 0.99, 0.99, 0.99, 0.5, 0.25, 0.99 ** 2])
    m = rainbow.project_distribution(support, probs, rewards, terminated, discounts)
    for j in range(12):
        expected = reference_projection(support, probs[j], rewards[j], terminated[j], discounts[j])
        assert np.allclose(m[j].numpy(), expected, atol=1e-5), f"row {j}"
    assert torch.allclose(m.sum(1), torch.ones(12), atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# RAINBOW-4: n-step returns
# ---------------------------------------------------------------------------------------------------
def test_n_step_window_at_a_termination_and_a_time_limit():
    """n = 3, γ = 0.5. Episode 1: observations 0 … 6, rewards 1, 2, 4, 8, 16, 32, terminated at the 6th step.
    Episode 2: observations 100 … 102, rewards 1, 2, truncated at its 2nd step."""
    window = rainbow.NStepWindow(3, 0.5)
    rewards = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    out = [window.add(t, t % 2, r, t + 1, t == 5, False) for t, r in enumerate(rewards)]
    assert out[0] == [] and out[1] == []  # fewer than n steps so far
    # R = r_t + γ r_{t+1} + γ² r_{t+2}, to s_{t+3}, bootstrapped later with γ³
    assert out[2] == [(0, 0, 1 + 0.5 * 2 + 0.25 * 4, 3, False, 3)]
    assert out[3] == [(1, 1, 2 + 0.5 * 4 + 0.25 * 8, 4, False, 3)]
    assert out[4] == [(2, 0, 4 + 0.5 * 8 + 0.25 * 16, 5, False, 3)]
    # the termination completes the three windows under way, each with the rest of the episode's rewards, to
    # the terminal observation, terminated: no bootstrap from it
    assert out[5] == [(3, 1, 8 + 0.5 * 16 + 0.25 * 32, 6, True, 3),
                      (4, 0, 16 + 0.5 * 32, 6, True, 2),
                      (5, 1, 32.0, 6, True, 1)]
    # the next episode starts from an empty window: nothing of episode 1 reaches into it
    assert window.add(100, 0, 1.0, 101, False, False) == []
    # the time limit completes both windows, not terminated, to the real last observation 102, with k = 2 and 1
    # steps: the target bootstraps from Q(102) with γ² and γ¹
    assert window.add(101, 1, 2.0, 102, False, True) == [(100, 0, 1 + 0.5 * 2, 102, False, 2),
                                                         (101, 1, 2.0, 102, False, 1)]
    assert window.add(200, 0, 5.0, 201, False, False) == []


def test_one_step_window_is_the_transition_itself():
    window = rainbow.NStepWindow(1, 0.5)
    assert window.add("s", 1, 3.0, "s'", False, False) == [("s", 1, 3.0, "s'", False, 1)]
    assert window.add("s'", 0, 2.0, "s''", True, False) == [("s'", 0, 2.0, "s''", True, 1)]


def recorded_transitions(monkeypatch, tmp_path, env_id, steps, n_step=3, gamma=0.5):
    """Train on env_id (observation [t, 1], reward 1 a step) and return every transition added to the buffer."""
    added, original_add = [], rainbow.PrioritizedReplayBuffer.add

    def spy(self, obs, action, reward, next_obs, terminated, k):
        added.append((float(obs[0]), float(next_obs[0]), float(reward), bool(terminated), int(k)))
        original_add(self, obs, action, reward, next_obs, terminated, k)

    monkeypatch.setattr(rainbow.PrioritizedReplayBuffer, "add", spy)
    rainbow.train(rainbow.Args(env_id=env_id, total_timesteps=steps, learning_starts=8, batch_size=4, buffer_size=64,
                               n_step=n_step, gamma=gamma, hidden_size=8, eval_episodes=1, run_dir=str(tmp_path),
                               cuda=False, save_model=False))
    return added


def test_train_stores_n_step_transitions_to_the_time_limit_and_bootstraps_there(monkeypatch, tmp_path):
    """Episodes of 5 steps cut by the time limit: from t, k = min(3, 5 − t) steps to s_{t+k}, R = Σ_{j<k} 0.5^j,
    never terminated (the target bootstraps from the real last observation), one transition per step, in order,
    none crossing into the next episode."""
    added = recorded_transitions(monkeypatch, tmp_path, "CountTruncatedDiscrete-v0", steps=40)
    assert [obs for obs, *_ in added] == [0.0, 1.0, 2.0, 3.0, 4.0] * (40 // TIME_LIMIT)
    for obs, next_obs, reward, terminated, k in added:
        assert k == min(3, TIME_LIMIT - obs)
        assert next_obs == obs + k <= TIME_LIMIT
        assert reward == pytest.approx(sum(0.5 ** j for j in range(k)))
        assert not terminated, "a time limit was stored as a termination"


def test_train_stores_n_step_transitions_that_stop_at_a_termination(monkeypatch, tmp_path):
    """Episodes that terminate after 3 steps: every window ends at the terminal observation 3, terminated."""
    added = recorded_transitions(monkeypatch, tmp_path, "CountTerminatedDiscrete-v0", steps=30)
    assert added == [(0.0, 3.0, 1.75, True, 3), (1.0, 3.0, 1.5, True, 2), (2.0, 3.0, 1.0, True, 1)] * 10


# ---------------------------------------------------------------------------------------------------
# RAINBOW-6: NoisyNet
# ---------------------------------------------------------------------------------------------------
def test_factorized_noise_is_sign_times_square_root_of_gaussian_draws():
    torch.manual_seed(3)
    x = torch.randn(1000)
    torch.manual_seed(3)
    noise = rainbow.factorized_noise(1000, "cpu")
    assert torch.allclose(noise, x.sign() * x.abs().sqrt())
    assert (noise.abs() < x.abs()).any() and (noise.abs() > x.abs()).any()  # f shrinks |x| > 1, grows |x| < 1


def test_noisy_layer_shapes_initialization_and_factorized_weight_noise():
    torch.manual_seed(0)
    layer = rainbow.NoisyLinear(3, 4, sigma0=0.5)
    assert layer.epsilon_in.shape == (3,) and layer.epsilon_out.shape == (4,)
    assert layer.weight_mu.shape == layer.weight_sigma.shape == (4, 3) and layer.bias_mu.shape == (4,)
    bound = 1 / math.sqrt(3)  # Fortunato et al.: μ ~ U[−1/√p, 1/√p], σ = σ0 / √p, p = 3 inputs
    assert layer.weight_mu.abs().max() <= bound and layer.bias_mu.abs().max() <= bound
    assert torch.allclose(layer.weight_sigma, torch.full((4, 3), 0.5 * bound))
    assert torch.allclose(layer.bias_sigma, torch.full((4,), 0.5 * bound))
    with torch.no_grad():  # σ away from its constant start, so that σ ⊙ ε is not a multiple of ε
        layer.weight_sigma.mul_(torch.rand(4, 3) + 0.5)
    x = torch.randn(5, 3)
    # y_o = Σ_i (μ_oi + σ_oi ε_out_o ε_in_i) x_i + μ_o + σ_o ε_out_o, written element by element
    e_in, e_out = layer.epsilon_in.clone(), layer.epsilon_out.clone()
    expected = torch.zeros(5, 4)
    for o in range(4):
        for i in range(3):
            expected[:, o] += (layer.weight_mu[o, i] + layer.weight_sigma[o, i] * e_out[o] * e_in[i]) * x[:, i]
        expected[:, o] += layer.bias_mu[o] + layer.bias_sigma[o] * e_out[o]
    assert torch.allclose(layer(x), expected.detach(), atol=1e-6)
    assert torch.equal(layer(x), layer(x)), "the noise changes only with reset_noise"
    layer.reset_noise()
    assert not torch.equal(layer.epsilon_in, e_in) and not torch.equal(layer(x), expected)


def noisy_rainbow_network():
    torch.manual_seed(1)
    return rainbow.QNetwork(gym.spaces.Box(-np.inf, np.inf, (4,)), n_actions=3, hidden_size=8, support=torch.linspace(-1.0, 1.0, 5),
                            dueling=True, noisy=True, sigma0=0.5)


def test_eval_mode_is_noise_free_and_uses_the_mean_weights():
    net, obs = noisy_rainbow_network(), torch.randn(6, 4)
    noisy_layers = [m for m in net.modules() if isinstance(m, rainbow.NoisyLinear)]
    assert len(noisy_layers) == 4, "the two hidden layers and both streams are noisy"
    train_q = net(obs)
    net.reset_noise()
    assert not torch.allclose(net(obs), train_q), "in train mode, new noise changes Q"
    net.eval()
    first = net(obs)
    net.reset_noise()
    assert torch.equal(net(obs), first), "eval mode must not depend on the noise"
    # the same network built of plain linear layers holding the means μ gives the same Q
    plain = rainbow.QNetwork(gym.spaces.Box(-np.inf, np.inf, (4,)), n_actions=3, hidden_size=8, support=torch.linspace(-1.0, 1.0, 5),
                             dueling=True, noisy=False)
    means = {name.replace("_mu", ""): value for name, value in net.state_dict().items() if "sigma" not in name}
    plain.load_state_dict(means)
    assert torch.allclose(plain(obs), first, atol=1e-6)


def test_train_draws_new_noise_every_step_and_evaluates_without_noise(monkeypatch, tmp_path):
    """Every noisy layer of both networks draws new noise at every step; the final evaluation runs with every
    noisy layer in eval mode (its means), so it is deterministic."""
    resets, forward_modes, evaluating = [0], [], [False]
    original_reset, original_forward, original_evaluate = (rainbow.NoisyLinear.reset_noise,
                                                          rainbow.NoisyLinear.forward, rainbow.evaluate)

    def counting_reset(self):
        resets[0] += 1
        original_reset(self)

    def recording_forward(self, x):
        forward_modes.append((evaluating[0], self.training))
        return original_forward(self, x)

    def flagged_evaluate(*positional, **named):
        evaluating[0] = True
        return original_evaluate(*positional, **named)

    monkeypatch.setattr(rainbow.NoisyLinear, "reset_noise", counting_reset)
    monkeypatch.setattr(rainbow.NoisyLinear, "forward", recording_forward)
    monkeypatch.setattr(rainbow, "evaluate", flagged_evaluate)
    steps = 150
    rainbow.train(rainbow.Args(total_timesteps=steps, learning_starts=100, batch_size=16, hidden_size=8,
                               eval_episodes=1, eval_every=0, run_dir=str(tmp_path), cuda=False, save_model=False))
    # 4 noisy layers in each of the 2 networks: once when built, then at every step
    assert resets[0] == 2 * 4 * (steps + 1)
    assert any(training for in_eval, training in forward_modes if not in_eval)
    evaluation = [training for in_eval, training in forward_modes if in_eval]
    assert evaluation and not any(evaluation), "the evaluation ran a noisy layer in train mode"


# ---------------------------------------------------------------------------------------------------
# RAINBOW-2: the dueling head
# ---------------------------------------------------------------------------------------------------
def test_dueling_logits_are_value_plus_centred_advantage_per_atom():
    net, obs = noisy_rainbow_network(), torch.randn(6, 4)
    net.eval()
    with torch.no_grad():
        net.advantage.bias_mu.add_(2.0)  # mean_a A clearly nonzero, so that a missing "− mean" shows
        features = net.torso(obs)
        value = F.linear(features, net.value.weight_mu, net.value.bias_mu).view(6, 1, 5)
        advantage = F.linear(features, net.advantage.weight_mu, net.advantage.bias_mu).view(6, 3, 5)
        logits = net.logits(obs)
    assert logits.shape == (6, 3, 5)
    assert torch.allclose(logits, value + advantage - advantage.mean(1, keepdim=True), atol=1e-5)
    assert torch.allclose(logits.mean(1, keepdim=True), value, atol=1e-5), "V is the mean over actions"
    support = torch.linspace(-1.0, 1.0, 5)
    assert torch.allclose(net(obs), (logits.softmax(-1) * support).sum(-1), atol=1e-6), "Q = Σ_i z_i p_i"


# ---------------------------------------------------------------------------------------------------
# One update, written out
# ---------------------------------------------------------------------------------------------------
# A batch of 3 n-step transitions (k = 3, 1, 2 steps; the last one terminated) with importance weights.
OBS = torch.tensor([[1.0, 0.5], [0.2, 1.0], [0.6, 0.4]])
ACTIONS = torch.tensor([0, 1, 0])
REWARDS = torch.tensor([0.4, 1.5, -0.2])
NEXT_OBS = torch.tensor([[1.0, 0.6], [1.0, 2.0], [0.3, 0.9]])
TERMINATED = torch.tensor([0.0, 0.0, 1.0])
STEPS = torch.tensor([3.0, 1.0, 2.0])
BATCH = (OBS, ACTIONS, REWARDS, NEXT_OBS, TERMINATED, STEPS)
WEIGHTS = torch.tensor([0.3, 1.0, 0.6])
GAMMA, LR = 0.9, 0.5
THREE_ATOMS = torch.tensor([-1.0, 0.0, 1.0])


def network_with_identity_layers(heads: dict, support=None, dueling=False):
    """A QNetwork with 2 inputs and 2 actions whose shared layers are the identity (zero bias): for s >= 0 the
    features are s itself, and the heads are linear in s."""
    net = rainbow.QNetwork(gym.spaces.Box(-np.inf, np.inf, (2,)), n_actions=2, hidden_size=2, support=support, dueling=dueling)
    with torch.no_grad():
        for layer in (net.torso[0], net.torso[2]):
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
        for name, value in heads.items():
            net.get_parameter(name).copy_(value)
    return net


def random_heads(seed, dueling=True, atoms=3):
    generator = torch.Generator().manual_seed(seed)
    heads = {"advantage.weight": torch.randn(2 * atoms, 2, generator=generator),
             "advantage.bias": torch.randn(2 * atoms, generator=generator)}
    if dueling:
        heads |= {"value.weight": torch.randn(atoms, 2, generator=generator),
                  "value.bias": torch.randn(atoms, generator=generator)}
    return heads


def dueling_logits_by_hand(heads, obs):
    """V(s) + A(s, a) − mean_a' A(s, a'), per atom, for features = s: shape (batch, 2 actions, 3 atoms)."""
    value = obs @ heads["value.weight"].T + heads["value.bias"]
    advantage = (obs @ heads["advantage.weight"].T + heads["advantage.bias"]).view(-1, 2, 3)
    return value.unsqueeze(1) + advantage - advantage.mean(1, keepdim=True)


def test_rainbow_update_is_one_weighted_cross_entropy_step_towards_the_projected_double_target():
    """Dueling C51 heads, double target, n-step discounts γ^k, importance weights, plain SGD on the heads.
    With g_ji = w_j (p_ji − m_ji) / n, the gradient of mean_j w_j (−Σ_i m_ji log p_ji) with respect to the
    logit of atom i of the action taken is g_ji; through the dueling head: value row i −= lr Σ_j g_ji s_j,
    advantage row (a, i) −= lr Σ_j g_ji ([a_j = a] − 1/2) s_j (and the biases without s_j). Catches DQN's max
    instead of the online choice, γ instead of γ^k, a bootstrap after termination, weights left out, a wrong
    sign, a step on the target network, and priorities other than each transition's cross-entropy."""
    online_heads, target_heads = random_heads(0), random_heads(1)
    support = THREE_ATOMS
    # the target: Z_φ'(s', a*) with a* = argmax_a Σ_i z_i p_i of the ONLINE network, moved by R + γ^k (1 − d) z
    online_next_q = (dueling_logits_by_hand(online_heads, NEXT_OBS).softmax(-1) * support).sum(-1)
    target_next = dueling_logits_by_hand(target_heads, NEXT_OBS).softmax(-1)
    choice = online_next_q.argmax(1)
    assert not torch.equal(choice, (target_next * support).sum(-1).argmax(1)), "double and DQN's max agree here"

    def projected(chosen, discounts):
        return torch.tensor([reference_projection(support, target_next[j, chosen[j]], REWARDS[j], TERMINATED[j],
                                                  discounts[j]) for j in range(3)])

    m = projected(choice, GAMMA ** STEPS)
    assert not torch.allclose(m, projected(choice, GAMMA * torch.ones(3))), "γ and γ^k agree here"
    log_p = dueling_logits_by_hand(online_heads, OBS)[torch.arange(3), ACTIONS].log_softmax(-1)
    cross_entropy = -(m * log_p).sum(1)
    g = WEIGHTS.unsqueeze(1) * (log_p.exp() - m) / 3  # (batch, atoms)
    centred = F.one_hot(ACTIONS, 2).float() - 0.5  # (batch, actions): [a_j = a] − 1/2
    advantage_grad = torch.einsum("ja,ji->ai", centred, g)  # (actions, atoms), row (a, i) of the head
    expected = {
        "value.weight": online_heads["value.weight"] - LR * g.T @ OBS,
        "value.bias": online_heads["value.bias"] - LR * g.sum(0),
        "advantage.weight": online_heads["advantage.weight"]
        - LR * torch.einsum("ja,ji,jk->aik", centred, g, OBS).reshape(6, 2),
        "advantage.bias": online_heads["advantage.bias"] - LR * advantage_grad.reshape(6),
    }

    online = network_with_identity_layers(online_heads, support, dueling=True)
    target = network_with_identity_layers(target_heads, support, dueling=True)
    target_before = flat(target)
    heads = [*online.value.parameters(), *online.advantage.parameters()]  # the shared layers hold still
    loss, q_values, priorities = rainbow.update(online, target, torch.optim.SGD(heads, lr=LR), BATCH, WEIGHTS,
                                                GAMMA, double=True)
    for name, value in expected.items():
        assert torch.allclose(online.get_parameter(name), value, atol=1e-5), name
    assert torch.equal(flat(target), target_before), "the update must not touch the target network"
    assert loss.item() == pytest.approx((WEIGHTS * cross_entropy).mean().item(), rel=1e-5)
    assert torch.allclose(priorities, cross_entropy, atol=1e-5), "the new priorities are the per-sample losses"
    assert not priorities.requires_grad
    assert torch.allclose(q_values, (log_p.exp() * support).sum(1), atol=1e-6)


def test_scalar_update_without_c51_is_a_weighted_squared_error_step_towards_the_n_step_double_target():
    """--no-distributional --no-dueling: Q(s) = W s + b; y = R + γ^k (1 − d) Q'(s', argmax_a Q(s', a)); loss
    mean_j w_j (Q(s_j, a_j) − y_j)², priorities |y − Q(s, a)|. With plain SGD and e_j = Q(s_j, a_j) − y_j,
    W_a −= lr Σ_j w_j [a_j = a] 2 e_j s_j / n and b_a −= lr Σ_j w_j [a_j = a] 2 e_j / n. One TD error is beyond 1,
    where a Huber loss (threshold 1) clips the gradient at ±1: a Huber loss, even doubled, or ½ of the squared
    error fails here."""
    online_heads = {"advantage.weight": torch.tensor([[0.5, 0.2], [0.1, -0.3]]),
                    "advantage.bias": torch.tensor([0.1, 0.4])}
    target_heads = {"advantage.weight": torch.tensor([[0.4, 0.0], [0.0, 0.9]]),
                    "advantage.bias": torch.tensor([0.2, -0.1])}
    W, b = online_heads["advantage.weight"], online_heads["advantage.bias"]
    W_target, b_target = target_heads["advantage.weight"], target_heads["advantage.bias"]
    choice = (NEXT_OBS @ W.T + b).argmax(1)
    next_q = (NEXT_OBS @ W_target.T + b_target)
    assert not torch.equal(choice, next_q.argmax(1)), "double and DQN's max agree here"
    y = REWARDS + GAMMA ** STEPS * (1 - TERMINATED) * next_q[torch.arange(3), choice]
    errors = (OBS @ W.T + b)[torch.arange(3), ACTIONS] - y
    assert errors.abs().max() > 1, "no TD error beyond 1: 2 · Huber would pass"
    slope = WEIGHTS * 2 * errors / 3
    assert not torch.allclose(slope, WEIGHTS * 2 * errors.clamp(-1.0, 1.0) / 3), "2 · Huber's step is the same"
    expected_W, expected_b = W.clone(), b.clone()
    for j in range(3):
        expected_W[ACTIONS[j]] -= LR * slope[j] * OBS[j]
        expected_b[ACTIONS[j]] -= LR * slope[j]

    online, target = network_with_identity_layers(online_heads), network_with_identity_layers(target_heads)
    loss, q_values, priorities = rainbow.update(online, target, torch.optim.SGD(online.advantage.parameters(), lr=LR),
                                                BATCH, WEIGHTS, GAMMA, double=True)
    assert torch.allclose(online.advantage.weight, expected_W, atol=1e-6)
    assert torch.allclose(online.advantage.bias, expected_b, atol=1e-6)
    assert torch.equal(target.advantage.weight, W_target)
    assert loss.item() == pytest.approx((WEIGHTS * errors ** 2).mean().item(), rel=1e-5)
    assert torch.allclose(priorities, errors.abs(), atol=1e-6)
    assert torch.allclose(q_values, errors + y, atol=1e-6)


def test_no_double_lets_the_target_network_choose():
    online = network_with_identity_layers(random_heads(0, dueling=False, atoms=1))
    target = network_with_identity_layers(random_heads(1, dueling=False, atoms=1))
    with torch.no_grad():
        online_choice, target_choice = online(NEXT_OBS).argmax(1), target(NEXT_OBS).argmax(1)
    assert not torch.equal(online_choice, target_choice)
    assert torch.equal(rainbow.next_actions(online, target, NEXT_OBS, double=True), online_choice)
    assert torch.equal(rainbow.next_actions(online, target, NEXT_OBS, double=False), target_choice)


# ---------------------------------------------------------------------------------------------------
# What train() passes: γ and γ^k to the target, the target network's copies, β, the weights and priorities
# ---------------------------------------------------------------------------------------------------
def spy_on_train(monkeypatch, tmp_path, **overrides):
    """Train on CartPole-v1 for 400 steps (an update every 4 steps after 100, a target copy every 40, γ = 0.77,
    learning rate 0.004) with spies on update() and on the buffer's sample(). Returns the Args, one dict per
    update() call (its arguments by name, the parameters, the networks' outputs and the optimizer's learning rate
    before the step, what it returned) and one per draw (β, every leaf of the sum tree before the draw, the
    indices and the weights drawn)."""
    calls, draws = [], []
    original_update, original_sample = rainbow.update, rainbow.PrioritizedReplayBuffer.sample
    signature = inspect.signature(original_update)

    def update_spy(*positional, **named):
        call = signature.bind(*positional, **named).arguments
        online, target = call["q_network"], call["target_network"]
        obs, _, _, next_obs, _, _ = call["batch"]
        with torch.no_grad():  # the same noise as the update's: nothing draws noise between here and there
            call.update(online=flat(online), target=flat(target), logits=online.logits(obs),
                        next_q=online(next_obs), next_target_q=target(next_obs),
                        next_target_logits=target.logits(next_obs), lr=call["optimizer"].param_groups[0]["lr"])
        call["returned"] = original_update(*positional, **named)
        calls.append(call)
        return call["returned"]

    def sample_spy(self, batch_size, beta, rng, device):
        leaves = self.tree.get(np.arange(self.size)).copy()
        drawn = original_sample(self, batch_size, beta, rng, device)
        draws.append(dict(beta=beta, leaves=leaves, idx=drawn[-1].copy(), weights=drawn[-2].clone()))
        return drawn

    monkeypatch.setattr(rainbow, "update", update_spy)
    monkeypatch.setattr(rainbow.PrioritizedReplayBuffer, "sample", sample_spy)
    settings = dict(total_timesteps=400, learning_starts=100, batch_size=16, buffer_size=400, train_frequency=4,
                    target_network_frequency=40, gamma=0.77, learning_rate=0.004, hidden_size=16, eval_episodes=1,
                    log_frequency=40,
                    run_dir=str(tmp_path), cuda=False, save_model=False)
    # the settings as train() resolves them (ENV_DEFAULTS fills in those left at None)
    args = rainbow.with_env_defaults(rainbow.Args(**(settings | overrides)), gym.make("CartPole-v1"))
    run_dir = rainbow.train(args)["run_dir"]
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        metrics = list(csv.DictReader(f))
    return args, calls, draws, metrics


def update_steps(args):
    return [step for step in range(1, args.total_timesteps + 1)
            if step > args.learning_starts and step % args.train_frequency == 0]


def expected_losses(call, support):
    """Each transition's loss and new priority, from the networks before the step, computed here: with C51 the
    cross-entropy with the projected target, both; without, (Q(s, a) − y)² and |y − Q(s, a)|."""
    _, actions, rewards, _, terminated, steps = call["batch"]
    rows = torch.arange(len(actions))
    discounts = call["gamma"] ** steps
    choice = (call["next_q"] if call["double"] else call["next_target_q"]).argmax(1)
    if support is None:
        y = rewards + discounts * (1 - terminated) * call["next_target_q"][rows, choice]
        errors = call["logits"][rows, actions, 0] - y
        return errors ** 2, errors.abs()
    next_probs = call["next_target_logits"].softmax(-1)[rows, choice]
    m = torch.tensor([reference_projection(support, next_probs[j], rewards[j], terminated[j], discounts[j])
                      for j in rows])
    cross_entropy = -(m * call["logits"][rows, actions].log_softmax(-1)).sum(1)
    return cross_entropy, cross_entropy


@pytest.mark.parametrize("flags", [
    dict(v_min=0.0, v_max=10.0, num_atoms=11),  # the full agent, with a support of Δz = 1
    dict(double=False, distributional=False, noisy=False, n_step=2, per_alpha=0.7),
], ids=["rainbow", "no-double-no-c51-no-noisy-2-step"])
def test_train_passes_gamma_n_step_discounts_target_copies_beta_weights_and_priorities(flags, monkeypatch, tmp_path):
    """At each update of a short run: γ is Args', double is Args', the batch's k are 1 … n (n, or fewer at an
    episode's end) and the loss of each transition is the one computed here from γ^k; φ' is φ as of the last copy
    step (as in the DQN variants' tests); β = per_beta_start + (1 − per_beta_start) t / T; the weights are
    (N P(i))^(−β) / max_j from the sum tree; the sampled leaves then hold (loss_i + ε)^α; the learning rate is
    lr (1 − (t − 1) / T) at the update of step t (lr = 0.004, T = 400: lr at step 1, lr / T at step T), which
    catches a rate not decayed, decayed from the wrong step or from another lr. With --no-noisy, ε follows DQN's
    schedule; with noisy layers it is 0."""
    args, calls, draws, metrics = spy_on_train(monkeypatch, tmp_path, **flags)
    steps = update_steps(args)
    assert len(calls) == len(draws) == len(steps)
    assert args.anneal_lr, "the learning rate decays by default"
    assert [call["lr"] for call in calls] == pytest.approx(
        [0.004 * (1 - (step - 1) / 400) for step in steps], rel=1e-9), "learning rate at each update"
    support = torch.linspace(args.v_min, args.v_max, args.num_atoms) if args.distributional else None
    alpha = args.per_alpha if args.per else 0.0
    all_k, all_terminated = [], []
    for n, (call, draw, step) in enumerate(zip(calls, draws, steps)):
        assert call["gamma"] == 0.77 and call["double"] == args.double
        _, _, _, _, terminated, k = call["batch"]
        all_k += k.tolist()
        all_terminated += terminated.tolist()
        losses, priorities = expected_losses(call, support)
        assert torch.allclose(call["returned"][2], priorities, rtol=1e-4, atol=1e-5), f"priorities at step {step}"
        assert call["returned"][0].item() == pytest.approx((call["weights"] * losses).mean().item(), rel=1e-4)
        # the target network, as the DQN variants' tests check it
        last_copy = (step - 1) // args.target_network_frequency * args.target_network_frequency
        first_after = next(i for i, s in enumerate(steps) if s > last_copy)
        assert torch.equal(call["target"], calls[first_after]["online"]), f"target network at step {step}"
        # RAINBOW-3: β, the weights and the new priorities
        assert draw["beta"] == pytest.approx(args.per_beta_start + (1 - args.per_beta_start) * step / 400)
        probabilities = draw["leaves"][draw["idx"]] / draw["leaves"].sum()
        raw = (len(draw["leaves"]) * probabilities) ** -draw["beta"]
        assert np.allclose(call["weights"].numpy(), raw / raw.max(), rtol=1e-5), f"weights at step {step}"
        if n + 1 < len(calls):
            assert np.allclose(draws[n + 1]["leaves"][draw["idx"]], (priorities.numpy() + args.per_eps) ** alpha,
                               rtol=1e-4), f"priorities after the update at step {step}"
    assert set(all_k) == set(range(1, args.n_step + 1)), "n-step transitions, and shorter ones at episode ends"
    assert 1.0 in all_terminated and 0.0 in all_terminated
    assert not torch.equal(calls[0]["target"], calls[-1]["target"]), "the target network never changed"
    epsilons = [float(row["epsilon"]) for row in metrics]
    assert [int(row["global_step"]) for row in metrics] == [step for step in steps if step % 40 == 0]
    if args.noisy:
        assert min(call["weights"].min().item() for call in calls) < 0.9, "the weights never left 1: no test"
        assert epsilons == [0.0] * len(metrics), "noisy layers explore: no ε-greedy"
    else:
        assert epsilons == pytest.approx([rainbow.linear_schedule(1.0, 0.05, 80, int(row["global_step"]))
                                          for row in metrics])


def test_no_anneal_lr_keeps_the_learning_rate_at_every_update(monkeypatch, tmp_path):
    _, calls, _, _ = spy_on_train(monkeypatch, tmp_path, anneal_lr=False, total_timesteps=160)
    assert len(calls) == (160 - 100) // 4
    assert [call["lr"] for call in calls] == [0.004] * len(calls)


def test_no_per_replays_uniformly_with_unit_weights(monkeypatch, tmp_path):
    """--no-per: α = 0, every leaf of the sum tree is 1 whatever the losses, and every weight is 1."""
    args, calls, draws, _ = spy_on_train(monkeypatch, tmp_path, per=False, distributional=False, total_timesteps=160)
    assert len(calls) == (160 - 100) // 4
    for draw, call in zip(draws, calls):
        assert np.array_equal(draw["leaves"], np.ones(len(draw["leaves"])))
        assert torch.allclose(call["weights"], torch.ones(16))


# ---------------------------------------------------------------------------------------------------
# RAINBOW-3: the prioritized buffer (its sum tree is per_dqn.py's, tested in test_dqn_variants.py)
# ---------------------------------------------------------------------------------------------------
def test_the_sum_tree_is_per_dqns():
    import per_dqn
    assert inspect.getsource(rainbow.SumTree) == inspect.getsource(per_dqn.SumTree)


def test_a_new_transition_gets_the_largest_priority_so_far_and_keeps_its_steps():
    alpha, eps = 0.5, 1e-3
    buffer = rainbow.PrioritizedReplayBuffer(4, gym.spaces.Box(-np.inf, np.inf, (2,)), alpha=alpha, eps=eps)
    buffer.add(np.zeros(2), 0, 0.0, np.zeros(2), False, 3)
    assert buffer.tree.get(np.array([0])) == pytest.approx(1.0)  # nothing seen yet: priority 1
    buffer.add(np.zeros(2), 0, 0.0, np.zeros(2), False, 2)
    buffer.update_priorities(np.array([0, 1]), np.array([3.0, 0.5]))
    buffer.update_priorities(np.array([0]), np.array([0.2]))  # the largest is gone from the buffer ...
    buffer.add(np.zeros(2), 0, 0.0, np.zeros(2), True, 1)
    assert buffer.tree.get(np.array([2])) == pytest.approx((3.0 + eps) ** alpha)  # ... but remains the max
    assert buffer.tree.get(np.array([1])) == pytest.approx((0.5 + eps) ** alpha)
    *batch, weights, idx = buffer.sample(8, 0.4, np.random.default_rng(0), torch.device("cpu"))
    assert len(batch) == 6 and torch.equal(batch[5], torch.tensor([3.0, 2.0, 1.0])[idx]), "k out of step"


def test_a_full_buffer_overwrites_its_oldest_transitions_and_their_priorities():
    """A ring: transition 6 of a buffer of 4 lands in slot 1 (after 4 in slot 3 and 5 in slot 0), replacing
    transition 2 there, priority included; the size stays 4."""
    buffer = rainbow.PrioritizedReplayBuffer(4, gym.spaces.Box(-np.inf, np.inf, (1,)), alpha=1.0, eps=0.0)
    for k in range(1, 5):
        buffer.add(np.array([k]), 0, float(k), np.array([k]), False, 1)
    buffer.update_priorities(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    buffer.add(np.array([5]), 1, 5.0, np.array([5]), False, 1)
    buffer.add(np.array([6]), 1, 6.0, np.array([6]), True, 1)
    assert buffer.size == 4 and buffer.pos == 2
    assert buffer.obs[:, 0].tolist() == [5.0, 6.0, 3.0, 4.0]
    assert buffer.rewards.tolist() == [5.0, 6.0, 3.0, 4.0] and buffer.terminated.tolist() == [0.0, 1.0, 0.0, 0.0]
    # the new ones at the largest priority so far (4), the old ones keep theirs
    assert buffer.tree.get(np.arange(4)).tolist() == pytest.approx([4.0, 4.0, 3.0, 4.0])
    assert buffer.tree.total == pytest.approx(15.0)


def test_draws_are_stratified_one_in_each_equal_segment_of_the_priority_mass():
    """With 8 transitions of equal priority and a batch of 8, the PER paper's stratified draw takes one value in
    each eighth of [0, Σ p^α): every transition exactly once, whatever the random numbers."""
    buffer = rainbow.PrioritizedReplayBuffer(8, gym.spaces.Box(-np.inf, np.inf, (1,)), alpha=0.5, eps=1e-6)
    for k in range(8):
        buffer.add(np.array([k]), 0, 0.0, np.array([k]), False, 1)
    for seed in range(5):
        *_, weights, idx = buffer.sample(8, 0.4, np.random.default_rng(seed), torch.device("cpu"))
        assert sorted(idx.tolist()) == list(range(8))
        assert torch.allclose(weights, torch.ones(8))


# ---------------------------------------------------------------------------------------------------
# The command line: the ablation table, the per-env defaults and bad input
# ---------------------------------------------------------------------------------------------------
def test_each_flag_of_the_ablation_table_turns_off_its_part(monkeypatch):
    table = re.findall(r"^  (--[a-z-]+(?: 1)?)\s+(RAINBOW-\d)", rainbow.__doc__, flags=re.MULTILINE)
    assert sorted(label for _, label in table) == [f"RAINBOW-{k}" for k in range(1, 7)]
    monkeypatch.setattr(sys, "argv", ["rainbow.py"])
    full = rainbow.parse_command_line()
    for flag, label in table:
        monkeypatch.setattr(sys, "argv", ["rainbow.py", *flag.split()])
        args = rainbow.parse_command_line()
        off = {name for name in ("double", "dueling", "per", "distributional", "noisy")
               if getattr(args, name) != getattr(full, name)}
        if flag == "--n-step 1":
            assert args.n_step == 1 and full.n_step > 1 and not off
        else:
            assert off == {flag.removeprefix("--no-")} and getattr(args, flag.removeprefix("--no-")) is False


def test_acrobot_has_its_own_support(monkeypatch):
    args = rainbow.with_env_defaults(rainbow.Args(env_id="Acrobot-v1"), gym.make("Acrobot-v1"))
    assert (args.v_min, args.v_max) == (-100.0, 0.0) and args.total_timesteps <= 100_000


@pytest.mark.parametrize("setting, word", [
    (dict(n_step=0), "n_step"), (dict(num_atoms=1), "num_atoms"), (dict(v_min=5.0, v_max=5.0), "v_min"),
    (dict(v_min=1.0, v_max=-1.0), "v_max"), (dict(n_step=300), "n_step"),
    (dict(noisy_sigma0=-0.1), "noisy_sigma0"),
])
def test_bad_settings_stop_with_one_line(setting, word, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        rainbow.train(rainbow.Args(total_timesteps=800, learning_starts=200, batch_size=32, run_dir=str(tmp_path),
                                   cuda=False, **setting))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err, err
    assert not list(tmp_path.iterdir()), "a refused run must not leave a run folder"
