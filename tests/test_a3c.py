"""A3C: the returns of a rollout, the gradients of its losses, a worker's loop (A3C-2 to A3C-6) run in the
test's own process against a hand computation, the shared optimizer across processes, two workers writing one
log, a crashing worker, Ctrl-C, and no process left behind. A3C's worker processes run asynchronously, so the
multi-process tests check what holds whatever the interleaving, never exact returns; the worker's loop is
checked exactly in-process, with one worker."""

import os
import re
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

import a3c
from conftest import ROOT, TIME_LIMIT, interrupt_once_logging, read_csv, record_training_resets

TESTS = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------------------
# An env that raises in the middle of training, registered when this file is imported: in-process, and by
# the command-line test below, which imports this file before it runs a3c.py as __main__. The workers,
# forked, find it registered.
# ---------------------------------------------------------------------------------------------------
class RaisingCartPole(gym.Wrapper):
    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == 50:
            raise ValueError("the env broke on purpose")
        return self.env.step(action)


if "RaisingCartPole-v0" not in gym.envs.registry:
    gym.register("RaisingCartPole-v0", entry_point=RaisingCartPole)


# ---------------------------------------------------------------------------------------------------
# A3C-4: the returns of one rollout
# ---------------------------------------------------------------------------------------------------
def reference_returns(rewards, last_value, terminated, gamma):
    """The paper's loop: R = 0 if terminal else V(s_t); for i = t−1 … t_start: R ← r_i + γR."""
    R = 0.0 if terminated else last_value
    returns = []
    for r in reversed(rewards):
        R = r + gamma * R
        returns.append(R)
    return returns[::-1]


@pytest.mark.parametrize("terminated", [True, False])
def test_rollout_returns_are_the_n_step_returns(terminated):
    rewards = np.array([1.0, 0.5, -2.0, 3.0], dtype=np.float32)
    values = np.array([0.3, -0.1, 0.7, 1.2], dtype=np.float32)
    advantages, returns = a3c.rollout_returns(rewards, values, last_value=5.0, terminated=terminated, gamma=0.9,
                                              gae_lambda=1.0)
    expected = reference_returns(rewards, 5.0, terminated, 0.9)
    assert returns == pytest.approx(expected, abs=1e-5)
    assert advantages == pytest.approx(np.array(expected) - values, abs=1e-5)


def test_truncation_bootstraps_and_termination_does_not():
    """Same rollout, same final value: only the termination drops V(s_n) = 10 from the returns."""
    rewards, values = np.ones(3, dtype=np.float32), np.zeros(3, dtype=np.float32)
    _, cut = a3c.rollout_returns(rewards, values, 10.0, terminated=False, gamma=0.5, gae_lambda=1.0)
    _, ended = a3c.rollout_returns(rewards, values, 10.0, terminated=True, gamma=0.5, gae_lambda=1.0)
    assert cut.tolist() == pytest.approx([1 + 0.5 + 0.25 + 0.125 * 10, 1 + 0.5 + 0.25 * 10, 1 + 0.5 * 10])
    assert ended.tolist() == pytest.approx([1.75, 1.5, 1.0])


# ---------------------------------------------------------------------------------------------------
# A3C-5: the gradients of one rollout's losses, on the local networks
# ---------------------------------------------------------------------------------------------------
def test_compute_gradients_leaves_the_clipped_gradients_of_the_a3c_loss_on_the_local_networks():
    """The losses of A3C-5, summed over the rollout: a flipped sign of the actor's or the critic's loss, or of
    the entropy bonus, fails here."""
    torch.manual_seed(0)
    actor, critic = a3c.CategoricalActor(3, 2, 8, 0.0), a3c.Critic(3, 8)
    parameters = list(actor.parameters()) + list(critic.parameters())
    batch = (torch.randn(6, 3), torch.tensor([0, 1, 1, 0, 1, 0]), torch.randn(6), torch.randn(6))
    obs, actions, advantages, returns = batch
    policy_loss, value_loss, entropy = a3c.compute_gradients(actor, critic, batch, ent_coef=0.01, vf_coef=0.5,
                                                             max_grad_norm=1e9)
    # The losses of the slides, written with torch.distributions, and their gradients by autograd
    policy = torch.distributions.Categorical(logits=actor.logits(obs))
    expected_policy_loss = -(policy.log_prob(actions) * advantages).sum()
    expected_value_loss = ((returns - critic(obs)) ** 2).sum()
    assert policy_loss.item() == pytest.approx(expected_policy_loss.item(), rel=1e-5)
    assert value_loss.item() == pytest.approx(expected_value_loss.item(), rel=1e-5)
    assert entropy.item() == pytest.approx(policy.entropy().mean().item(), rel=1e-5)
    loss = expected_policy_loss - 0.01 * policy.entropy().sum() + 0.5 * expected_value_loss
    for p, expected in zip(parameters, torch.autograd.grad(loss, parameters)):
        assert torch.allclose(p.grad, expected, atol=1e-6)
    # A small max_grad_norm scales the gradients down to that global norm
    a3c.compute_gradients(actor, critic, batch, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.1)
    assert torch.stack([p.grad.norm() for p in parameters]).norm().item() == pytest.approx(0.1, rel=1e-4)


def local_gradients(actor, critic, batch):
    """The gradients compute_gradients leaves on the networks for `batch`, as one vector (no clipping)."""
    a3c.compute_gradients(actor, critic, batch, ent_coef=0.01, vf_coef=0.5, max_grad_norm=1e9)
    return torch.cat([p.grad.flatten() for p in [*actor.parameters(), *critic.parameters()]])


@pytest.mark.parametrize("actor_class, actions", [(a3c.CategoricalActor, torch.tensor([0, 1, 1, 0, 1])),
                                                  (a3c.GaussianActor, torch.randn(5, 2))], ids=["Discrete", "Box"])
def test_a_rollouts_gradient_is_the_sum_of_its_steps_gradients(actor_class, actions):
    """Algorithm S3 sums the gradients over the rollout's steps: each step weighs the same whatever the length
    of its rollout, so a 1-step rollout at an episode's end weighs per step what a full one does. Averaging
    over the rollout (the loss's mean) fails here."""
    torch.manual_seed(0)
    actor, critic = actor_class(3, 2, 8, 0.0), a3c.Critic(3, 8)
    batch = (torch.randn(5, 3), actions, torch.randn(5), torch.randn(5))
    whole = local_gradients(actor, critic, batch)
    steps = [local_gradients(actor, critic, tuple(x[i:i + 1] for x in batch)) for i in range(5)]
    assert torch.allclose(whole, torch.stack(steps).sum(0), atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# worker(): A3C-2 to A3C-6, run in the test's own process (one worker, so nothing interleaves)
# ---------------------------------------------------------------------------------------------------
class InProcessWorkers:
    """A stand-in for a3c.Workers (read its worker's side): the step counter, the episode count and the
    messages of one worker run by a plain call, in the test's process."""

    def __init__(self):
        self.global_step = SimpleNamespace(value=0)  # a3c.Workers: a shared counter with a lock
        self.episodes, self.sent = 0, []

    def keep_going(self) -> bool:
        return True

    def claim_step(self, total_timesteps: int) -> bool:
        if self.global_step.value >= total_timesteps:
            return False
        self.global_step.value += 1
        return True

    def rewards(self, reward: float, done: bool):
        self.episodes += int(done)

    def send(self, kind: str, *row):
        self.sent.append((kind, *row))


def worker_args(env_id: str, num_steps: int, total_timesteps: int, **overrides) -> a3c.Args:
    """Settings of an in-process worker on a conftest CountEnv (observation [t, 1], reward 1 a step), with an
    unusual γ, an entropy bonus, and no clipping, reward scaling or learning-rate decay."""
    settings = dict(env_id=env_id, num_steps=num_steps, total_timesteps=total_timesteps, gamma=0.77,
                    gae_lambda=1.0, ent_coef=0.1, vf_coef=0.5, max_grad_norm=1e9, norm_reward=False,
                    anneal_lr=False, learning_rate=1e-3, hidden_size=4, cuda=False, save_model=False)
    return a3c.Args(**dict(settings, **overrides))


def global_networks(args: a3c.Args):
    """The global actor and critic (A3C-1) for args.env_id, as train() makes them."""
    env = gym.make(args.env_id)
    networks = a3c.make_networks(env, args)
    env.close()
    return networks


def run_worker(args: a3c.Args, actor, critic, lr: float):
    """worker 0 until args.total_timesteps, with a plain SGD optimizer on the global networks: each update
    is then θ ← θ − lr · gradient."""
    optimizer = torch.optim.SGD([*actor.parameters(), *critic.parameters()], lr=lr)
    workers = InProcessWorkers()
    a3c.worker(0, args, actor, critic, optimizer, workers)
    assert workers.global_step.value == args.total_timesteps


def vector(*networks) -> torch.Tensor:
    return nn.utils.parameters_to_vector([p for net in networks for p in net.parameters()]).detach().clone()


def linear_networks(monkeypatch, args: a3c.Args):
    """Global networks made linear (a3c.mlp patched to one nn.Linear, for the worker's local networks too),
    with fixed weights that differ from any the worker would initialize: logits or mean μ = tanh(W s + b)
    (bounded Box actions), V(s) = w·s + c."""
    monkeypatch.setattr(a3c, "mlp", lambda in_dim, out_dim, hidden_size, out_gain: nn.Sequential(
        nn.Linear(in_dim, out_dim)))
    actor, critic = global_networks(args)
    fixed = {"logits.0.weight": [[0.3, -0.2], [-0.1, 0.4]], "logits.0.bias": [0.05, -0.05],
             "mean.0.weight": [[0.2, -0.3]], "mean.0.bias": [0.1], "log_std": [-0.3],
             "net.0.weight": [[0.5, 0.2]], "net.0.bias": [0.1]}
    with torch.no_grad():
        for name, p in [*actor.named_parameters(), *critic.named_parameters()]:
            p.copy_(torch.tensor(fixed[name]))
    return actor, critic


def hand_gradients(params: dict, actions, n: int, terminated: bool, args: a3c.Args) -> dict:
    """The gradient of one rollout's A3C-5 loss, written out for the linear networks on CountEnv: states
    s_i = [i, 1] for i < n, reward 1 a step, last state s_n = [n, 1];
    R = 0 if terminated else V(s_n), R_i = 1 + γ R_{i+1};
    loss = Σ_i [−(R_i − V(s_i)) log π(a_i|s_i) − β H(π(·|s_i)) + c_v (R_i − V(s_i))²], R_i − V(s_i) constant
    in the actor's term."""
    params = {name: value.clone().requires_grad_(True) for name, value in params.items()}
    states = torch.tensor([[float(i), 1.0] for i in range(n + 1)])

    def V(s):
        return s @ params["net.0.weight"][0] + params["net.0.bias"][0]

    R = 0.0 if terminated else V(states[n]).item()
    returns = []
    for i in reversed(range(n)):
        R = 1.0 + args.gamma * R
        returns.insert(0, R)
    returns, values = torch.tensor(returns), V(states[:n])
    advantages, actions = (returns - values).detach(), torch.as_tensor(np.array(actions))
    if "logits.0.weight" in params:  # softmax policy over 2 actions
        log_p = (states[:n] @ params["logits.0.weight"].T + params["logits.0.bias"]).log_softmax(-1)
        log_probs = log_p[torch.arange(n), actions]
        entropies = -(log_p.exp() * log_p).sum(-1)
    else:  # Gaussian with mean tanh(W s + b) in the bounds [-1, 1] and a learned log σ
        mean = torch.tanh(states[:n] @ params["mean.0.weight"][0] + params["mean.0.bias"][0])
        log_std = params["log_std"][0]
        log_probs = -0.5 * ((actions[:, 0] - mean) / log_std.exp()) ** 2 - log_std - 0.5 * np.log(2 * np.pi)
        entropies = (0.5 * np.log(2 * np.pi * np.e) + log_std).expand(n)
    loss = (-(advantages * log_probs).sum() - args.ent_coef * entropies.sum()
            + args.vf_coef * ((returns - values) ** 2).sum())
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


@pytest.mark.parametrize("env_id, num_steps, n, terminated", [
    ("CountTerminatedDiscrete-v0", 5, 3, True),   # the episode terminates after 3 steps: R = 0
    ("CountTruncatedDiscrete-v0", 5, 5, False),   # the time limit cuts it after 5: R = V(final observation)
    ("CountTruncatedDiscrete-v0", 3, 3, False),   # t_max ends the rollout: R = V(state reached)
    ("CountTerminatedAtLimitDiscrete-v0", 5, 3, True),  # terminated on the time limit's step: still R = 0
    ("CountTerminatedContinuous-v0", 5, 3, True),
    ("CountTruncatedContinuous-v0", 5, 5, False),
], ids=["terminated", "truncated", "t_max", "terminated-at-limit", "Box-terminated", "Box-truncated"])
def test_a_workers_rollout_moves_the_global_networks_by_the_hand_computed_gradient(
        monkeypatch, env_id, num_steps, n, terminated):
    """One rollout of worker(): the global parameters after it are θ − lr · ∇loss, with the gradient written
    out by hand at the global parameters. Fails when the local networks do not copy the global ones (A3C-2),
    when γ, the end of the episode (termination vs truncation) or the sign of a loss is wrong at the call
    site (A3C-4, A3C-5), when the losses are averaged rather than summed, and when the local gradients do not
    reach the global parameters or the optimizer steps before they do (A3C-6)."""
    args, lr = worker_args(env_id, num_steps, total_timesteps=n), 0.01
    actor, critic = linear_networks(monkeypatch, args)
    before = {name: p.detach().clone() for name, p in [*actor.named_parameters(), *critic.named_parameters()]}
    actions, original = [], a3c.env_actions

    def recording_env_actions(action, action_space):  # the actions the worker sampled, as the env gets them
        actions.append(action)
        return original(action, action_space)

    monkeypatch.setattr(a3c, "env_actions", recording_env_actions)
    run_worker(args, actor, critic, lr)
    assert len(actions) == n
    gradients = hand_gradients(before, actions, n, terminated, args)
    for name, p in [*actor.named_parameters(), *critic.named_parameters()]:
        assert torch.allclose(p, before[name] - lr * gradients[name], rtol=1e-4, atol=1e-6), name
        assert not torch.equal(p, before[name]), name


def test_every_rollout_starts_from_the_global_parameters_and_steps_them_with_its_gradients(monkeypatch):
    """Several rollouts of worker() on the real networks, a spy on compute_gradients: before each one the
    local networks equal the global ones (A3C-2 at every rollout, not only the first), and the global ones then
    move by −lr times exactly the local gradients of that rollout (A3C-6), not those of the one before. The
    gradient, a sum over the rollout, is clipped at max_grad_norm · t_max (a full rollout's mean at
    max_grad_norm)."""
    args, lr = worker_args("CountTerminatedDiscrete-v0", num_steps=2, total_timesteps=12), 0.1
    torch.manual_seed(123)  # global networks unlike the worker's own initialization (its seed is args.seed)
    actor, critic = global_networks(args)
    calls, clip_thresholds, original = [], [], a3c.compute_gradients

    def spy(local_actor, local_critic, batch, ent_coef, vf_coef, max_grad_norm):
        local, global_before = vector(local_actor, local_critic), vector(actor, critic)
        losses = original(local_actor, local_critic, batch, ent_coef, vf_coef, max_grad_norm)
        grads = torch.cat([p.grad.flatten() for p in [*local_actor.parameters(), *local_critic.parameters()]])
        calls.append((local, global_before, grads.clone()))
        clip_thresholds.append(max_grad_norm)
        return losses

    monkeypatch.setattr(a3c, "compute_gradients", spy)
    run_worker(args, actor, critic, lr)
    assert len(calls) == 8  # episodes of 3 steps, rollouts of 2: 2, 1, 2, 1, ...
    assert clip_thresholds == [args.max_grad_norm * args.num_steps] * 8
    global_after = [global_before for _, global_before, _ in calls[1:]] + [vector(actor, critic)]
    for (local, global_before, grads), after in zip(calls, global_after):
        assert torch.equal(local, global_before), "the local networks did not copy the global ones"
        assert torch.allclose(after, global_before - lr * grads, atol=1e-6)
        assert grads.abs().sum() > 0


def test_worker_passes_args_gamma_to_the_returns_and_the_reward_scaler(monkeypatch):
    """Spies on rollout_returns and RewardScaler: the worker gives both the γ and λ of Args (γ → 0 at either
    call site fails here), and tells rollout_returns whether each rollout ended by termination."""
    returns_calls, scalers, original_returns, original_scaler = [], [], a3c.rollout_returns, a3c.RewardScaler

    def spy_returns(rewards, values, last_value, terminated, gamma, gae_lambda):
        returns_calls.append((len(rewards), terminated, gamma, gae_lambda))
        return original_returns(rewards, values, last_value, terminated, gamma, gae_lambda)

    def spy_scaler(gamma, norm_reward):
        scalers.append(gamma)
        return original_scaler(gamma, norm_reward)

    monkeypatch.setattr(a3c, "rollout_returns", spy_returns)
    monkeypatch.setattr(a3c, "RewardScaler", spy_scaler)
    args = worker_args("CountTerminatedDiscrete-v0", num_steps=2, total_timesteps=12, norm_reward=True,
                       gae_lambda=0.9)
    run_worker(args, *global_networks(args), lr=0.01)
    assert scalers == [0.77]
    assert returns_calls == [(2, False, 0.77, 0.9), (1, True, 0.77, 0.9)] * 4


def reference_scaled_rewards(rewards, dones, gamma: float) -> list:
    """Reward scaling written out: R ← γR + r over the episode (back to 0 after its end), and each r divided
    by the standard deviation of every R seen so far, next to a prior of weight 1e-4 with mean 0 and
    variance 1 (so E[R²] = (1e-4 + ΣR²) / (1e-4 + n)), then clipped to [−10, 10]."""
    R, seen, scaled = 0.0, [], []
    for r, done in zip(rewards, dones):
        R = gamma * R + r
        seen.append(R)
        weight = 1e-4 + len(seen)
        mean = sum(seen) / weight
        var = (1e-4 + sum(x * x for x in seen)) / weight - mean ** 2
        scaled.append(float(np.clip(r / np.sqrt(var + 1e-8), -10, 10)))
        if done:
            R = 0.0
    return scaled


def record_rollout_returns(patch) -> list:
    """A spy on rollout_returns (A3C-4): per rollout, what the worker hands it (copies: the rollout's arrays are
    overwritten by the next rollout)."""
    calls, original = [], a3c.rollout_returns

    def spy(rewards, values, last_value, terminated, gamma, gae_lambda):
        calls.append(dict(n=len(rewards), terminated=terminated, rewards=rewards.tolist(), values=values.tolist(),
                          last_value=last_value))
        return original(rewards, values, last_value, terminated, gamma, gae_lambda)

    patch.setattr(a3c, "rollout_returns", spy)
    return calls


def test_reward_scaler_divides_by_the_std_of_the_discounted_return_restarted_at_each_episodes_end():
    """CartPole-v1's row depends on it (unscaled rewards solved 18 of 20 seeds, scaled 20 of 20): the
    running discounted return restarts after an episode's end, and a reward far above the return's spread
    is clipped at 10 (the first: its R alone, beside the prior of weight 1e-4, is about 100 stds from 0)."""
    rewards = [1.0, -2.0, 3.0, 0.5, 4.0, 1.0] + [0.0] * 20 + [5.0]
    dones = [False, True, False, False, True, False] + [False] * 20 + [True]
    scaler = a3c.RewardScaler(0.9, norm_reward=True)
    scaled = [scaler.reward(r, d) for r, d in zip(rewards, dones)]
    assert scaled == pytest.approx(reference_scaled_rewards(rewards, dones, 0.9), rel=1e-9)
    assert scaled[0] == 10.0 and max(scaled[1:]) < 10.0
    plain = a3c.RewardScaler(0.9, norm_reward=False)
    assert [plain.reward(r, d) for r, d in zip(rewards, dones)] == rewards


def test_worker_learns_from_the_scaled_rewards_with_norm_reward():
    """With norm_reward the rollouts' returns are computed from the scaled rewards (CountEnv pays 1 a step
    and terminates after 3), in order; without it from the env's own."""
    for norm_reward in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            rollouts = record_rollout_returns(patch)
            args = worker_args("CountTerminatedDiscrete-v0", num_steps=2, total_timesteps=12, norm_reward=norm_reward)
            run_worker(args, *global_networks(args), lr=0.01)
        expected = reference_scaled_rewards([1.0] * 12, [t % 3 == 2 for t in range(12)], 0.77) if norm_reward \
            else [1.0] * 12
        assert [r for rollout in rollouts for r in rollout["rewards"]] == pytest.approx(expected, rel=1e-6)


def test_a_time_limit_ends_the_rollout_the_episode_and_the_discounted_return_and_only_the_first_reset_is_seeded(
        monkeypatch):
    """CountTruncated: every episode is cut after TIME_LIMIT = 5 steps; t_max 8 is longer. Each rollout stops at
    the cut (5, 5, 5, then the last step of the budget), never terminated; the reward scaling restarts its
    discounted return there too; the log gets the env's own rewards, one episode per cut; and the env is
    seeded once, at the worker's first reset (later episodes must start from new states)."""
    logged = []

    class LoggingWorkers(InProcessWorkers):
        def rewards(self, reward: float, done: bool):
            logged.append((reward, done))
            super().rewards(reward, done)

    rollouts = record_rollout_returns(monkeypatch)
    resets = record_training_resets(a3c, monkeypatch)
    args = worker_args("CountTruncatedDiscrete-v0", num_steps=8, total_timesteps=16, norm_reward=True)
    actor, critic = global_networks(args)
    workers = LoggingWorkers()
    a3c.worker(0, args, actor, critic, torch.optim.SGD([*actor.parameters(), *critic.parameters()], lr=0.01),
               workers)
    assert [(rollout["n"], rollout["terminated"]) for rollout in rollouts] == [(5, False)] * 3 + [(1, False)]
    ends = [t % TIME_LIMIT == TIME_LIMIT - 1 for t in range(16)]
    scaled = [r for rollout in rollouts for r in rollout["rewards"]]
    assert scaled == pytest.approx(reference_scaled_rewards([1.0] * 16, ends, 0.77), rel=1e-6)
    assert logged == [(1.0, end) for end in ends] and workers.episodes == 3
    assert resets == [args.seed, None, None, None]


def test_a_workers_local_networks_stay_fixed_while_the_global_ones_move_during_its_rollout(monkeypatch):
    """A3C-2: the worker acts, values its states and bootstraps with its own copy, taken before the rollout,
    while other workers change the global networks. Two runs of one rollout from the same seed, one with the
    global parameters pushed after every step (as another worker's updates would): the same actions, values,
    bootstrap value and gradient. Fails when the worker samples from the global actor, bootstraps from the
    global critic, or its local networks share the global ones' memory."""

    def one_rollout(push: bool):
        torch.manual_seed(7)
        args = worker_args("CountTruncatedDiscrete-v0", num_steps=4, total_timesteps=4, hidden_size=8)
        actor, critic = global_networks(args)
        seen = {}

        def spy_gradients(local_actor, local_critic, batch, *rest, original=a3c.compute_gradients):
            losses = original(local_actor, local_critic, batch, *rest)
            seen["actions"] = batch[1].tolist()
            seen["gradient"] = torch.cat([p.grad.flatten() for p in [*local_actor.parameters(),
                                                                        *local_critic.parameters()]])
            return losses

        pushes = torch.Generator().manual_seed(0)  # not torch's global generator, which the worker samples from

        class PushingWorkers(InProcessWorkers):
            def claim_step(self, total_timesteps: int) -> bool:
                claimed = super().claim_step(total_timesteps)
                if push and self.global_step.value > 1:  # after the first step: another worker's update
                    with torch.no_grad():
                        for p in [*actor.parameters(), *critic.parameters()]:
                            p.add_(torch.randn(p.shape, generator=pushes))
                return claimed

        with pytest.MonkeyPatch.context() as patch:
            rollouts = record_rollout_returns(patch)
            patch.setattr(a3c, "compute_gradients", spy_gradients)
            optimizer = torch.optim.SGD([*actor.parameters(), *critic.parameters()], lr=0.0)
            a3c.worker(0, args, actor, critic, optimizer, PushingWorkers())
        (rollout,) = rollouts
        return dict(seen, values=rollout["values"], last_value=rollout["last_value"])

    still, pushed = one_rollout(push=False), one_rollout(push=True)
    assert len(still["actions"]) == 4
    assert pushed["actions"] == still["actions"]
    assert pushed["values"] == still["values"] and pushed["last_value"] == still["last_value"]
    assert torch.equal(pushed["gradient"], still["gradient"])


def test_the_evaluation_plays_a_copy_of_the_global_actor_not_the_live_one(monkeypatch, tmp_path):
    """The greedy curve and the final test play eval_actor, a copy of the global actor taken before each test
    (on the evaluation's device): scrambling the global actor afterwards must not change the policy's actions.
    Reading the live global actor would test a policy that the workers change under it (and, on a GPU, fail: the
    global networks stay on the CPU)."""
    made, tested = [], []
    original_make, original_evaluate = a3c.make_networks, a3c.Run.evaluate

    def recording_make(env, args):
        networks = original_make(env, args)
        made.append(networks[0])
        return networks

    def checking_evaluate(self, global_step, policy):
        obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
        before = policy(obs)
        with torch.no_grad():
            for p in made[0].parameters():  # the global actor: the first one train() makes
                p.mul_(-3.0)
        tested.append(np.array_equal(policy(obs), before))
        return original_evaluate(self, global_step, policy)

    monkeypatch.setattr(a3c, "make_networks", recording_make)
    monkeypatch.setattr(a3c.Run, "evaluate", checking_evaluate)
    a3c.train(a3c.Args(total_timesteps=300, num_workers=1, eval_episodes=1, eval_every=0, run_dir=str(tmp_path),
                       cuda=False))
    assert tested == [True]


def test_cartpole_row_scales_the_rewards():
    """The CartPole-v1 row as README and RESULTS report it (unscaled rewards solved 18 of 20 seeds, scaled 20 of
    20): written out here, so that a change to the row is a change to this test too."""
    env = gym.make("CartPole-v1")
    args = a3c.with_env_defaults(a3c.Args(), env, quiet=set(vars(a3c.Args())))
    env.close()
    assert (args.total_timesteps, args.num_steps, args.gamma, args.gae_lambda, args.ent_coef, args.norm_reward,
            args.learning_rate, args.num_workers, args.hidden_size) == (300_000, 50, 0.99, 1.0, 0.0, True, 7e-4, 2,
                                                                        64)


# ---------------------------------------------------------------------------------------------------
# A3C-1 and A3C-6: a shared optimizer stepped by another process changes the parent's numbers
# ---------------------------------------------------------------------------------------------------
def step_from_child(net, optimizer):
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()


def test_shared_adam_steps_the_shared_parameters_from_another_process():
    net = torch.nn.Linear(3, 2)
    net.share_memory()
    optimizer = a3c.SharedAdam(net.parameters(), lr=0.1)
    state = optimizer.state[net.weight]
    assert all(tensor.is_shared() for tensor in state.values())
    before = net.weight.detach().clone()
    child = mp.get_context(a3c.START_METHOD).Process(target=step_from_child, args=(net, optimizer))
    child.start()
    child.join(timeout=600)
    assert child.exitcode == 0
    # Adam's first step moves every weight by lr against the sign of its gradient, in the parent's memory
    assert torch.allclose(net.weight, before - 0.1, atol=1e-4)
    assert state["step"].item() == 1 and torch.allclose(state["exp_avg"], 0.1 * torch.ones(2, 3))


# ---------------------------------------------------------------------------------------------------
# Processes: two workers, one log; a crash; Ctrl-C; nothing left behind
# ---------------------------------------------------------------------------------------------------
def children_of(pid):
    """Processes whose parent is pid, read from /proc (psutil is not available), except Python's
    multiprocessing resource tracker: one helper per interpreter that 'spawn' starts once, which lives as
    long as the interpreter (it is not a worker, and it exits with its parent); and except the command
    lines that the session's background checks run (conftest.cli_results: `python <script>.py ...`)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
                ppid = int(ppid)
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        background_check = re.match(r"\S*python\S* \S+\.py( |$)", cmdline)
        ended = state == "Z"  # a background check that has exited and not yet been reaped (no command line)
        if ppid == pid and "resource_tracker" not in cmdline and not background_check and not ended:
            found.append((int(entry), cmdline))
    return found


def processes_with_marker(marker):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
            continue
    return found


def test_two_workers_write_one_log_and_leave_no_process(tmp_path):
    args = a3c.Args(total_timesteps=1_500, num_workers=2, num_steps=5, log_frequency=200, eval_episodes=1,
                    run_dir=str(tmp_path), cuda=False)
    summary = a3c.train(args)
    assert summary["global_step"] == 1_500  # the shared counter stopped both workers exactly at the budget
    episodes = read_csv(os.path.join(summary["run_dir"], "episodes.csv"))
    metrics = read_csv(os.path.join(summary["run_dir"], "metrics.csv"))
    # Each worker's last metrics row counts the episodes it finished; the main process logged them all
    last_count = {row["worker"]: int(row["worker_episodes"]) for row in metrics}
    assert set(last_count) == {"0", "1"}
    assert all(count > 0 for count in last_count.values())
    assert sum(last_count.values()) == len(episodes)
    assert sum(int(row["episodic_length"]) for row in episodes) <= 1_500
    # CartPole-v1's row scales the rewards the workers learn from; the log keeps the env's own (1 a step)
    assert all(float(row["episodic_return"]) == int(row["episodic_length"]) for row in episodes)
    saved = torch.load(os.path.join(summary["run_dir"], "model.pt"), weights_only=False)
    assert {"actor", "critic"} <= set(saved) and saved["args"]["norm_reward"] is True
    assert not mp.active_children()
    assert children_of(os.getpid()) == []


def test_a_crashing_worker_stops_the_run_with_its_error(tmp_path):
    args = a3c.Args(env_id="RaisingCartPole-v0", total_timesteps=100_000, num_workers=2, num_steps=5,
                    eval_episodes=1, run_dir=str(tmp_path), cuda=False)
    start = time.time()
    with pytest.raises(RuntimeError, match="the env broke on purpose"):
        a3c.train(args)
    assert time.time() - start < 120
    assert not mp.active_children()
    assert children_of(os.getpid()) == []


def test_a_crashing_worker_makes_the_script_exit_nonzero(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, ROOT]))
    script = os.path.join(ROOT, "a3c.py")
    # python -c: import this file (which registers the env), then run a3c.py as the command line would
    run_script = ("import runpy, sys, test_a3c; sys.argv = sys.argv[1:]; "
                  "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", run_script, script, "--env-id", "RaisingCartPole-v0",
                             "--num-workers", "2", "--no-cuda"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode != 0
    assert "the env broke on purpose" in result.stderr


def test_ctrl_c_stops_every_worker(tmp_path):
    marker = f"A3C_TEST_{uuid.uuid4().hex}"
    command = [sys.executable, os.path.join(ROOT, "a3c.py"), "--total-timesteps", "100000000", "--num-workers", "2",
               "--no-cuda"]

    def all_running():
        assert len(processes_with_marker(marker)) >= 3, "the main process and its 2 workers should be running"

    returncode, _, err, _ = interrupt_once_logging(command, cwd=tmp_path, env=dict(os.environ, **{marker: "1"}),
                                                   timeout=600, before_interrupt=all_running)
    assert returncode == 130, err
    assert "Traceback" not in err
    deadline = time.time() + 10  # the resource tracker notices its parent's exit and leaves
    while processes_with_marker(marker) and time.time() < deadline:
        time.sleep(0.2)
    assert processes_with_marker(marker) == [], "a worker outlived the interrupted run"
