"""DQN's math: the TD target, the target network, and terminated against truncated transitions."""

import numpy as np
import pytest
import torch
import torch.nn as nn

import dqn
from conftest import TIME_LIMIT


def linear_q(weight):
    """A Q-network we can compute by hand: Q(s) = W s."""
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor(weight))
    return net


def test_target_is_r_plus_gamma_max_of_target_network():
    target = linear_q([[1.0, 0.0], [0.0, 2.0]])  # Q'(s') = (s'_0, 2 s'_1)
    rewards = torch.tensor([1.0, 0.5])
    next_obs = torch.tensor([[3.0, 1.0], [1.0, 4.0]])  # max Q' = 3 and 8
    y = dqn.td_target(target, rewards, next_obs, torch.zeros(2), gamma=0.9)
    assert torch.allclose(y, torch.tensor([1.0 + 0.9 * 3.0, 0.5 + 0.9 * 8.0]))


def test_terminated_stops_the_bootstrap():
    target = linear_q([[1.0, 0.0], [0.0, 2.0]])
    y = dqn.td_target(target, torch.tensor([1.0, 1.0]), torch.tensor([[3.0, 1.0], [3.0, 1.0]]),
                      terminated=torch.tensor([1.0, 0.0]), gamma=0.9)
    assert y.tolist() == pytest.approx([1.0, 1.0 + 0.9 * 3.0])


def test_no_gradient_flows_through_the_target():
    online, target = linear_q([[0.5, 0.5], [1.0, -1.0]]), linear_q([[1.0, 0.0], [0.0, 2.0]])
    obs = torch.tensor([[1.0, 2.0]])
    y = dqn.td_target(target, torch.tensor([1.0]), torch.tensor([[3.0, 1.0]]), torch.zeros(1), 0.9)
    assert not y.requires_grad
    loss = ((online(obs)[:, 0] - y) ** 2).mean()
    loss.backward()
    assert target.weight.grad is None
    # d/dW (Q(s,0) - y)^2 = 2 (Q(s,0) - y) s for the row of action 0
    expected = 2 * (1.5 - (1.0 + 0.9 * 3.0)) * obs[0]
    assert torch.allclose(online.weight.grad[0], expected)


def recorded_transitions(monkeypatch, tmp_path, env_id, steps=40):
    """Train on env_id and return every transition the loop put in the replay buffer."""
    added = []
    original_add = dqn.ReplayBuffer.add

    def spy(self, obs, action, reward, next_obs, terminated):
        added.append((np.array(obs), np.array(next_obs), bool(terminated)))
        original_add(self, obs, action, reward, next_obs, terminated)

    monkeypatch.setattr(dqn.ReplayBuffer, "add", spy)
    dqn.train(dqn.Args(env_id=env_id, total_timesteps=steps, learning_starts=8, batch_size=4, buffer_size=64,
                       eval_episodes=1, run_dir=str(tmp_path), cuda=False, save_model=False))
    return added


def test_truncation_bootstraps_from_the_real_final_observation(monkeypatch, tmp_path):
    added = recorded_transitions(monkeypatch, tmp_path, "CountTruncatedDiscrete-v0")
    assert len(added) == 40
    assert not any(terminated for _, _, terminated in added), "a time limit was stored as a termination"
    for obs, next_obs, _ in added:
        # s' is always the successor of s, also at the time limit (not the first obs of the next episode)
        assert next_obs[0] == obs[0] + 1 and next_obs[0] <= TIME_LIMIT
    assert sum(next_obs[0] == TIME_LIMIT for _, next_obs, _ in added) == 40 // TIME_LIMIT


@pytest.mark.parametrize("limit", ["", "AtLimit"], ids=["before-the-limit", "at-the-limit"])
def test_termination_is_stored(limit, monkeypatch, tmp_path):
    """A termination is stored as terminated, also when the time limit cuts the episode on the same step
    (terminated and truncated both true)."""
    added = recorded_transitions(monkeypatch, tmp_path, f"CountTerminated{limit}Discrete-v0", steps=30)
    assert [terminated for _, _, terminated in added] == [False, False, True] * 10
    assert all(next_obs[0] == obs[0] + 1 for obs, next_obs, _ in added)


# ---------------------------------------------------------------------------------------------------
# The update and the loop that calls it: a wrong sign, a missing target sync or an ignored γ must fail here
# ---------------------------------------------------------------------------------------------------
def test_update_is_one_gradient_step_on_the_td_error():
    """The loss is mean_j (Q(s_j, a_j) − y_j)²: with plain SGD the step is
    W_a ← W_a − lr · (2/n) Σ_j [a_j = a] (Q(s_j, a) − y_j) s_j, with y_j = r_j + γ (1 − terminated_j) max Q'(s'_j).
    One error lies beyond 1, where a Huber loss would have clipped its gradient."""
    online, target = linear_q([[0.5, 0.2], [0.1, -0.3]]), linear_q([[0.4, 0.0], [0.0, 0.3]])
    obs = torch.tensor([[1.0, 0.5], [0.2, 1.0], [0.6, 0.4]])
    actions = torch.tensor([0, 1, 0])
    rewards = torch.tensor([0.4, 1.9, -0.2])
    next_obs = torch.tensor([[0.5, 1.0], [1.0, 0.2], [0.3, 0.9]])
    terminated = torch.tensor([0.0, 0.0, 1.0])
    gamma, lr = 0.9, 0.1
    W, W_target = online.weight.detach().clone(), target.weight.detach().clone()
    y = rewards + gamma * (1 - terminated) * (next_obs @ W_target.T).max(1).values
    errors = (obs @ W.T)[torch.arange(3), actions] - y
    assert errors.abs().max() > 1
    expected = W.clone()
    for j in range(3):
        expected[actions[j]] -= lr * 2 * errors[j] * obs[j] / 3
    loss, q_values = dqn.update(online, target, torch.optim.SGD(online.parameters(), lr=lr),
                                (obs, actions, rewards, next_obs, terminated), gamma, huber=False)
    assert torch.allclose(online.weight, expected, atol=1e-6)
    assert torch.equal(target.weight, W_target), "the update must not touch the target network"
    assert loss.item() == pytest.approx((errors ** 2).mean().item(), rel=1e-5)
    assert torch.allclose(q_values, (obs @ W.T)[torch.arange(3), actions])


def test_train_passes_gamma_and_copies_the_online_network_into_the_target(monkeypatch, tmp_path):
    """Spy on every update() of a short run: γ is the one of Args, the learning rate decays linearly to 0, and
    the target network is, at every update, a copy of the online network as it was at some earlier update, and
    it does change (DQN-5)."""
    calls, rates, original = [], [], dqn.update

    def spy(q_network, target_network, optimizer, batch, gamma, huber):
        calls.append((gamma, nn.utils.parameters_to_vector(q_network.parameters()).detach().clone(),
                      nn.utils.parameters_to_vector(target_network.parameters()).detach().clone()))
        rates.append(optimizer.param_groups[0]["lr"])
        return original(q_network, target_network, optimizer, batch, gamma, huber)

    monkeypatch.setattr(dqn, "update", spy)
    dqn.train(dqn.Args(total_timesteps=400, learning_starts=100, batch_size=16, buffer_size=400, train_frequency=4,
                       target_network_frequency=40, gamma=0.77, eval_episodes=1, run_dir=str(tmp_path), cuda=False,
                       save_model=False, learning_rate=0.004))
    assert len(calls) == (400 - 100) // 4
    assert all(gamma == 0.77 for gamma, _, _ in calls)
    steps = range(104, 401, 4)  # the env steps at which the updates happen
    assert rates == pytest.approx([0.004 * (1 - (step - 1) / 400) for step in steps])
    targets = {tuple(target.tolist()) for _, _, target in calls}
    assert len(targets) >= (400 - 100) // 40, "the target network did not follow the online one"
    for k, (_, _, target) in enumerate(calls[1:], start=1):
        assert any(torch.equal(target, online) for _, online, _ in calls[:k + 1]) or torch.equal(target, calls[0][2])


@pytest.mark.parametrize("name", ["dqn", "double_dqn", "dueling_dqn", "per_dqn", "rainbow"])
def test_a_run_without_a_gradient_step_is_refused(name, tmp_path, capsys):
    """total_timesteps at or below learning_starts would train nothing and say nothing: one clear line instead."""
    module = __import__(name)
    with pytest.raises(SystemExit) as stop:
        module.train(module.Args(total_timesteps=500, learning_starts=500, batch_size=32, run_dir=str(tmp_path)))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "learning_starts (500)" in err and "total_timesteps (500)" in err, err
    assert not list(tmp_path.iterdir()), "a refused run must not leave a run folder"
