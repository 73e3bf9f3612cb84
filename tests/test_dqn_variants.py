"""The DQN variants' math: Double DQN's target, the dueling head, prioritized replay's sum tree, sampling,
importance weights and β schedule, and terminated against truncated transitions in each variant's buffer."""

import csv
import importlib
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

import double_dqn
import dqn
import dueling_dqn
import per_dqn
from conftest import TIME_LIMIT
from test_dqn import linear_q

# ---------------------------------------------------------------------------------------------------
# Double DQN
# ---------------------------------------------------------------------------------------------------
# Q(s') = W s' for s' = (3, 1) and (1, 4). On the first row the online network prefers action 1 and the
# target network action 0: the two targets differ. On the second row both prefer action 1.
ONLINE = [[0.0, 1.0], [1.0, 0.0]]  # online Q(s') = (s'_1, s'_0): (1, 3) and (4, 1)
TARGET = [[1.0, 0.0], [0.0, 2.0]]  # target Q'(s') = (s'_0, 2 s'_1): (3, 2) and (1, 8)
NEXT_OBS = torch.tensor([[3.0, 1.0], [1.0, 4.0]])
REWARDS = torch.tensor([1.0, 0.5])


def test_double_dqn_target_evaluates_the_online_argmax_with_the_target_network():
    online, target = linear_q(ONLINE), linear_q(TARGET)
    y = double_dqn.td_target(online, target, REWARDS, NEXT_OBS, torch.zeros(2), gamma=0.9)
    # reference: r + γ Q'(s', argmax_a Q(s', a)), computed row by row
    with torch.no_grad():
        expected = [float(r + 0.9 * target(s)[online(s).argmax()]) for r, s in zip(REWARDS, NEXT_OBS)]
    assert y.tolist() == pytest.approx(expected)
    assert y.tolist() == pytest.approx([1.0 + 0.9 * 2.0, 0.5 + 0.9 * 1.0])
    dqn_y = dqn.td_target(target, REWARDS, NEXT_OBS, torch.zeros(2), gamma=0.9)
    assert dqn_y.tolist() == pytest.approx([1.0 + 0.9 * 3.0, 0.5 + 0.9 * 8.0])
    assert y[0] < dqn_y[0], "where the networks disagree, Double DQN's target is below DQN's max"


def test_double_dqn_target_stops_at_termination_and_has_no_gradient():
    online, target = linear_q(ONLINE), linear_q(TARGET)
    y = double_dqn.td_target(online, target, REWARDS, NEXT_OBS, torch.tensor([1.0, 0.0]), gamma=0.9)
    assert y.tolist() == pytest.approx([1.0, 0.5 + 0.9 * 1.0])
    assert not y.requires_grad


# ---------------------------------------------------------------------------------------------------
# Dueling DQN
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def dueling_batch():
    torch.manual_seed(0)
    net = dueling_dqn.QNetwork(gym.spaces.Box(-np.inf, np.inf, (3,)), n_actions=4, hidden_size=16)
    obs = torch.randn(5, 3)
    with torch.no_grad():
        net.advantage.bias.add_(2.0)  # make mean_a A clearly nonzero, so a missing "− mean" shows
        value, advantage = net.streams(obs)
    return net, obs, value, advantage


def test_dueling_q_minus_its_mean_is_a_minus_its_mean(dueling_batch):
    net, obs, value, advantage = dueling_batch
    q = net(obs)
    assert q.shape == advantage.shape == (5, 4) and value.shape == (5, 1)
    assert advantage.mean(dim=1).abs().min() > 1.0
    assert torch.allclose(q - q.mean(dim=1, keepdim=True), advantage - advantage.mean(dim=1, keepdim=True),
                          atol=1e-5)


def test_dueling_value_carries_the_mean(dueling_batch):
    net, obs, value, _ = dueling_batch
    assert torch.allclose(net(obs).mean(dim=1), value.squeeze(1), atol=1e-5)


def test_dueling_q_ignores_a_constant_added_to_every_advantage(dueling_batch):
    net, obs, _, _ = dueling_batch
    before = net(obs)
    with torch.no_grad():
        net.advantage.bias.add_(5.0)
    assert torch.allclose(net(obs), before, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Prioritized replay: sum tree, PER-1 ... PER-5
# ---------------------------------------------------------------------------------------------------
ALPHA, EPS = 0.6, 1e-3


def assert_sums_are_consistent(tree):
    inner = np.arange(1, tree.n_leaves)
    assert np.allclose(tree.nodes[inner], tree.nodes[2 * inner] + tree.nodes[2 * inner + 1])


def test_sum_tree_total_is_the_sum_of_priorities_after_updates():
    tree, reference = per_dqn.SumTree(5), np.zeros(5)  # 5 is not a power of two: 3 unused leaves
    rng = np.random.default_rng(0)
    for _ in range(50):
        i = int(rng.integers(0, 5))
        reference[i] = rng.random()
        tree.set(i, reference[i])  # one leaf, as a new transition
        idx, values = rng.integers(0, 5, size=3), rng.random(3)
        values[idx == idx[0]] = values[0]  # a batch may repeat an index (drawn with replacement), same value
        tree.set_many(idx, values)  # a batch of leaves, as new priorities
        reference[idx] = values
        assert tree.total == pytest.approx(reference.sum())
        assert np.allclose(tree.get(np.arange(5)), reference)
        assert_sums_are_consistent(tree)


def test_sum_tree_finds_the_leaf_where_a_value_falls():
    tree = per_dqn.SumTree(4)
    tree.set_many(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))  # leaves span [0,1) [1,3) [3,6) [6,10)
    values = np.array([0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0, 9.99])
    assert tree.find(values).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def filled_buffer(td_errors, capacity=8):
    """A prioritized buffer with one transition per TD error, whose priorities come from those errors."""
    buffer = per_dqn.PrioritizedReplayBuffer(capacity, gym.spaces.Box(-np.inf, np.inf, (2,)), alpha=ALPHA, eps=EPS)
    for i in range(len(td_errors)):
        buffer.add(np.array([i, 1.0]), 0, 1.0, np.array([i + 1, 1.0]), False)
    buffer.update_priorities(np.arange(len(td_errors)), np.array(td_errors))
    return buffer


TD_ERRORS = [0.1, -0.5, 1.0, 2.0, -3.0, 0.0]


def probabilities(td_errors):
    """P(i) = p_i^α / Σ_k p_k^α with p_i = |δ_i| + ε, computed independently of the buffer."""
    scaled = (np.abs(td_errors) + EPS) ** ALPHA
    return scaled / scaled.sum()


def test_priorities_are_abs_td_error_plus_eps_to_the_alpha():
    buffer = filled_buffer(TD_ERRORS)
    assert np.allclose(buffer.tree.get(np.arange(6)), (np.abs(TD_ERRORS) + EPS) ** ALPHA)
    assert buffer.tree.total == pytest.approx(((np.abs(TD_ERRORS) + EPS) ** ALPHA).sum())


def test_sampling_frequencies_match_the_priorities():
    buffer, rng = filled_buffer(TD_ERRORS), np.random.default_rng(0)
    draws = np.concatenate([buffer.sample(64, 0.4, rng, torch.device("cpu"))[-1] for _ in range(300)])
    assert draws.max() < 6, "an empty slot of the buffer was sampled"
    frequencies = np.bincount(draws, minlength=6) / len(draws)
    assert np.allclose(frequencies, probabilities(TD_ERRORS), atol=0.01), frequencies


def test_importance_weights_match_the_formula():
    buffer, beta = filled_buffer(TD_ERRORS), 0.7
    *batch, weights, idx = buffer.sample(32, beta, np.random.default_rng(1), torch.device("cpu"))
    assert len(set(idx.tolist())) > 3
    raw = (len(TD_ERRORS) * probabilities(TD_ERRORS)[idx]) ** -beta  # (N · P(i))^(−β)
    assert np.allclose(weights.numpy(), raw / raw.max(), rtol=1e-5)
    assert weights.max() == 1.0
    assert torch.equal(batch[0][:, 0], torch.as_tensor(idx, dtype=torch.float32)), "transitions out of step"


def test_equal_priorities_give_uniform_weights():
    buffer = filled_buffer([1.0] * 5)
    weights = buffer.sample(16, 0.5, np.random.default_rng(0), torch.device("cpu"))[-2]
    assert torch.allclose(weights, torch.ones(16))


def test_a_new_transition_gets_the_largest_priority_so_far():
    buffer = per_dqn.PrioritizedReplayBuffer(4, gym.spaces.Box(-np.inf, np.inf, (2,)), alpha=ALPHA, eps=EPS)
    buffer.add(np.zeros(2), 0, 0.0, np.zeros(2), False)
    assert buffer.tree.get(np.array([0])) == pytest.approx(1.0)  # nothing seen yet: priority 1
    buffer.add(np.zeros(2), 0, 0.0, np.zeros(2), False)
    buffer.update_priorities(np.array([0, 1]), np.array([3.0, -0.5]))
    buffer.update_priorities(np.array([0]), np.array([0.2]))  # the largest is gone from the buffer ...
    buffer.add(np.zeros(2), 0, 0.0, np.zeros(2), False)
    assert buffer.tree.get(np.array([2])) == pytest.approx((3.0 + EPS) ** ALPHA)  # ... but remains the max
    for _ in range(2):  # the buffer wraps around: slot 0 is overwritten and gets the max priority too
        buffer.add(np.zeros(2), 0, 0.0, np.zeros(2), False)
    assert buffer.tree.get(np.array([0])) == pytest.approx((3.0 + EPS) ** ALPHA)
    assert_sums_are_consistent(buffer.tree)


def test_beta_reaches_one_at_the_end_of_training(tmp_path):
    args = per_dqn.Args(total_timesteps=800, learning_starts=200, batch_size=32, buffer_size=1_000,
                        log_frequency=100, eval_episodes=1, per_beta_start=0.4, run_dir=str(tmp_path),
                        cuda=False, save_model=False)
    run_dir = per_dqn.train(args)["run_dir"]
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    steps, betas = [int(r["global_step"]) for r in rows], [float(r["beta"]) for r in rows]
    assert steps[-1] == 800 and betas[-1] == pytest.approx(1.0)
    assert betas == pytest.approx([0.4 + 0.6 * step / 800 for step in steps])
    assert all(0 < float(r["weight_mean"]) <= 1 for r in rows)


# ---------------------------------------------------------------------------------------------------
# Terminated against truncated transitions, in each variant's buffer
# ---------------------------------------------------------------------------------------------------
BUFFERS = {"double_dqn": "ReplayBuffer", "dueling_dqn": "ReplayBuffer", "per_dqn": "PrioritizedReplayBuffer"}


def recorded_transitions(name, monkeypatch, tmp_path, env_id, steps):
    """Train the variant on env_id and return every (s, s', terminated) the loop put in its buffer."""
    module = importlib.import_module(name)
    buffer_class = getattr(module, BUFFERS[name])
    added, original_add = [], buffer_class.add

    def spy(self, obs, action, reward, next_obs, terminated):
        added.append((np.array(obs), np.array(next_obs), bool(terminated)))
        original_add(self, obs, action, reward, next_obs, terminated)

    monkeypatch.setattr(buffer_class, "add", spy)
    module.train(module.Args(env_id=env_id, total_timesteps=steps, learning_starts=8, batch_size=4,
                             buffer_size=64, eval_episodes=1, run_dir=str(tmp_path), cuda=False,
                             save_model=False))
    return added


@pytest.mark.parametrize("name", list(BUFFERS))
def test_truncation_bootstraps_from_the_real_final_observation(name, monkeypatch, tmp_path):
    added = recorded_transitions(name, monkeypatch, tmp_path, "CountTruncatedDiscrete-v0", steps=40)
    assert len(added) == 40
    assert not any(terminated for _, _, terminated in added), "a time limit was stored as a termination"
    assert all(next_obs[0] == obs[0] + 1 <= TIME_LIMIT for obs, next_obs, _ in added)
    assert sum(next_obs[0] == TIME_LIMIT for _, next_obs, _ in added) == 40 // TIME_LIMIT


@pytest.mark.parametrize("name", list(BUFFERS))
@pytest.mark.parametrize("limit", ["", "AtLimit"], ids=["before-the-limit", "at-the-limit"])
def test_termination_is_stored(name, limit, monkeypatch, tmp_path):
    """A termination is stored as terminated, also when the time limit cuts the episode on the same step
    (terminated and truncated both true)."""
    added = recorded_transitions(name, monkeypatch, tmp_path, f"CountTerminated{limit}Discrete-v0", steps=30)
    assert [terminated for _, _, terminated in added] == [False, False, True] * 10
    assert all(next_obs[0] == obs[0] + 1 for obs, next_obs, _ in added)
