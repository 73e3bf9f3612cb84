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


def test_termination_is_stored(monkeypatch, tmp_path):
    added = recorded_transitions(monkeypatch, tmp_path, "CountTerminatedDiscrete-v0", steps=30)
    assert [terminated for _, _, terminated in added] == [False, False, True] * 10
    assert all(next_obs[0] == obs[0] + 1 for obs, next_obs, _ in added)
