"""A3C: asynchronous advantage actor-critic, for Discrete and Box actions.

Paper: Mnih et al., "Asynchronous Methods for Deep Reinforcement Learning", ICML 2016 (Algorithm
S3, the advantage actor-critic of the supplementary material). Lecture 7, A3C slides.

The lecture's steps, as labelled in the code below:
  A3C-1  a global actor π_θ and critic V_φ and one optimizer, in shared memory; num_workers
         workers, each with its own environment, then repeat A3C-2 to A3C-6 until the shared step
         budget is spent. Workers in different states decorrelate the updates, as the replay buffer
         does for DQN
  A3C-2  a worker copies the global θ, φ into its local networks, which stay fixed during its
         rollout while the other workers keep changing the global ones
  A3C-3  it rolls out up to t_max = num_steps steps, or to the end of its episode
  A3C-4  returns: R = 0 if the episode terminated, else R = V(s_t) of the last state reached (a time
         limit or the rollout's end); then backwards R ← r_i + γR, the n-step returns (GAE with
         λ = 1; a smaller gae_lambda mixes in shorter returns)
  A3C-5  gradients of the actor's loss −log π(a_i|s_i)(R − V(s_i)) − β·entropy and of the critic's
         (R − V(s_i))², summed over the rollout's steps, on the local networks; the advantage
         R − V(s_i) is a constant for the actor
  A3C-6  the shared optimizer applies the local gradients to the global parameters, without a lock

The entropy bonus β = 0.01 is the paper's, kept on Pendulum-v1. On CartPole-v1 β is 0: once the
policy is good, the advantages of most rollouts are nearly 0 (no pole falls in them), the bonus
then outweighs them and keeps the policy random enough that its training returns hover near 300
(README: how the defaults were chosen).

The workers are operating-system processes: the global networks and the optimizer's state live in
shared memory, so every worker reads and writes the same numbers ("Hogwild!", Recht et al. 2011).
A3C is not bit-reproducible: the seed fixes each worker's environment and sampling, but not the
order in which the workers' updates interleave, which the operating system's scheduling decides:
two runs with the same seed give different returns.

Reading order: the settings (Args), the networks, the returns and the gradients, the shared
optimizer, then worker(), the loop each worker process runs (A3C-2 to A3C-6), and train(), which
builds the global networks (A3C-1), starts the workers and evaluates the result. Everything under
"Bookkeeping" at the bottom (the worker processes and their messages, the run folder, logs, errors,
evaluation, Ctrl-C) can be skipped on a first reading.

Run:
  python a3c.py                              # CartPole-v1, 300k steps over all workers
  python a3c.py --env-id Pendulum-v1         # 300k steps, its own defaults from ENV_DEFAULTS
  python a3c.py --env-id HalfCheetah-v5      # 1M steps, the MuJoCo row of ENV_DEFAULTS
                                             # (Hopper, Walker2d, Ant, Swimmer, Humanoid too)
  python a3c.py --help
"""

import contextlib
import csv
import importlib
import json
import math
import os
import pathlib
import random
import signal
import sys
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, replace

import gymnasium as gym
import numpy as np
import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
import tyro

# Settings whose good value depends on the env. A setting left at None on the command line takes its
# value from this table: the env's own row, or the MuJoCo row for the tasks of SHARED_ROWS (any
# version: Hopper-v5, Hopper-v4, ...), or else, with a warning, the row of the tuned env with the
# same kind of action space (TUNED_ON). The resolved values are printed at the start and written to
# args.json.
ENV_DEFAULTS = {
    # λ = 1 the paper's; γ, β = 0 and α = 7e-4 RL Zoo's A2C; t_max 50 and scaled rewards ours
    # (README: how the defaults were chosen)
    "CartPole-v1": dict(total_timesteps=300_000, num_steps=50, gamma=0.99, gae_lambda=1.0,
                        ent_coef=0.0, norm_reward=True, learning_rate=7e-4),
    # γ, λ and scaled rewards RL Zoo's A2C; β = 0.01 the paper's
    "Pendulum-v1": dict(total_timesteps=300_000, num_steps=8, gamma=0.9, gae_lambda=0.9,
                        ent_coef=0.01, norm_reward=True, learning_rate=1e-3),
    # Not tuned here, and no published A3C row for MuJoCo exists (none in the RL Zoo or CleanRL; the
    # paper's supplement was not read): RL Zoo's a2c.yml MuJoCo defaults (with SB3's A2C defaults)
    # for each worker: t_max 5, α 7e-4, γ 0.99, λ 1, no entropy bonus, rewards scaled, 1M steps
    # over all workers. The Zoo also normalizes observations: a3c.py has no such setting and
    # none comes near, so it does without. The learning rate is annealed, as on the other rows
    "MuJoCo": dict(total_timesteps=1_000_000, num_steps=5, gamma=0.99, gae_lambda=1.0,
                   ent_coef=0.0, norm_reward=True, learning_rate=7e-4),
}
SHARED_ROWS = {"MuJoCo": ("Hopper", "HalfCheetah", "Walker2d", "Ant", "Swimmer", "Humanoid")}
TUNED_ON = {gym.spaces.Discrete: "CartPole-v1", gym.spaces.Box: "Pendulum-v1"}


@dataclass
class Args:
    env_id: str = "CartPole-v1"
    """Gymnasium environment id (Discrete or Box actions, flat Box observations)"""
    seed: int = 1
    """seed of random, numpy, torch and the environment (worker i adds i)"""
    total_timesteps: int = None
    """environment steps to train for, over all workers together (per-env default: ENV_DEFAULTS)"""
    cuda: bool = True
    """use CUDA when it is available (for the final evaluation: the workers train on the CPU)"""
    torch_deterministic: bool = True
    """use deterministic torch kernels"""
    torch_threads: int = 1
    """CPU threads for torch (one is fastest for these small networks)"""
    eval_episodes: int | None = None
    """episodes of the final deterministic evaluation, on the env's fixed test set (default: the
    env's own number, or its namespace's, TEST_EPISODES below; 10 for other envs)"""
    eval_every: int | None = None
    """environment steps between two evaluations of the deterministic policy during training, into
    eval_curve.csv (default: a twentieth of the run; 0: none)"""
    run_dir: str = "runs"
    """folder under which each run makes its own folder"""
    save_model: bool = True
    """write the trained weights to model.pt"""
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of the experiment, in the run folder's name {env_id}__{exp_name}__{seed}__{time}"""

    learning_rate: float = None
    """Adam step size α of the shared optimizer, decaying linearly to 0 when anneal_lr (per-env
    default: ENV_DEFAULTS)"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over training"""
    num_workers: int = 2  # fixed, not the machine's CPU count: the defaults were chosen with 2
    """worker processes, each with its own environment (A3C-1); more of them change the algorithm
    (more updates from stale copies of the parameters), not only its speed"""
    num_steps: int = None
    """t_max: steps of a worker's rollout before its update, fewer when its episode ends (per-env
    default: ENV_DEFAULTS)"""
    gamma: float = None
    """discount factor γ (per-env default: ENV_DEFAULTS)"""
    gae_lambda: float = None
    """λ of GAE(λ): 1 gives A3C's n-step returns R, 0 the one-step TD advantage (per-env default:
    ENV_DEFAULTS)"""
    hidden_size: int = 64
    """units in each of the two hidden layers of the actor and of the critic"""
    log_std_init: float = 0.0
    """initial log standard deviation of the Gaussian policy (Box actions)"""
    bound_mean: bool = True
    """Box actions: keep the Gaussian's mean inside the action bounds (GaussianActor.bound_mean)"""
    norm_reward: bool = None
    """divide rewards by the running std of the discounted return, per worker (per-env default:
    ENV_DEFAULTS)"""
    ent_coef: float = None
    """β, weight of the entropy bonus (per-env default: ENV_DEFAULTS)"""
    vf_coef: float = 0.5
    """weight of the critic's loss"""
    max_grad_norm: float = 0.5
    """global gradient-norm clipping threshold per step: a rollout's gradient, a sum over its steps,
    is clipped to max_grad_norm · num_steps (a full rollout's mean gradient to max_grad_norm)"""
    log_frequency: int = 2_000
    """environment steps of a worker between two of its rows of metrics.csv"""
    settings_row: tyro.conf.Suppress[dict | None] = None
    """not a setting: the row of ENV_DEFAULTS that the per-env settings came from, as args.json
    records it: {"row", "tuned_on", "borrowed"} (with_env_defaults fills it in)"""


# --------------------------------------------------------------------------------------------------
# The actor, the critic and their math
# --------------------------------------------------------------------------------------------------
def mlp(in_dim: int, out_dim: int, hidden_size: int, out_gain: float) -> nn.Sequential:
    """Two tanh hidden layers, orthogonal weights and zero biases (the lecture's "orthogonal
    initialization and layer scaling" trick); the small out_gain of the policy head makes the first
    policy nearly uniform."""
    layers = [nn.Linear(in_dim, hidden_size), nn.Tanh(), nn.Linear(hidden_size, hidden_size),
              nn.Tanh(), nn.Linear(hidden_size, out_dim)]
    for layer, gain in zip(layers[::2], (np.sqrt(2), np.sqrt(2), out_gain)):
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def categorical_log_prob(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log π(a|s) = logits_a − log Σ_b exp(logits_b)."""
    return logits.log_softmax(-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum(-1)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor,
                      actions: torch.Tensor) -> torch.Tensor:
    """log N(a; μ, diag σ²) = Σ_i [−(a_i − μ_i)² / (2σ_i²) − log σ_i − ½ log 2π]."""
    return (-0.5 * ((actions - mean) / log_std.exp()) ** 2 - log_std
            - 0.5 * np.log(2 * np.pi)).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """H = Σ_i (½ log 2πe + log σ_i), the same in every state."""
    return (0.5 * np.log(2 * np.pi * np.e) + log_std).sum(-1)


class CategoricalActor(nn.Module):
    """π_θ(a|s) = softmax(logits_θ(s)) over Discrete actions."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_size: int, log_std_init: float):
        super().__init__()
        self.logits = mlp(obs_dim, n_actions, hidden_size, out_gain=0.01)

    def sample(self, obs: torch.Tensor):
        logits = self.logits(obs)
        actions = torch.multinomial(logits.softmax(-1), 1).squeeze(-1)
        return actions, categorical_log_prob(logits, actions)

    def log_prob_entropy(self, obs: torch.Tensor, actions: torch.Tensor):
        logits = self.logits(obs)
        return categorical_log_prob(logits, actions), categorical_entropy(logits)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic policy of the evaluation: the most probable action."""
        return self.logits(obs).argmax(-1)


class GaussianActor(nn.Module):
    """π_θ(a|s) = N(μ_θ(s), diag σ²) for Box actions, with a state-independent learned log σ.

    The environment gets the sample clipped into the action bounds, while the log-probability (and
    so the gradient of A3C-5) is that of the unclipped sample a ~ N(μ, σ²), the one the policy
    really drew. This is the usual choice (CleanRL, SB3, the PPO paper): the Gaussian's
    log-probability stays exact and cheap, and the clipping is part of the environment. Squashing
    the sample with tanh instead would need a change-of-variables term in the log-probability (as
    sac.py does); bound_mean squashes only the mean μ, which needs none."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_size: int, log_std_init: float):
        super().__init__()
        self.mean = mlp(obs_dim, action_dim, hidden_size, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        self.register_buffer("center", None)  # set by bound_mean
        self.register_buffer("half_width", None)

    def bound_mean(self, low: np.ndarray, high: np.ndarray):
        """μ_θ(s) = c + h · tanh(net(s)) from now on, with c and h the center and half-width of the
        finite action bounds [low, high]. Without this, Pendulum's mean often drifts far outside
        [-2, 2] (we measured |μ| ≈ 10 in 99% of the states on a failed seed): every sample is then
        clipped to the same bound, the advantages carry no information about the action, and
        learning stalls. Only the mean is squashed; the sample a ~ N(μ, σ²) and its exact Gaussian
        log-probability stay as above."""
        if np.all(np.isfinite(low)) and np.all(np.isfinite(high)):
            # buffers, not parameters: saved with the weights in model.pt, but never trained
            float32 = dict(dtype=torch.float32, device=self.log_std.device)
            self.register_buffer("center", torch.as_tensor((high + low) / 2, **float32))
            self.register_buffer("half_width", torch.as_tensor((high - low) / 2, **float32))

    def mu(self, obs: torch.Tensor) -> torch.Tensor:
        """μ_θ(s): the output of the mean network, squashed into the bounds after bound_mean."""
        out = self.mean(obs)
        return out if self.center is None else self.center + self.half_width * torch.tanh(out)

    def sample(self, obs: torch.Tensor):
        mean = self.mu(obs)
        actions = mean + self.log_std.exp() * torch.randn_like(mean)
        return actions, gaussian_log_prob(mean, self.log_std, actions)

    def log_prob_entropy(self, obs: torch.Tensor, actions: torch.Tensor):
        mean = self.mu(obs)
        return (gaussian_log_prob(mean, self.log_std, actions),
                gaussian_entropy(self.log_std).expand(len(mean)))

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic policy of the evaluation: the mean action."""
        return self.mu(obs)


class Critic(nn.Module):
    """V_φ(s)."""

    def __init__(self, obs_dim: int, hidden_size: int):
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden_size, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def make_networks(env: gym.Env, args: Args):
    """A3C-1: the actor π_θ (softmax or Gaussian) and the critic V_φ, two networks as on the
    slides."""
    obs_dim = env.observation_space.shape[0]
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    actor_class = CategoricalActor if discrete else GaussianActor
    actor = actor_class(obs_dim, int(env.action_space.n) if discrete else env.action_space.shape[0],
                        args.hidden_size, args.log_std_init)
    if not discrete and args.bound_mean:
        actor.bound_mean(env.action_space.low, env.action_space.high)
    return actor, Critic(obs_dim, args.hidden_size)


def env_actions(actions: np.ndarray, action_space: gym.Space) -> np.ndarray:
    """What the env gets: Gaussian samples clipped into the Box bounds (see GaussianActor)."""
    if isinstance(action_space, gym.spaces.Box):
        return np.clip(actions, action_space.low, action_space.high)
    return actions


def compute_gae(rewards, values, next_values, terminated, dones, gamma: float, gae_lambda: float):
    """A3C-4: GAE(λ) advantages and the critic's targets.

    The arrays have shape (num_steps, num_envs). next_values[t] is V(s_{t+1}) of the step's *real*
    successor: V(final observation) when a time limit cut the episode at step t. Two masks, because
    the two ends differ:
      δ_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t)
      Â_t = δ_t + γλ (1 − done_t) Â_{t+1}
    Only a termination stops the bootstrap in δ_t; any end (done = terminated or truncated) stops
    the sum in Â_t, since step t+1 then belongs to another episode. The critic's target
    R̂_t = Â_t + V(s_t) is the λ-return."""
    advantages = np.zeros_like(rewards)
    next_advantage = np.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * (1.0 - terminated[t]) * next_values[t] - values[t]
        next_advantage = delta + gamma * gae_lambda * (1.0 - dones[t]) * next_advantage
        advantages[t] = next_advantage
    return advantages, advantages + values


def rollout_returns(rewards, values, last_value: float, terminated: bool, gamma: float,
                    gae_lambda: float):
    """A3C-4 for one worker's rollout of n steps (arrays of shape (n,)), which ends at a
    termination, at a time limit or after t_max steps: R = 0 if the episode terminated, else
    R = V(s_n) of the last state reached; then R ← r_i + γR backwards. This is compute_gae on a
    single env with λ = 1 (the advantage is R_i − V(s_i)); a smaller λ mixes in shorter returns.
    Only termination stops the bootstrap."""
    next_values = np.append(values[1:], last_value)[:, None]
    ended = np.zeros((len(rewards), 1), dtype=np.float32)
    ended[-1] = 1.0  # nothing of this rollout follows its last step
    advantages, returns = compute_gae(rewards[:, None], values[:, None], next_values,
                                      ended * terminated, ended, gamma, gae_lambda)
    return advantages[:, 0], returns[:, 0]


def compute_gradients(local_actor: nn.Module, local_critic: nn.Module, batch, ent_coef: float,
                      vf_coef: float, max_grad_norm: float):
    """A3C-5 on one rollout of n steps, batch = (observations, actions, advantages R_i − V(s_i),
    returns R_i): the gradients of the actor's loss Σ_i [−log π(a_i|s_i)(R_i − V(s_i)) −
    β·H(π(·|s_i))] and of the critic's Σ_i (R_i − V(s_i))², left in the local networks' .grad,
    their global norm clipped to max_grad_norm.
    The losses are sums over the rollout's steps, as Algorithm S3 accumulates the gradients step by
    step: a rollout cut short by its episode's end weighs less, each of its steps as much as a step
    of a full rollout (a mean would give each step of a 1-step rollout t_max times the weight).
    Returns the two losses and the mean entropy."""
    obs, actions, advantages, returns = batch
    parameters = list(local_actor.parameters()) + list(local_critic.parameters())
    # Easy to overlook: the advantages and the returns R_i are constants, computed from values
    # taken without gradient at A3C-3/4, so no gradient flows through them
    new_log_probs, entropy = local_actor.log_prob_entropy(obs, actions)
    policy_loss = -(new_log_probs * advantages).sum()
    value_loss = F.mse_loss(local_critic(obs), returns, reduction="sum")
    loss = policy_loss - ent_coef * entropy.sum() + vf_coef * value_loss
    for p in parameters:
        p.grad = None
    loss.backward()
    nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    return policy_loss, value_loss, entropy.mean()


# --------------------------------------------------------------------------------------------------
# A3C-1: the optimizer shared by the workers
# --------------------------------------------------------------------------------------------------
class SharedAdam(torch.optim.Adam):
    """Adam whose state (the step count and the two moment estimates) is created at once and moved
    to shared memory, like the global networks. Every worker then updates the same moments: the
    statistics are shared across threads, as the paper's shared RMSProp (its Section 4 found this
    more robust than one optimizer per worker). torch.optim.Adam creates its state lazily on the
    first step(), which would give each process a private copy; here it already exists when step()
    first looks, so step() updates it in place."""

    def __init__(self, parameters, lr: float):
        super().__init__(parameters, lr=lr, eps=1e-5, fused=True)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = {"step": torch.zeros((), dtype=torch.float32).share_memory_(),
                                 "exp_avg": torch.zeros_like(p).share_memory_(),
                                 "exp_avg_sq": torch.zeros_like(p).share_memory_()}


# --------------------------------------------------------------------------------------------------
# Reward scaling (the lecture's "observation and reward scaling" trick), per worker
# --------------------------------------------------------------------------------------------------
class RunningMeanStd:
    """Mean and variance of all the arrays seen so far, merged a batch at a time (Chan et al.)."""

    def __init__(self, shape=()):
        self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 1e-4

    def update(self, batch: np.ndarray):
        batch_mean, batch_var, n = batch.mean(0), batch.var(0), len(batch)
        delta, total = batch_mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + batch_var * n
                    + delta ** 2 * self.count * n / total) / total
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": torch.as_tensor(self.mean), "var": torch.as_tensor(self.var),
                "count": float(self.count)}

    def load_state_dict(self, state: dict):
        self.mean, self.var = state["mean"].numpy(), state["var"].numpy()
        self.count = state["count"]


class RewardScaler:
    """Rewards → r / std(R), R ← γR + r the running discounted return of the worker's env (as
    a2c.py's Normalizer). Scaling keeps the critic's targets near 1 whatever the env's reward scale.
    Each worker keeps its own statistics: they only scale the critic's targets, and all workers'
    estimates of the same std agree after a few thousand steps. (Observation normalization, which
    a2c.py also offers, would change the networks' inputs: the workers would have to share one set
    of statistics and the evaluation use it; we leave it out, the default envs learn without it.)"""

    def __init__(self, gamma: float, norm_reward: bool):
        self.norm_reward, self.gamma = norm_reward, gamma
        self.return_rms = RunningMeanStd()
        self.discounted_return = np.zeros(1)

    def reward(self, reward: float, done: bool) -> float:
        if not self.norm_reward:
            return reward
        self.discounted_return = self.discounted_return * self.gamma + reward
        self.return_rms.update(self.discounted_return)
        if done:
            self.discounted_return[:] = 0.0
        return float(np.clip(reward / np.sqrt(self.return_rms.var + 1e-8), -10, 10))


# --------------------------------------------------------------------------------------------------
# A worker: its own environment and local networks; the global networks and the optimizer are shared
# --------------------------------------------------------------------------------------------------
class Rollout:
    """A worker's rollout storage, preallocated: one row per step, t_max rows."""

    def __init__(self, num_steps: int, env: gym.Env):
        discrete = isinstance(env.action_space, gym.spaces.Discrete)
        self.obs = np.zeros((num_steps, env.observation_space.shape[0]), dtype=np.float32)
        self.actions = np.zeros((num_steps,) + (() if discrete else env.action_space.shape),
                                dtype=np.int64 if discrete else np.float32)
        self.rewards = np.zeros(num_steps, dtype=np.float32)
        self.values = np.zeros(num_steps, dtype=np.float32)


def worker(rank: int, args: Args, actor: nn.Module, critic: nn.Module, optimizer: SharedAdam,
           workers):
    """What worker process `rank` runs, A3C-2 to A3C-6, until the shared step budget is spent or
    the main process stops the run. `workers` (under Bookkeeping) counts the steps and carries the
    episodes and metrics to the main process, which logs them."""
    seed = args.seed + rank
    seed_everything(seed, args)
    # One plain environment (no vector env, so no autoreset): when an episode ends, next_obs is its
    # real final observation, and the worker itself resets the env before its next rollout.
    env = make_env(args.env_id)
    local_actor, local_critic = make_networks(env, args)
    global_parameters = list(actor.parameters()) + list(critic.parameters())
    local_parameters = list(local_actor.parameters()) + list(local_critic.parameters())
    rollout, scaler = Rollout(args.num_steps, env), RewardScaler(args.gamma, args.norm_reward)
    obs = env.reset(seed=seed)[0].astype(np.float32)
    env.action_space.seed(seed)
    budget_left, local_steps, last_log_step = True, 0, 0
    while budget_left and workers.keep_going():
        if args.anneal_lr:  # this process's copy of the learning rate, from the global step
            progress = workers.global_step.value / args.total_timesteps
            optimizer.param_groups[0]["lr"] = args.learning_rate * max(1.0 - progress, 0.0)
        # A3C-2: copy the global parameters θ, φ into the local networks
        with torch.no_grad():
            for local_p, global_p in zip(local_parameters, global_parameters):
                local_p.copy_(global_p)

        # A3C-3: roll out up to t_max steps, or to the end of the episode
        n, terminated, truncated = 0, False, False
        while n < args.num_steps and not (terminated or truncated):
            budget_left = workers.claim_step(args.total_timesteps)
            if not budget_left:
                break
            rollout.obs[n] = obs
            with torch.no_grad():
                obs_tensor = torch.as_tensor(obs)
                action, _ = local_actor.sample(obs_tensor)
                rollout.values[n] = local_critic(obs_tensor)
            rollout.actions[n] = action = action.numpy()
            next_obs, reward, terminated, truncated, _ = env.step(
                env_actions(action, env.action_space))
            rollout.rewards[n] = scaler.reward(float(reward), terminated or truncated)
            # sends the episodes that end to the main process
            workers.rewards(reward, terminated or truncated)
            # Easy to overlook: advance obs (after an episode's end: its real final observation)
            obs, local_steps, n = next_obs.astype(np.float32), local_steps + 1, n + 1
        if n == 0:
            break

        # A3C-4: the returns R, bootstrapped from V of the last state reached. Easy to overlook:
        # `obs` is then the real final observation when a time limit cut the episode (the env is
        # reset only below), or the state where the rollout stopped
        with torch.no_grad():
            last_value = local_critic(torch.as_tensor(obs)).item()
        advantages, returns = rollout_returns(rollout.rewards[:n], rollout.values[:n], last_value,
                                              terminated, args.gamma, args.gae_lambda)
        if terminated or truncated:
            obs = env.reset()[0].astype(np.float32)

        # A3C-5: gradients of the actor's and the critic's losses on the local networks. Summed
        # over the rollout, a full one's gradient is t_max times its mean: the clipping threshold
        # grows as much (see max_grad_norm), and the learning rate needs no change, since Adam
        # divides the gradient by its running RMS and so takes the same steps whatever a constant
        # factor in the loss
        columns = (rollout.obs[:n], rollout.actions[:n], advantages, returns)
        batch = tuple(torch.as_tensor(a) for a in columns)
        losses = compute_gradients(local_actor, local_critic, batch, args.ent_coef, args.vf_coef,
                                   args.max_grad_norm * args.num_steps)
        # A3C-6: the local gradients become the global parameters' gradients, and the shared
        # optimizer steps them. No lock: another worker may update the same numbers at the same
        # moment ("Hogwild!").
        for global_p, local_p in zip(global_parameters, local_parameters):
            global_p.grad = local_p.grad
        optimizer.step()

        if local_steps - last_log_step >= args.log_frequency:
            last_log_step = local_steps
            workers.send("metrics", rank, *(x.item() for x in losses), workers.episodes,
                         optimizer.param_groups[0]["lr"])
    if local_steps > last_log_step:  # the worker's last row: its final count of episodes
        workers.send("metrics", rank, *(x.item() for x in losses), workers.episodes,
                     optimizer.param_groups[0]["lr"])
    env.close()


# --------------------------------------------------------------------------------------------------
# Training: the main process builds the global networks, starts the workers, logs and evaluates
# --------------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    env = make_env(args.env_id)
    args = with_env_defaults(args, env)
    check_args(args, env)
    seed_everything(args.seed, args)
    # The global networks live on the CPU, in shared memory, where every worker process can reach
    # them (CUDA tensors cannot be shared this way between processes). The device serves the final
    # evaluation only.
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")

    # A3C-1: the global actor-critic and the shared optimizer, in shared memory
    actor, critic = make_networks(env, args)
    env.close()
    actor.share_memory()
    critic.share_memory()
    parameters = list(actor.parameters()) + list(critic.parameters())
    optimizer = SharedAdam(parameters, lr=args.learning_rate)

    @torch.no_grad()
    def policy(obs) -> np.ndarray:  # the evaluation's: mean or most probable action
        action = eval_actor.mode(torch.as_tensor(obs, dtype=torch.float32, device=device))
        return env_actions(action.cpu().numpy(), env.action_space)

    metrics = ["worker", "policy_loss", "value_loss", "entropy", "worker_episodes", "learning_rate"]
    with Run(args, None, device, args.total_timesteps, metrics) as run, Workers(run) as workers:
        run.save(actor=actor, critic=critic)
        # A3C-1: num_workers workers, each running A3C-2 to A3C-6 on its own environment
        workers.start(args.num_workers, worker, args, actor, critic, optimizer)
        eval_actor = make_networks(env, args)[0].to(device)  # for copies of the global actor
        while workers.running():  # logs what the workers send; a failed worker stops the run
            global_step = workers.global_step.value
            run.progress(global_step)
            if args.eval_every and global_step >= run.next_curve:  # eval_curve.csv, every
                eval_actor.load_state_dict(actor.state_dict())  # eval_every steps, of a copy
                run.curve(global_step, policy)
            time.sleep(0.05)
        eval_actor.load_state_dict(actor.state_dict())
        return run.evaluate(workers.global_step.value, policy)


# ==================================================================================================
# Bookkeeping. A first reading can stop here: what follows checks the settings and keeps the run
# folder, the logs, the evaluation and Ctrl-C out of train().
# ==================================================================================================
def check_args(args: Args, env: gym.Env):
    if not isinstance(env.action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        fail(f"{SCRIPT}.py needs Discrete or Box actions, and {args.env_id} has "
             f"{type(env.action_space).__name__} "
             "actions (no script here handles them)")
    if isinstance(env.action_space, gym.spaces.Box) and len(env.action_space.shape) != 1:
        fail(f"{SCRIPT}.py needs a flat Box action space, and {args.env_id} has {env.action_space}")
    observations = env.observation_space
    if not (isinstance(observations, gym.spaces.Box) and len(observations.shape) == 1):
        fail(f"{SCRIPT}.py needs a flat Box observation space, and {args.env_id} has "
             f"{observations}")
    problems = [
        (args.seed + args.num_workers > 2**32 > args.seed >= 0,
         f"seed + num_workers must stay within 2**32 = {2**32}: worker i seeds with seed + i"),
        (args.total_timesteps <= 0, "total_timesteps must be positive"),
        (args.learning_rate <= 0, "learning_rate must be positive"),
        (not 0 <= args.gamma <= 1, "gamma must lie in [0, 1]"),
        (not 0 <= args.gae_lambda <= 1, "gae_lambda must lie in [0, 1]"),
        (min(args.num_workers, args.num_steps) <= 0, "num_workers and num_steps must be positive"),
        (min(args.ent_coef, args.vf_coef) < 0 or args.max_grad_norm <= 0,
         "ent_coef and vf_coef must be >= 0 and max_grad_norm > 0"),
        (args.log_frequency <= 0, "log_frequency must be positive"),
        (args.torch_threads <= 0, "torch_threads must be positive"),
        (args.hidden_size <= 0, "hidden_size must be positive"),
    ]
    for bad, message in problems:
        if bad:
            fail(message)


# How the workers start. 'fork' copies the main process: a worker starts in a fraction of a second,
# with the shared tensors and every registered env already in place. 'spawn' starts a fresh Python
# that imports this file and receives the shared tensors by pickling: it works everywhere, but costs
# seconds per worker (importing torch), and knows only the envs that importing registers. fork is
# missing on Windows and unsafe on macOS (system libraries break in a forked child), where Python
# itself defaults to spawn: we fork on Linux only.
START_METHOD = "fork" if sys.platform == "linux" else "spawn"


class Workers:
    """The worker processes and the one pipe through which they talk to the main process, used as
    `with Workers(run) as workers:` inside the Run. The main process calls start() and then
    running(), which logs what the workers sent into the run and raises if a worker failed; however
    the block ends (Ctrl-C included), no worker outlives it. A worker calls keep_going(),
    claim_step(), rewards() and send().

    Messages: ("episode", step, return, length), ("metrics", step, worker, …) and ("error", worker,
    traceback). send() stamps each with the global step counter while it holds the counter's lock,
    and SimpleQueue writes it at once (no background thread, unlike Queue): the main process
    receives the messages in the order of their steps."""

    def __init__(self, run: "Run"):
        context = mp.get_context(START_METHOD)
        self.context, self.run, self.processes, self.main_pid = context, run, [], os.getpid()
        self.queue, self.stop = context.SimpleQueue(), context.Event()
        self.global_step = context.Value("q", 0)
        # a worker's own, in its process:
        self.episodes, self.episode_return, self.episode_length = 0, 0.0, 0

    def __getstate__(self):  # what a 'spawn' worker receives: not the processes, logs or context
        return {key: value for key, value in self.__dict__.items()
                if key not in ("context", "run", "processes")}

    def start(self, num_workers: int, target, *args):
        """Start num_workers processes running target(rank, *args, self). They ignore Ctrl-C (they
        inherit the ignored SIGINT): the main process alone handles it and then stops them, so that
        an interrupt cannot kill a worker in the middle of an update."""
        print(f"{num_workers} worker processes ({START_METHOD})")
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for rank in range(num_workers):
                self.processes.append(self.context.Process(
                    target=self.work, args=(target, rank, args), daemon=True))
                self.processes[-1].start()
        finally:
            signal.signal(signal.SIGINT, handler)

    def work(self, target, rank: int, args):
        """A worker process: target(rank, *args, self); a failure is sent, and stops the run."""
        try:
            target(rank, *args, self)
        except BaseException:
            self.send("error", rank, traceback.format_exc())

    # A worker's side
    def keep_going(self) -> bool:
        """False when the main process asks the workers to stop, or is gone (killed without a chance
        to ask, e.g. by SIGKILL: the worker then has a new parent)."""
        return not self.stop.is_set() and os.getppid() == self.main_pid

    def claim_step(self, total_timesteps: int) -> bool:
        """Count one more environment step if the budget allows it; False when training is over."""
        with self.global_step.get_lock():
            if self.global_step.value >= total_timesteps:
                return False
            self.global_step.value += 1
            return True

    def rewards(self, reward: float, done: bool):
        """Add one step's reward to the worker's episode under way; send the episode at its end."""
        self.episode_return += float(reward)
        self.episode_length += 1
        if done:
            self.episodes += 1
            self.send("episode", self.episode_return, self.episode_length)
            self.episode_return, self.episode_length = 0.0, 0

    def send(self, kind: str, *row):
        with self.global_step.get_lock():
            self.queue.put((kind, self.global_step.value) + row)

    # The main process's side
    def running(self) -> bool:
        """Log what the workers sent; False once they all finished. Raises if a worker failed."""
        alive = any(p.is_alive() for p in self.processes)
        self.drain()
        for rank, p in enumerate(self.processes):
            if p.exitcode not in (None, 0):  # killed without a message (e.g. out of memory)
                raise RuntimeError(f"A3C worker {rank} died with exit code {p.exitcode}")
        return alive

    def drain(self):
        while not self.queue.empty():
            kind, step, *row = self.queue.get()
            if kind == "episode":
                self.run.episode(step, *row)
            elif kind == "metrics":
                self.run.log(step, *row)
            else:  # a worker failed: stop the run with its error
                raise RuntimeError(f"A3C worker {row[0]} failed:\n{row[1]}")

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        # No worker outlives the run: ask them to stop, give them a moment, then terminate the rest
        self.stop.set()
        for p in self.processes:
            p.join(timeout=5)
        for p in self.processes:
            if p.is_alive():
                p.terminate()
                p.join()
        try:
            self.drain()
        except RuntimeError:
            pass  # a worker's error is already on its way up
        if kind is not None:  # Ctrl-C or an error: model.pt gets the steps the workers took
            self.run.progress(self.global_step.value)
        return False


def saved_policy(saved: dict, args: Args, env: gym.Env, device: torch.device):
    """The deterministic policy (mean or most probable action) of the actor in a model.pt."""
    actor = make_networks(env, args)[0].to(device)
    actor.load_state_dict(saved["actor"])
    return lambda obs: env_actions(
        actor.mode(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy(),
        env.action_space)


def with_env_defaults(args: Args, env: gym.Env, quiet: set = frozenset()) -> Args:
    """Fill the settings left at None from a row of ENV_DEFAULTS: the env's own row, else the row
    its task shares with others (SHARED_ROWS: Hopper-v5 and Hopper-v4 take "MuJoCo", and a
    namespace such as "ALE/" stands for each of its envs), else the row of the tuned env with the
    same kind of action space (TUNED_ON), with a warning. Print the values filled in, but those in
    `quiet`; record the row in settings_row (args.json)."""
    task = args.env_id.split("-v")[0]  # Hopper-v5 → Hopper, ALE/Pong-v5 → ALE/Pong
    namespace = task[:task.find("/") + 1] or None  # ALE/Pong → ALE/, Hopper → None
    rows = [args.env_id] if args.env_id in ENV_DEFAULTS else []
    rows += [name for name, tasks in SHARED_ROWS.items() if task in tasks or namespace in tasks]
    rows += [env_id for space, env_id in TUNED_ON.items() if isinstance(env.action_space, space)]
    row = rows[0] if rows else None
    tuned_on = ", ".join(SHARED_ROWS[row]) if row in SHARED_ROWS else row
    borrowed = row not in (args.env_id, None) and row not in SHARED_ROWS
    if borrowed and args.settings_row is None:  # once: parse_command_line records the row
        print(f"warning: {args.env_id} has no row in ENV_DEFAULTS: its per-env defaults come from "
              f"the row {row}, tuned on {tuned_on}, not on {args.env_id}")
    filled = {key: value for key, value in ENV_DEFAULTS.get(row, {}).items()
              if getattr(args, key) is None}
    shown = ", ".join(f"{key}={value}" for key, value in filled.items() if key not in quiet)
    if shown:
        print(f"defaults for {row}: {shown}")
    record = dict(row=row, tuned_on=tuned_on, borrowed=borrowed)
    return replace(args, **filled, settings_row=record)


def parse_command_line() -> Args:
    """Args from the command line, the row of --env-id in ENV_DEFAULTS filled in first: --help shows
    the values a run would use, and the settings the command line gives are not shown as defaults.
    """
    argv = [part for token in sys.argv[1:] for part in token.split("=", 1)]
    env_id = next((value for flag, value in zip(argv, argv[1:]) if flag == "--env-id"), Args.env_id)
    given = {flag[2:].removeprefix("no-").replace("-", "_") for flag in argv if flag[:2] == "--"}
    defaults = with_env_defaults(Args(env_id=env_id), make_env(env_id), quiet=given)
    return tyro.cli(Args, default=defaults)


# From here to the end, every script of this repository has the same lines (a test checks it). ---
SCRIPT = os.path.basename(__file__)[: -len(".py")]


def fail(message: str):
    """Stop with one clear line on stderr and exit status 2 (bad input, not a bug)."""
    print(f"{SCRIPT}.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


# Atari's and MinAtar's envs: {id prefix: (module, pip install, gym.make's options)}. Atari acts
# every frame (AtariPreprocessing skips); MinAtar, unlimited, stops at ale-py's cap (27k steps)
OPTIONAL_ENVS = {"ALE/": ("ale_py", '"gymnasium[atari,other]"', {"frameskip": 1}),
                 "MinAtar/": ("minatar.gym", "minatar", {"max_episode_steps": 27_000})}


class LifeLossEnds(gym.Wrapper):
    """Atari in training, as in the DQN paper: a lost life ends the learner's episode, but the game
    goes on, so reset() then takes one no-op step; a new game starts only after the last life."""
    game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lost, self.lives = info["lives"] < self.lives, info["lives"]
        self.game_over = terminated or truncated
        return obs, reward, terminated or lost, truncated, info

    def reset(self, *, seed=None, options=None):
        if seed is None and not self.game_over:  # a life lost: play on from here
            obs, _, terminated, truncated, info = self.env.step(0)
            if not (terminated or truncated):
                self.lives = info["lives"]
                return obs, info
        obs, info = self.env.reset(seed=seed, options=options)
        self.lives, self.game_over = info["lives"], False
        return obs, info


def make_env(env_id: str, training: bool = True, **options) -> gym.Env:
    """gym.make(env_id, **options), an Atari or MinAtar id's package registered first. Atari's
    frames get the DQN paper's preprocessing, by gymnasium's wrappers: up to 30 no-op starts, each
    action held for 4 frames, 84×84 grey, the last 4 stacked; in training a lost life ends the
    episode and rewards are clipped to their sign; evaluations (training=False) play whole games."""
    prefix = next((prefix for prefix in OPTIONAL_ENVS if env_id.startswith(prefix)), None)
    if prefix and env_id not in gym.registry:
        try:
            module = importlib.import_module(OPTIONAL_ENVS[prefix][0])  # ale_py: its envs register
        except ImportError:
            fail(f"{env_id} needs an optional package: pip install {OPTIONAL_ENVS[prefix][1]}")
        if prefix == "MinAtar/":
            module.register_envs()
    try:
        env = gym.make(env_id, **options, **(OPTIONAL_ENVS[prefix][2] if prefix else {}))
    except gym.error.Error as e:  # an unknown id (gymnasium suggests close ones), a missing package
        fail(f"cannot make {env_id!r}: {str(e).splitlines()[0]}")
    if prefix == "ALE/":
        env = gym.wrappers.AtariPreprocessing(env)
        if training:  # a lost life ends the episode but not the game; rewards clipped to sign
            env = gym.wrappers.TransformReward(LifeLossEnds(env), np.sign)
        env = gym.wrappers.FrameStackObservation(env, 4)
    return env


def seed_everything(seed: int, args):
    """Seed random, numpy and torch; set torch's determinism and CPU threads."""
    if not 0 <= seed < 2**32:
        fail(f"seed must lie in [0, 2**32), not {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if args.cuda and args.torch_deterministic:  # cuBLAS needs it for determinism, before first use
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(args.torch_deterministic)
    torch.set_num_threads(args.torch_threads)


def write_atomically(path: str, data):
    """Write data (JSON for .json, else torch.save) to path.tmp, then rename: never half-written."""
    if path.endswith(".json"):
        pathlib.Path(path + ".tmp").write_text(json.dumps(data, indent=2))
    else:
        torch.save(data, path + ".tmp")
    os.replace(path + ".tmp", path)


# The fixed test sets: episode e of the final evaluation starts from env seed TEST_SEED + e in
# every run, whatever its training seed; the curve during training plays its own, CURVE_SEED + e.
TEST_SEED, CURVE_SEED, CURVE_EPISODES = 1_000_000, 2_000_000, 5
TEST_EPISODES = {"CartPole-v1": 20, "Acrobot-v1": 30, "Pendulum-v1": 100, "MinAtar/": 100}  # README


def evaluation_settings(args, total_steps: int):
    """Fill in eval_episodes (default: the env's test set, else its namespace's, else 10) and
    eval_every (20 points a run)."""
    if args.eval_episodes is None:
        namespace = args.env_id[:args.env_id.find("/") + 1]  # MinAtar/Breakout-v1 → MinAtar/
        args.eval_episodes = TEST_EPISODES.get(args.env_id, TEST_EPISODES.get(namespace, 10))
    if args.eval_every is None:
        args.eval_every = max(1, total_steps // 20)
    if min(args.eval_episodes, args.eval_every) < 0:
        fail("eval_episodes and eval_every must be >= 0")


@torch.no_grad()
def evaluate(policy, new_env, episodes: int, first_seed: int) -> list:
    """The deterministic policy's returns, episode e from env seed first_seed + e, side by side."""
    if episodes == 0:
        return []
    envs = [new_env() for _ in range(episodes)]
    obs = np.stack([env.reset(seed=first_seed + e)[0] for e, env in enumerate(envs)])
    returns, playing = np.zeros(episodes), np.ones(episodes, dtype=bool)
    while playing.any():  # an ended episode's env waits; the action for its last obs goes unused
        actions = policy(obs)  # one forward pass for every episode, one env each (new_env())
        for e in np.flatnonzero(playing):
            obs[e], reward, terminated, truncated, _ = envs[e].step(actions[e])
            returns[e], playing[e] = returns[e] + reward, not (terminated or truncated)
    for env in envs:
        env.close()
    return returns.tolist()


class Logs:
    """episodes.csv (per training episode), metrics.csv (per log()), eval_curve.csv; progress."""

    def __init__(self, path: str, metric_names: list, total_steps: int):
        self.files = {n: open(f"{path}/{n}.csv", "w", newline="")
                      for n in ["episodes", "metrics", "eval_curve"]}
        self.log("global_step", "episodic_return", "episodic_length", "wall_time", file="episodes")
        self.log("global_step", *metric_names)
        self.log("global_step", "eval_mean", "eval_std", "wall_time", "eval_time",
                 file="eval_curve")
        self.returns = self.lengths = None  # of the episodes under way, one per environment
        self.total_steps, self.recent, self.global_step = total_steps, deque(maxlen=10), 0
        self.start_time = self.printed = time.time()

    def log(self, *row, file: str = "metrics"):
        csv.writer(self.files[file]).writerow(row)
        self.files[file].flush()

    def rewards(self, global_step: int, rewards, dones):
        """Add one step's rewards (a number, or one per environment) to the episodes under way."""
        if self.returns is None:
            self.returns, self.lengths = np.zeros(np.size(rewards)), np.zeros(np.size(rewards), int)
        self.returns += rewards
        self.lengths += 1
        for i in np.flatnonzero(dones):
            self.episode(global_step, self.returns[i], self.lengths[i])
            self.returns[i], self.lengths[i] = 0.0, 0
        self.progress(global_step)

    def episode(self, global_step: int, episodic_return, episodic_length):
        wall_time = round(time.time() - self.start_time, 3)
        self.log(global_step, episodic_return, episodic_length, wall_time, file="episodes")
        self.recent.append(episodic_return)

    def progress(self, global_step: int):
        """Every 2 s at most: the step, the mean of the last 10 training returns, the speed."""
        self.global_step = global_step
        if time.time() - self.printed >= 2:
            self.printed, mean = time.time(), np.mean(self.recent) if self.recent else math.nan
            speed = global_step / (self.printed - self.start_time)
            print(f"step {global_step:>9,} / {self.total_steps:,} | return (last 10) {mean:8.1f} | "
                  f"{speed:,.0f} steps/s")


class Run(Logs, contextlib.AbstractContextManager):
    """A run's folder {run_dir}/{env_id}__{exp_name}__{seed}__{unix time}/: args.json, the logs,
    eval.json, model.pt. `with Run(...) as run:` keeps the model and logs however training ends."""

    def __init__(self, args, env, device: torch.device, total_steps: int, metric_names: list):
        evaluation_settings(args, total_steps)
        self.args, self.env, self.parts, self.next_curve = args, env, {}, args.eval_every
        self.make_test_env = lambda: make_env(args.env_id, training=False)  # evaluate()'s envs
        env_name = args.env_id.replace("/", "-")  # ALE/Pong-v5 → ALE-Pong-v5: one folder, not two
        name = f"{args.run_dir}/{env_name}__{args.exp_name}__{args.seed}__{int(time.time())}"
        self.dir = next(path for path in [name, *(f"{name}-{n}" for n in range(2, 99))]
                        if not os.path.exists(path))  # -2, -3, ...: runs started in the same second
        os.makedirs(self.dir)
        write_atomically(f"{self.dir}/args.json", {**asdict(args), "script": SCRIPT})
        super().__init__(self.dir, metric_names, total_steps)
        print(f"{SCRIPT} on {args.env_id}, seed {args.seed}, {total_steps:,} steps on {device}")

    def __exit__(self, kind, error, trace):  # Ctrl-C included
        for file in [*self.files.values(), *([self.env] if self.env else [])]:
            file.close()
        if self.args.save_model:
            model = {name: part.detach() if torch.is_tensor(part) else part.state_dict()
                     for name, part in self.parts.items()}
            model.update(script=SCRIPT, args=asdict(self.args), global_step=self.global_step)
            write_atomically(f"{self.dir}/model.pt", model)
        print(f"{'interrupted; ' * (kind is KeyboardInterrupt)}run folder: {self.dir}")

    def save(self, **parts):
        """What model.pt will hold: networks and other objects with a state_dict(), or tensors."""
        self.parts = parts

    def curve(self, global_step: int, policy):
        """Every eval_every steps: the deterministic `policy` on CURVE_EPISODES episodes, a row of
        eval_curve.csv (beside the training curve, which explores)."""
        if self.args.eval_every and global_step >= self.next_curve:
            self.next_curve = (global_step // self.args.eval_every + 1) * self.args.eval_every
            start = time.time()
            returns = evaluate(policy, self.make_test_env, CURVE_EPISODES, CURVE_SEED)
            self.log(global_step, np.mean(returns), np.std(returns),
                     round(time.time() - self.start_time, 3), round(time.time() - start, 3),
                     file="eval_curve")

    def evaluate(self, global_step: int, policy) -> dict:
        """The deterministic `policy` on the env's test set, into eval.json; train()'s summary."""
        self.global_step, sps = global_step, global_step / (time.time() - self.start_time)
        returns = evaluate(policy, self.make_test_env, self.args.eval_episodes, TEST_SEED)
        mean, std = float(np.mean(returns or [math.nan])), float(np.std(returns or [math.nan]))
        write_atomically(f"{self.dir}/eval.json", dict(mean=mean, std=std, returns=returns,
                         episodes=len(returns), first_seed=TEST_SEED, global_step=global_step,
                         sps=sps, wall_time=time.time() - self.start_time))
        print(f"evaluation, {len(returns)} episodes: {mean:.1f} ± {std:.1f} ({sps:,.0f} steps/s)")
        return {"eval_mean": mean, "eval_std": std, "global_step": global_step, "sps": sps,
                "run_dir": self.dir}


if __name__ == "__main__":
    try:
        train(parse_command_line())
    except KeyboardInterrupt:
        sys.exit(130)
