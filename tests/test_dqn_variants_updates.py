"""The updates of double_dqn, dueling_dqn and per_dqn and the loop that calls them (issue 13).

One-update tests run each script's own update() once, with plain SGD, on networks small enough to compute by
hand, and compare the new parameters, the loss and what update() returns with the formula written out here.
The loss is the squared error, without a ½: mean_j w_j (Q(s_j, a_j) − y_j)² (w_j = 1 but for PER), whose
gradient with respect to Q(s_j, a_j) is 2 w_j (Q(s_j, a_j) − y_j) / n. Call-site tests spy on update() (and on the
prioritized buffer) during a short train() on CartPole-v1 and check what the loop passes: Args' γ, the learning
rate decayed linearly over the run, a target network that is a copy of the online one taken at the right steps,
and for PER the importance weights, the annealed β and the new priorities.
"""

import inspect

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

import double_dqn
import dueling_dqn
import per_dqn
from test_dqn import linear_q


def q_of(weight, obs):
    """Q(s) = W s for a batch of s, one row per state."""
    return obs @ weight.T


# One fixed batch for the linear Q-networks Q(s) = W s (2 features, 2 actions). Row 0: the online network prefers
# action 0 at s', the target network action 1, so Double DQN's target differs from DQN's max and from the
# target with the two networks swapped. Row 1 has a TD error beyond 1: below 1 a Huber loss (threshold 1) is ½ e², so
# twice it would match the squared error there, but beyond 1 its gradient is clipped at ±1. Row 2 terminates.
ONLINE_W = [[0.5, 0.2], [0.1, -0.3]]
TARGET_W = [[0.4, 0.0], [0.0, 0.9]]
OBS = torch.tensor([[1.0, 0.5], [0.2, 1.0], [0.6, 0.4]])
ACTIONS = torch.tensor([0, 1, 0])
REWARDS = torch.tensor([0.4, 1.5, -0.2])
NEXT_OBS = torch.tensor([[1.0, 0.6], [1.0, 2.0], [0.3, 0.9]])
TERMINATED = torch.tensor([0.0, 0.0, 1.0])
BATCH = (OBS, ACTIONS, REWARDS, NEXT_OBS, TERMINATED)
GAMMA, LR = 0.9, 0.1


def expected_linear_step(weight, y, importance=torch.ones(3)):
    """W after one SGD step on mean_j w_j (Q(s_j, a_j) − y_j)² for the linear Q(s) = W s:
    W_a ← W_a − lr · (2/n) Σ_j w_j [a_j = a] (Q(s_j, a_j) − y_j) s_j. Returns (new W, errors, loss)."""
    errors = q_of(weight, OBS)[torch.arange(3), ACTIONS] - y
    new = weight.clone()
    for j in range(3):
        new[ACTIONS[j]] -= LR * importance[j] * 2 * errors[j] * OBS[j] / 3
    return new, errors, (importance * errors ** 2).mean()


def run_linear_update(module, *weights):
    """module.update() once on BATCH with linear networks and SGD; returns the networks and what it returned."""
    online, target = linear_q(ONLINE_W), linear_q(TARGET_W)
    returned = module.update(online, target, torch.optim.SGD(online.parameters(), lr=LR), BATCH, *weights, GAMMA,
                             huber=False)
    return online, target, returned


def assert_linear_update(online, target, expected, loss, expected_loss, q_values):
    """The online network took the expected step, the target network held still, and update() returned the
    loss before the step and Q(s, a) of the batch."""
    assert torch.allclose(online.weight, expected, atol=1e-6)
    assert torch.equal(target.weight, torch.tensor(TARGET_W)), "the update must not touch the target network"
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-5)
    assert torch.allclose(q_values, q_of(torch.tensor(ONLINE_W), OBS)[torch.arange(3), ACTIONS])


# ---------------------------------------------------------------------------------------------------
# One-update tests
# ---------------------------------------------------------------------------------------------------
def test_double_dqn_update_steps_towards_the_target_evaluating_the_online_choice():
    """y = r + γ (1 − d) Q'(s', argmax_a Q(s', a)): catches DQN's max in the target (the online choice dropped),
    online and target swapped, a sign error in the loss, a Huber loss (even doubled: one TD error is beyond 1) or
    ½ of the squared error, and an update that moves the target network."""
    W, W_target = torch.tensor(ONLINE_W), torch.tensor(TARGET_W)
    choice = q_of(W, NEXT_OBS).argmax(1)  # the online network chooses a' ...
    y = REWARDS + GAMMA * (1 - TERMINATED) * q_of(W_target, NEXT_OBS)[torch.arange(3), choice]  # ... Q' rates it
    dqn_y = REWARDS + GAMMA * (1 - TERMINATED) * q_of(W_target, NEXT_OBS).max(1).values
    swapped_y = REWARDS + GAMMA * (1 - TERMINATED) * q_of(W, NEXT_OBS)[torch.arange(3), q_of(W_target, NEXT_OBS).argmax(1)]
    assert not torch.allclose(y, dqn_y) and not torch.allclose(y, swapped_y), "the batch cannot tell them apart"
    expected, errors, expected_loss = expected_linear_step(W, y)
    assert errors.abs().max() > 1, "no TD error beyond 1: 2 · Huber would pass"

    online, target, (loss, q_values) = run_linear_update(double_dqn)
    assert_linear_update(online, target, expected, loss, expected_loss, q_values)


def test_per_update_is_an_importance_weighted_squared_error_step_and_returns_y_minus_q():
    """Loss mean_j w_j (Q(s_j, a_j) − y_j)² with y = r + γ (1 − d) max Q'(s'): catches weights ignored in the
    loss, a sign error in the loss, a weighted Huber loss (even doubled: one TD error is beyond 1) or ½ of the
    squared error, and TD errors returned as Q − y or not at all (they become priorities)."""
    W, W_target = torch.tensor(ONLINE_W), torch.tensor(TARGET_W)
    importance = torch.tensor([0.3, 1.0, 0.6])
    y = REWARDS + GAMMA * (1 - TERMINATED) * q_of(W_target, NEXT_OBS).max(1).values
    expected, errors, expected_loss = expected_linear_step(W, y, importance)
    assert errors.abs().max() > 1, "no TD error beyond 1: 2 · Huber would pass"
    unweighted, _, _ = expected_linear_step(W, y)
    assert not torch.allclose(expected, unweighted), "the batch cannot tell weighted from unweighted"

    online, target, (loss, q_values, td_errors) = run_linear_update(per_dqn, importance)
    assert_linear_update(online, target, expected, loss, expected_loss, q_values)
    assert torch.allclose(td_errors, -errors, atol=1e-6), "TD errors must be δ = y − Q(s, a)"
    assert not td_errors.requires_grad


def dueling_network(value_w, value_b, advantage_w, advantage_b):
    """A dueling network with 2 inputs, 2 hidden units and 3 actions whose shared layers are the identity (zero
    bias), so that for s >= 0 the features are s itself and Q(s, a) = v·s + b_v + A_a·s + b_a − mean_a'(A_a'·s + b_a')."""
    net = dueling_dqn.QNetwork(gym.spaces.Box(-np.inf, np.inf, (2,)), n_actions=3, hidden_size=2)
    with torch.no_grad():
        for layer in (net.torso[0], net.torso[2]):
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
        net.value.weight.copy_(torch.tensor([value_w]))
        net.value.bias.fill_(value_b)
        net.advantage.weight.copy_(torch.tensor(advantage_w))
        net.advantage.bias.copy_(torch.tensor(advantage_b))
    return net


def dueling_q(value_w, value_b, advantage_w, advantage_b, obs):
    """Q = V + A − mean_a A by hand, for features = obs."""
    advantages = obs @ torch.tensor(advantage_w).T + torch.tensor(advantage_b)
    value = obs @ torch.tensor(value_w) + value_b
    return value.unsqueeze(1) + advantages - advantages.mean(1, keepdim=True)


ONLINE_HEADS = ([0.3, -0.2], 0.1, [[0.2, 0.1], [-0.3, 0.4], [0.5, 0.0]], [0.5, 1.0, 1.2])
TARGET_HEADS = ([0.1, 0.4], -0.2, [[0.3, -0.1], [0.0, 0.2], [-0.2, 0.3]], [1.0, 0.4, 2.0])


def test_dueling_update_steps_the_value_and_advantage_streams_through_the_mean_subtracted_head():
    """One SGD step of the heads, through Q = V + A − mean A, for the prediction and for the target
    y = r + γ (1 − d) max Q'(s'): catches the raw advantage Q = V + A (no mean subtracted), a sign error in
    the loss, a Huber loss (even doubled: one TD error is beyond 1) or ½ of the squared error, and an update that
    moves the target network. The loss is mean_j e_j² with e_j = Q(s_j, a_j) − y_j; the gradients, with g_j = 2 e_j / n:
    v −= lr Σ_j g_j s_j, b_v −= lr Σ_j g_j, A_a −= lr Σ_j g_j ([a_j = a] − 1/3) s_j, b_a −= lr Σ_j g_j ([a_j = a] − 1/3)."""
    obs, next_obs = OBS, NEXT_OBS  # all >= 0: the identity layers' ReLUs pass them unchanged
    online, target = dueling_network(*ONLINE_HEADS), dueling_network(*TARGET_HEADS)
    target_before = nn.utils.parameters_to_vector(target.parameters()).detach().clone()
    y = REWARDS + GAMMA * (1 - TERMINATED) * dueling_q(*TARGET_HEADS, next_obs).max(1).values
    errors = dueling_q(*ONLINE_HEADS, obs)[torch.arange(3), ACTIONS] - y
    assert errors.abs().max() > 1, "no TD error beyond 1: 2 · Huber would pass"
    g = 2 * errors / 3
    centred = nn.functional.one_hot(ACTIONS, 3).float() - 1 / 3  # dQ(s_j, a_j) / d(A_a·s + b_a) = [a_j = a] − 1/3
    value_w, value_b, advantage_w, advantage_b = (torch.tensor(p) for p in ONLINE_HEADS)
    expected = {
        "value.weight": value_w - LR * (g @ obs),
        "value.bias": value_b - LR * g.sum(),
        "advantage.weight": advantage_w - LR * (centred * g.unsqueeze(1)).T @ obs,
        "advantage.bias": advantage_b - LR * (centred * g.unsqueeze(1)).sum(0),
    }
    heads = [*online.value.parameters(), *online.advantage.parameters()]  # the shared layers hold still
    loss, q_values = dueling_dqn.update(online, target, torch.optim.SGD(heads, lr=LR), BATCH, GAMMA, huber=False)
    for name, value in expected.items():
        assert torch.allclose(online.state_dict()[name], value.reshape(online.state_dict()[name].shape),
                              atol=1e-6), name
    assert torch.equal(nn.utils.parameters_to_vector(target.parameters()), target_before)
    assert loss.item() == pytest.approx((errors ** 2).mean().item(), rel=1e-5)
    assert torch.allclose(q_values, errors + y, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# Call-site tests: what train() passes to update() (and, for PER, to and from the buffer)
# ---------------------------------------------------------------------------------------------------
def flat(net):
    return nn.utils.parameters_to_vector(net.parameters()).detach().clone()


def spy_on_train(module, monkeypatch, tmp_path, **overrides):
    """Train `module` on CartPole-v1 for 400 steps (an update every 4 steps after 100, a target copy every 40,
    γ = 0.77, learning rate 0.004) with a spy on update(). Returns the Args and one dict per update() call: its
    arguments by name, the online and target parameters, Q(s, ·) and Q'(s', ·) of the batch and the optimizer's
    learning rate before the step, and what it returned."""
    calls, original = [], module.update
    signature = inspect.signature(original)

    def spy(*positional, **named):
        call = signature.bind(*positional, **named).arguments
        obs, _, _, next_obs, _ = call["batch"]
        with torch.no_grad():
            call.update(online=flat(call["q_network"]), target=flat(call["target_network"]),
                        q=call["q_network"](obs), next_target_q=call["target_network"](next_obs),
                        lr=call["optimizer"].param_groups[0]["lr"])
        call["returned"] = original(*positional, **named)
        calls.append(call)
        return call["returned"]

    monkeypatch.setattr(module, "update", spy)
    args = module.Args(total_timesteps=400, learning_starts=100, batch_size=16, buffer_size=400, train_frequency=4,
                       target_network_frequency=40, gamma=0.77, learning_rate=0.004, hidden_size=16,
                       eval_episodes=1, run_dir=str(tmp_path), cuda=False, save_model=False, **overrides)
    module.train(args)
    # the settings as train() resolved them (ENV_DEFAULTS fills in those left at None)
    return module.with_env_defaults(args, gym.make("CartPole-v1")), calls


def update_steps(args):
    """The environment steps at which train() calls update()."""
    return [step for step in range(1, args.total_timesteps + 1)
            if step > args.learning_starts and step % args.train_frequency == 0]


@pytest.mark.parametrize("module", [double_dqn, dueling_dqn, per_dqn], ids=lambda m: m.__name__)
def test_train_passes_gamma_decays_the_learning_rate_and_copies_the_online_network_into_the_target(
        module, monkeypatch, tmp_path):
    """Catches γ ignored or replaced at the call site; a learning rate that is not lr · (1 − (t − 1) / T) at the
    update of step t (T = total_timesteps; the formula gives lr at step 1 and lr / T at step T), e.g. not decayed
    at all, or decayed from the wrong step; and a target network that never follows the online one or follows it
    at the wrong steps: at the update of step t, φ' must be φ as it was after the last update before the last
    copy step c = N ⌊(t − 1) / N⌋ (the copy at step t comes after its update), i.e. φ at the first update after c."""
    args, calls = spy_on_train(module, monkeypatch, tmp_path)
    steps = update_steps(args)
    assert len(calls) == len(steps)
    assert all(call["gamma"] == 0.77 for call in calls)
    assert args.anneal_lr, "the learning rate decays by default"
    assert [call["lr"] for call in calls] == pytest.approx(
        [0.004 * (1 - (step - 1) / 400) for step in steps], rel=1e-9), "learning rate at each update"
    period = args.target_network_frequency
    for call, step in zip(calls, steps):
        last_copy = (step - 1) // period * period
        first_after = next(k for k, s in enumerate(steps) if s > last_copy)
        assert torch.equal(call["target"], calls[first_after]["online"]), f"target network at step {step}"
    assert not torch.equal(calls[0]["target"], calls[-1]["target"]), "the target network never changed"


def test_per_train_weights_the_loss_anneals_beta_and_sets_priorities_to_the_new_td_errors(monkeypatch, tmp_path):
    """At each update of a short per_dqn run: β passed to sample() is per_beta_start + (1 − per_beta_start) t / T;
    the weights passed to update() are (N P(i))^(−β) / max_j, with P(i) = p_i^α / Σ_k p_k^α read from the sum tree
    when the batch is drawn; and before the next draw, the sampled leaves hold (|δ_i| + ε)^α with
    δ = r + γ (1 − d) max Q'(s') − Q(s, a) from the networks before the step. Catches weights replaced by ones at
    the call site, β not annealed, priorities never updated, set to 0, from another batch's TD errors or
    without ε."""
    draws, original_sample = [], per_dqn.PrioritizedReplayBuffer.sample

    def sample_spy(self, batch_size, beta, rng, device):
        leaves = self.tree.get(np.arange(self.size)).copy()  # p_k^α of every stored transition, before the draw
        drawn = original_sample(self, batch_size, beta, rng, device)
        draws.append(dict(beta=beta, leaves=leaves, idx=drawn[-1].copy(), weights=drawn[-2].clone()))
        return drawn

    monkeypatch.setattr(per_dqn.PrioritizedReplayBuffer, "sample", sample_spy)
    alpha, eps, beta_start = 0.7, 0.1, 0.3
    args, calls = spy_on_train(per_dqn, monkeypatch, tmp_path, per_alpha=alpha, per_eps=eps,
                               per_beta_start=beta_start)
    steps = update_steps(args)
    assert len(draws) == len(calls) == len(steps)
    for k, (draw, call, step) in enumerate(zip(draws, calls, steps)):
        assert draw["beta"] == pytest.approx(beta_start + (1 - beta_start) * step / args.total_timesteps)
        probabilities = draw["leaves"][draw["idx"]] / draw["leaves"].sum()
        raw = (len(draw["leaves"]) * probabilities) ** -draw["beta"]
        assert np.allclose(call["weights"].numpy(), raw / raw.max(), rtol=1e-5), f"weights at step {step}"
        if k + 1 < len(calls):
            _, actions, rewards, _, terminated = call["batch"]
            y = rewards + 0.77 * (1 - terminated) * call["next_target_q"].max(1).values
            td_errors = (y - call["q"][torch.arange(len(actions)), actions]).numpy()
            assert np.allclose(draws[k + 1]["leaves"][draw["idx"]], (np.abs(td_errors) + eps) ** alpha,
                               rtol=1e-5), f"priorities after the update at step {step}"
    assert min(call["weights"].min().item() for call in calls) < 0.9, "the weights never left 1: no test"
