"""A3C: asynchronous advantage actor-critic, for Discrete and Box actions.

Paper: Mnih et al., "Asynchronous Methods for Deep Reinforcement Learning", ICML 2016 (Algorithm S3, the
advantage actor-critic of the supplementary material); lecture 7, A3C slides; steps from lecture/PSEUDOCODE.md:
  A3C-1  a global actor-critic and a shared Adam in shared memory; num_workers processes with their own env
  A3C-2  a worker copies the global parameters into its local networks
  A3C-3  it rolls out up to t_max = num_steps steps, or to the end of its episode
  A3C-4  R = 0 if the episode terminated, else V(s_t) (a time limit or the rollout's end); backwards
         R ← r_i + γR (GAE with λ = 1; a smaller gae_lambda mixes in shorter returns)
  A3C-5  gradients of −log π(a_i|s_i)(R − V(s_i)) − β·entropy and of (R − V(s_i))², on the local networks
  A3C-6  the local gradients applied to the global parameters by the shared optimizer, without a lock

The workers are operating-system processes (torch.multiprocessing): the global networks and the optimizer's
state live in shared memory, so every worker reads and writes the same numbers ("Hogwild!", Recht et al. 2011).
A3C is not bit-reproducible: the seed fixes each worker's environment and sampling, but not the order in
which the workers' updates interleave, which depends on the operating system's scheduling. Two runs with the
same seed give different returns (the harness skips its same-seed test for this script).

Run:
  python a3c.py                              # CartPole-v1, 150k steps over all workers
  python a3c.py --env-id Pendulum-v1         # 300k steps, its own defaults from ENV_DEFAULTS
  python a3c.py --help
"""

import csv
import difflib
import importlib
import json
import os
import random
import signal
import sys
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import Optional

import gymnasium as gym
import numpy as np
import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
import tyro

# Settings whose good value depends on the env. A setting left at None on the command line takes its value
# from this table (other envs: from the tuned env with the same kind of action space, see TUNED_ON); the
# resolved values are printed at the start and written to args.json.
ENV_DEFAULTS = {
    # Mnih et al. 2016 use t_max 5 and λ = 1 (n-step returns); γ 0.99 as RL Zoo's A2C for CartPole-v1.
    # 150k steps: with 2 workers the training returns first reach 475 after about 32k steps (median), and
    # the final evaluation gave 500 on 4 of seeds 1-5 (README results; one run fell back after reaching it).
    "CartPole-v1": dict(total_timesteps=150_000, num_steps=5, gamma=0.99, gae_lambda=1.0, ent_coef=0.0,
                        norm_reward=False),
    # γ 0.9 and λ 0.9 as RL Zoo's A2C for Pendulum-v1, with scaled rewards, and the Gaussian's mean kept
    # inside the bounds (bound_mean: without it, seed 1 was still near -1100 after 500k steps). 300k steps:
    # 4 of seeds 1-5 passed -200 in training (median 132k steps) and in the final evaluation (README results).
    "Pendulum-v1": dict(total_timesteps=300_000, num_steps=8, gamma=0.9, gae_lambda=0.9, ent_coef=0.0,
                        norm_reward=True),
}
TUNED_ON = {gym.spaces.Discrete: "CartPole-v1", gym.spaces.Box: "Pendulum-v1"}


@dataclass
class Args:
    env_id: str = "CartPole-v1"
    """Gymnasium environment id (Discrete or Box actions, flat Box observations)"""
    seed: int = 1
    """seed of random, numpy, torch and the environment (worker i adds i)"""
    total_timesteps: Optional[int] = None
    """environment steps to train for, over all workers together (None: per-env default, see ENV_DEFAULTS)"""
    cuda: bool = True
    """use CUDA when it is available (for the final evaluation only: the workers train on the CPU)"""
    torch_deterministic: bool = True
    """use deterministic torch kernels"""
    torch_threads: int = 1
    """CPU threads for torch (one is fastest for these small networks)"""
    eval_episodes: int = 10
    """episodes of the final deterministic (mean or greedy action) evaluation"""
    run_dir: str = "runs"
    """folder under which each run makes its own folder"""
    save_model: bool = True
    """write the trained weights to model.pt"""

    learning_rate: float = 1e-3
    """Adam step size α of the shared optimizer (decays linearly to 0 when anneal_lr)"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over training"""
    num_workers: int = os.cpu_count() or 1
    """worker processes, each with its own environment (A3C-1); default: the number of CPUs"""
    num_steps: Optional[int] = None
    """t_max: steps of a worker's rollout before its update, fewer when its episode ends (None: per-env default)"""
    gamma: Optional[float] = None
    """discount factor γ (None: per-env default)"""
    gae_lambda: Optional[float] = None
    """λ of GAE(λ): 1 gives A3C's n-step returns R, 0 the one-step TD advantage (None: per-env default)"""
    hidden_size: int = 64
    """units in each of the two hidden layers of the actor and of the critic"""
    log_std_init: float = 0.0
    """initial log standard deviation of the Gaussian policy (Box actions)"""
    bound_mean: bool = True
    """Box actions: keep the Gaussian's mean inside the action bounds (see GaussianActor.bound_mean)"""
    norm_reward: Optional[bool] = None
    """divide rewards by the running std of the discounted return, per worker (None: per-env default)"""
    ent_coef: Optional[float] = None
    """β, weight of the entropy bonus (None: per-env default)"""
    vf_coef: float = 0.5
    """weight of the critic's loss"""
    max_grad_norm: float = 0.5
    """global gradient-norm clipping threshold"""
    log_frequency: int = 2_000
    """environment steps of a worker between two of its rows of metrics.csv"""


# ---------------------------------------------------------------------------------------------------
# The actor, the critic and their math
# ---------------------------------------------------------------------------------------------------
def mlp(in_dim: int, out_dim: int, hidden_size: int, out_gain: float) -> nn.Sequential:
    """Two tanh hidden layers, orthogonal weights and zero biases (the lecture's "orthogonal initialization
    and layer scaling" trick); the small out_gain of the policy head makes the first policy nearly uniform."""
    layers = [nn.Linear(in_dim, hidden_size), nn.Tanh(), nn.Linear(hidden_size, hidden_size), nn.Tanh(),
              nn.Linear(hidden_size, out_dim)]
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


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log N(a; μ, diag σ²) = Σ_i [−(a_i − μ_i)² / (2σ_i²) − log σ_i − ½ log 2π]."""
    return (-0.5 * ((actions - mean) / log_std.exp()) ** 2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)


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

    The environment gets the sample clipped into the action bounds, while the log-probability (and so the
    gradient of A3C-5) is that of the unclipped sample a ~ N(μ, σ²), the one the policy really drew. This is the
    usual choice (CleanRL, SB3, the PPO paper): the Gaussian's log-probability stays exact and cheap, and the
    clipping is part of the environment. Squashing the sample with tanh instead would need a change-of-variables
    term in the log-probability (as sac.py does); bound_mean squashes only the mean μ, which needs none."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_size: int, log_std_init: float):
        super().__init__()
        self.mean = mlp(obs_dim, action_dim, hidden_size, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        self.register_buffer("center", None)  # set by bound_mean
        self.register_buffer("half_width", None)

    def bound_mean(self, low: np.ndarray, high: np.ndarray):
        """μ_θ(s) = c + h · tanh(net(s)) from now on, with c and h the center and half-width of the finite
        action bounds [low, high]. Without this, Pendulum's mean often drifts far outside [-2, 2] (we measured
        |μ| ≈ 10 in 99% of the states on a failed seed): every sample is then clipped to the same bound, the
        advantages carry no information about the action, and learning stalls. Only the mean is squashed; the
        sample a ~ N(μ, σ²) and its exact Gaussian log-probability stay as above."""
        if np.all(np.isfinite(low)) and np.all(np.isfinite(high)):  # buffers: saved with the weights in model.pt
            device = self.log_std.device
            self.register_buffer("center", torch.as_tensor((high + low) / 2, dtype=torch.float32, device=device))
            self.register_buffer("half_width", torch.as_tensor((high - low) / 2, dtype=torch.float32, device=device))

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
        return gaussian_log_prob(mean, self.log_std, actions), gaussian_entropy(self.log_std).expand(len(mean))

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


def env_actions(actions: np.ndarray, action_space: gym.Space) -> np.ndarray:
    """What the environment gets: Gaussian samples clipped into the Box bounds (see GaussianActor)."""
    if isinstance(action_space, gym.spaces.Box):
        return np.clip(actions, action_space.low, action_space.high)
    return actions


def compute_gae(rewards, values, next_values, terminated, dones, gamma: float, gae_lambda: float):
    """A3C-4: GAE(λ) advantages and the critic's targets; arrays of shape (num_steps, num_envs).

    next_values[t] is V(s_{t+1}) of the step's *real* successor: V(final observation) when a time limit
    cut the episode at step t. Two masks, because the two ends differ:
      δ_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t)      only a termination stops the bootstrap
      Â_t = δ_t + γλ (1 − done_t) Â_{t+1}                       any end (done = terminated or truncated)
                                                                  stops the sum: t+1 is another episode
    The critic's target R̂_t = Â_t + V(s_t) is the λ-return."""
    advantages = np.zeros_like(rewards)
    next_advantage = np.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * (1.0 - terminated[t]) * next_values[t] - values[t]
        next_advantage = delta + gamma * gae_lambda * (1.0 - dones[t]) * next_advantage
        advantages[t] = next_advantage
    return advantages, advantages + values


def rollout_returns(rewards, values, last_value: float, terminated: bool, gamma: float, gae_lambda: float):
    """A3C-4 for one worker's rollout of n steps (arrays of shape (n,)), which ends at a termination, at a
    time limit or after t_max steps: R = 0 if the episode terminated, else R = V(s_n) of the last state
    reached; then R ← r_i + γR backwards. This is compute_gae on a single env with λ = 1 (the advantage
    is R_i − V(s_i)); a smaller λ mixes in shorter returns. Only termination stops the bootstrap."""
    next_values = np.append(values[1:], last_value)[:, None]
    ended = np.zeros((len(rewards), 1), dtype=np.float32)
    ended[-1] = 1.0  # nothing of this rollout follows its last step
    advantages, returns = compute_gae(rewards[:, None], values[:, None], next_values, ended * terminated, ended,
                                      gamma, gae_lambda)
    return advantages[:, 0], returns[:, 0]


# ---------------------------------------------------------------------------------------------------
# A3C-1: the optimizer shared by the workers
# ---------------------------------------------------------------------------------------------------
class SharedAdam(torch.optim.Adam):
    """Adam whose state (the step count and the two moment estimates) is created at once and moved to shared
    memory, like the global networks. Every worker then updates the same moments: the statistics are shared
    across threads, as the paper's shared RMSProp (its Section 4 found this more robust than one optimizer
    per worker). torch.optim.Adam creates its state lazily on the first step(), which would give each
    process a private copy; here it already exists when step() first looks, so step() updates it in place."""

    def __init__(self, parameters, lr: float):
        super().__init__(parameters, lr=lr, eps=1e-5, fused=True)  # fused: one kernel
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = {"step": torch.zeros((), dtype=torch.float32).share_memory_(),
                                 "exp_avg": torch.zeros_like(p).share_memory_(),
                                 "exp_avg_sq": torch.zeros_like(p).share_memory_()}


# ---------------------------------------------------------------------------------------------------
# Reward scaling (the lecture's "observation and reward scaling" trick), per worker
# ---------------------------------------------------------------------------------------------------
class RunningMeanStd:
    """Mean and variance of all the arrays seen so far, updated a batch at a time (Chan et al.'s merge)."""

    def __init__(self, shape=()):
        self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 1e-4

    def update(self, batch: np.ndarray):
        batch_mean, batch_var, n = batch.mean(0), batch.var(0), len(batch)
        delta, total = batch_mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta ** 2 * self.count * n / total) / total
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": torch.as_tensor(self.mean), "var": torch.as_tensor(self.var), "count": float(self.count)}

    def load_state_dict(self, state: dict):
        self.mean, self.var, self.count = state["mean"].numpy(), state["var"].numpy(), state["count"]


class RewardScaler:
    """Rewards → r / std(R), R ← γR + r the running discounted return of the worker's env (as a2c.py's
    Normalizer). Scaling keeps the critic's targets near 1 whatever the env's reward scale. Each worker keeps
    its own statistics: they only scale the critic's targets, and all workers' estimates of the same std
    agree after a few thousand steps. (Observation normalization, which a2c.py also offers, would change the
    networks' inputs: the workers would have to share one set of statistics and the evaluation use it; we
    leave it out, the default envs learn without it.)"""

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


# ---------------------------------------------------------------------------------------------------
# Helpers: checking the settings, the run folder, evaluation
# ---------------------------------------------------------------------------------------------------
SCRIPT = os.path.basename(__file__)[: -len(".py")]


def fail(message: str):
    """Stop with one clear line on stderr and exit status 2 (bad input, not a bug)."""
    print(f"{SCRIPT}.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def make_env(env_id: str) -> gym.Env:
    module, _, name = env_id.rpartition(":")  # gymnasium's "module:EnvName-v0": importing module registers it
    if module:
        try:
            importlib.import_module(module)
        except ImportError as e:
            fail(f"cannot import {module!r} for {env_id!r}: {e}")
    if name not in gym.envs.registry:
        close = difflib.get_close_matches(name, gym.envs.registry.keys(), n=3, cutoff=0.5)
        fail(f"unknown env id {env_id!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    try:
        return gym.make(name)
    except gym.error.Error as e:  # e.g. a missing optional dependency such as MuJoCo
        fail(f"cannot make {env_id!r}: {str(e).splitlines()[0]}")


def with_env_defaults(args: Args, env: gym.Env) -> Args:
    """Fill the settings left at None from ENV_DEFAULTS, and print what was filled in."""
    tuned = args.env_id if args.env_id in ENV_DEFAULTS else next(
        (tuned_env for space, tuned_env in TUNED_ON.items() if isinstance(env.action_space, space)), None)
    if tuned is None:  # an action space we cannot handle: check_args says so
        return args
    filled = {key: value for key, value in ENV_DEFAULTS[tuned].items() if getattr(args, key) is None}
    if filled:
        print(f"defaults for {tuned}: " + ", ".join(f"{key}={value}" for key, value in filled.items()))
    return replace(args, **filled)


def check_args(args: Args, env: gym.Env):
    if not isinstance(env.action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        fail(f"{SCRIPT}.py needs Discrete or Box actions, and {args.env_id} has {type(env.action_space).__name__} "
             "actions (no script here handles them)")
    if isinstance(env.action_space, gym.spaces.Box) and len(env.action_space.shape) != 1:
        fail(f"{SCRIPT}.py needs a flat Box action space, and {args.env_id} has {env.action_space}")
    if not (isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1):
        fail(f"{SCRIPT}.py needs a flat Box observation space, and {args.env_id} has {env.observation_space}")
    problems = [
        (args.total_timesteps <= 0, "total_timesteps must be positive"),
        (args.learning_rate <= 0, "learning_rate must be positive"),
        (not 0 <= args.gamma <= 1, "gamma must lie in [0, 1]"),
        (not 0 <= args.gae_lambda <= 1, "gae_lambda must lie in [0, 1]"),
        (args.num_workers <= 0 or args.num_steps <= 0, "num_workers and num_steps must be positive"),
        (min(args.ent_coef, args.vf_coef) < 0 or args.max_grad_norm <= 0,
         "ent_coef and vf_coef must be >= 0 and max_grad_norm > 0"),
        (args.log_frequency <= 0, "log_frequency must be positive"),
        (args.eval_episodes < 0 or args.torch_threads <= 0, "eval_episodes must be >= 0 and torch_threads > 0"),
        (args.hidden_size <= 0, "hidden_size must be positive"),
    ]
    for bad, message in problems:
        if bad:
            fail(message)


def make_run_folder(args: Args) -> str:
    stamp = int(time.time())
    path = os.path.join(args.run_dir, f"{args.env_id}__{SCRIPT}__{args.seed}__{stamp}")
    suffix = 1
    while os.path.exists(path):  # two runs started in the same second
        suffix += 1
        path = os.path.join(args.run_dir, f"{args.env_id}__{SCRIPT}__{args.seed}__{stamp}-{suffix}")
    os.makedirs(path)
    return path


def write_atomically(path: str, write):
    """Write to a temporary file, then rename it: an interrupt never leaves a half-written file."""
    tmp = path + ".tmp"
    write(tmp)
    os.replace(tmp, path)


def write_json(path: str, data: dict):
    def dump(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
    write_atomically(path, dump)


@torch.no_grad()
def evaluate(actor: nn.Module, args: Args, device: torch.device) -> list:
    """Deterministic policy (mean or most probable action) on a fresh environment, seeded apart from the
    training ones."""
    env = gym.make(args.env_id)
    returns = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + 10_000 + episode)
        done, episode_return = False, 0.0
        while not done:
            action = actor.mode(torch.as_tensor(obs, dtype=torch.float32, device=device))
            obs, reward, terminated, truncated, _ = env.step(env_actions(action.cpu().numpy(), env.action_space))
            episode_return += float(reward)
            done = terminated or truncated
        returns.append(episode_return)
    env.close()
    return returns


# How the workers start. 'fork' copies the main process: a worker starts in a fraction of a second, with the
# shared tensors and every registered env already in place. 'spawn' starts a fresh Python that imports this
# file and receives the shared tensors through pickling: it works everywhere but costs seconds per worker
# (importing torch), and a custom env must be importable ("module:EnvName-v0"). fork is missing on Windows
# and unsafe on macOS (system libraries that break in a forked child), where Python itself defaults to spawn;
# we use fork on Linux only. The main process sets up its torch threads before forking; the workers use
# their own single thread.
START_METHOD = "fork" if sys.platform == "linux" else "spawn"


def make_networks(env: gym.Env, args: Args):
    """A3C-1: the actor π_θ (softmax or Gaussian) and the critic V_φ, separate networks as on the slides."""
    obs_dim, discrete = env.observation_space.shape[0], isinstance(env.action_space, gym.spaces.Discrete)
    actor_class = CategoricalActor if discrete else GaussianActor
    actor = actor_class(obs_dim, int(env.action_space.n) if discrete else env.action_space.shape[0],
                        args.hidden_size, args.log_std_init)
    if not discrete and args.bound_mean:
        actor.bound_mean(env.action_space.low, env.action_space.high)
    return actor, Critic(obs_dim, args.hidden_size)


# ---------------------------------------------------------------------------------------------------
# A worker: its own environment and local networks, the global networks and optimizer shared
# ---------------------------------------------------------------------------------------------------
class Messages:
    """What the workers tell the main process, through one pipe: ("episode", step, return, length),
    ("metrics", step, worker, …) and ("error", worker, traceback). send() stamps each message with the global
    step counter while it holds the counter's lock, and SimpleQueue writes it at once (no background thread,
    unlike Queue), so the main process receives the messages in the order of their steps."""

    def __init__(self, context):
        self.queue, self.global_step = context.SimpleQueue(), context.Value("q", 0)

    def claim_step(self, total_timesteps: int) -> bool:
        """Count one more environment step if the budget allows it; False when training is over."""
        with self.global_step.get_lock():
            if self.global_step.value >= total_timesteps:
                return False
            self.global_step.value += 1
            return True

    def send(self, kind: str, *row):
        with self.global_step.get_lock():
            self.queue.put((kind, self.global_step.value) + row)


def worker(rank: int, args: Args, actor: nn.Module, critic: nn.Module, optimizer: SharedAdam,
           messages: Messages, stop):
    """One A3C worker. A failure is sent to the main process as a message, which stops the run."""
    try:
        run_worker(rank, args, actor, critic, optimizer, messages, stop)
    except BaseException:
        messages.send("error", rank, traceback.format_exc())


def run_worker(rank, args, actor, critic, optimizer, messages, stop):
    seed = args.seed + rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(args.torch_threads)
    # The worker steps one plain environment (no vector env, so no autoreset): when an episode ends, next_obs
    # is its real final observation, and the worker itself resets the env before its next rollout.
    env = gym.make(args.env_id)
    action_space = env.action_space
    local_actor, local_critic = make_networks(env, args)
    obs_dim = env.observation_space.shape[0]
    discrete = isinstance(action_space, gym.spaces.Discrete)
    action_shape = () if discrete else action_space.shape
    global_parameters = list(actor.parameters()) + list(critic.parameters())
    local_parameters = list(local_actor.parameters()) + list(local_critic.parameters())
    scaler = RewardScaler(args.gamma, args.norm_reward)

    # The rollout storage, preallocated: one row per step
    obs_buf = np.zeros((args.num_steps, obs_dim), dtype=np.float32)
    actions_buf = np.zeros((args.num_steps,) + action_shape, dtype=np.int64 if discrete else np.float32)
    rewards_buf, values_buf = np.zeros(args.num_steps, dtype=np.float32), np.zeros(args.num_steps, dtype=np.float32)

    local_steps, episodes, last_log_step = 0, 0, 0
    episode_return, episode_length = 0.0, 0
    obs, _ = env.reset(seed=seed)
    action_space.seed(seed)
    obs = obs.astype(np.float32)
    budget_left, main_pid = True, os.getppid()
    # Stop when the budget is spent, when the main process asks, or when the main process is gone (killed
    # without a chance to ask, e.g. by SIGKILL: the worker then has a new parent)
    while budget_left and not stop.is_set() and os.getppid() == main_pid:
        if args.anneal_lr:  # this process's copy of the learning rate, from the global step
            progress = messages.global_step.value / args.total_timesteps
            optimizer.param_groups[0]["lr"] = args.learning_rate * max(1.0 - progress, 0.0)
        # A3C-2: copy the global parameters θ, φ into the local networks
        with torch.no_grad():
            for local_p, global_p in zip(local_parameters, global_parameters):
                local_p.copy_(global_p)

        # A3C-3: roll out up to t_max steps, or to the end of the episode
        terminated = truncated = False
        n = 0
        while n < args.num_steps and not (terminated or truncated):
            budget_left = messages.claim_step(args.total_timesteps)
            if not budget_left:
                break
            obs_buf[n] = obs
            with torch.no_grad():
                obs_tensor = torch.as_tensor(obs)
                action, _ = local_actor.sample(obs_tensor)
                values_buf[n] = local_critic(obs_tensor)
            actions_buf[n] = action = action.numpy()
            next_obs, reward, terminated, truncated, _ = env.step(env_actions(action, action_space))
            rewards_buf[n] = scaler.reward(float(reward), terminated or truncated)
            episode_return += float(reward)
            episode_length += 1
            local_steps += 1
            n += 1
            obs = next_obs.astype(np.float32)
            if terminated or truncated:
                episodes += 1
                messages.send("episode", episode_return, episode_length)
                episode_return, episode_length = 0.0, 0
        if n == 0:
            break

        # A3C-4: the returns R, bootstrapped from V of the last state reached: `obs`, the real final observation
        # when a time limit cut the episode, or the state where the rollout stopped
        with torch.no_grad():
            last_value = local_critic(torch.as_tensor(obs)).item()
        advantages, returns = rollout_returns(rewards_buf[:n], values_buf[:n], last_value, terminated,
                                              args.gamma, args.gae_lambda)
        if terminated or truncated:
            obs, _ = env.reset()
            obs = obs.astype(np.float32)

        # A3C-5: gradients of the actor's and the critic's losses on the local networks
        b_obs = torch.as_tensor(obs_buf[:n])
        b_advantages, b_returns = torch.as_tensor(advantages), torch.as_tensor(returns)
        new_log_probs, entropy = local_actor.log_prob_entropy(b_obs, torch.as_tensor(actions_buf[:n]))
        policy_loss = -(new_log_probs * b_advantages).mean()
        value_loss = F.mse_loss(local_critic(b_obs), b_returns)
        loss = policy_loss - args.ent_coef * entropy.mean() + args.vf_coef * value_loss
        for p in local_parameters:
            p.grad = None
        loss.backward()
        nn.utils.clip_grad_norm_(local_parameters, args.max_grad_norm)
        # A3C-6: the local gradients become the global parameters' gradients, and the shared optimizer steps
        # them. No lock: another worker may update the same numbers at the same moment ("Hogwild!").
        for global_p, local_p in zip(global_parameters, local_parameters):
            global_p.grad = local_p.grad
        optimizer.step()

        if local_steps - last_log_step >= args.log_frequency:
            last_log_step = local_steps
            messages.send("metrics", rank, policy_loss.item(), value_loss.item(), entropy.mean().item(), episodes,
                          optimizer.param_groups[0]["lr"])
    if local_steps > last_log_step:  # the worker's last row: its final count of episodes
        messages.send("metrics", rank, policy_loss.item(), value_loss.item(), entropy.mean().item(), episodes,
                      optimizer.param_groups[0]["lr"])
    env.close()


# ---------------------------------------------------------------------------------------------------
# Training: the main process starts the workers, logs what they send, and evaluates the global network
# ---------------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    env = make_env(args.env_id)
    args = with_env_defaults(args, env)
    check_args(args, env)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(args.torch_deterministic)
    torch.set_num_threads(args.torch_threads)
    # The global networks live on the CPU, in shared memory, where every worker process can reach them
    # (Hogwild needs shared memory; CUDA tensors cannot be shared this way between processes and would
    # serialize the workers). The device serves the final evaluation only.
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")

    # A3C-1: the global actor-critic and the shared optimizer, in shared memory
    actor, critic = make_networks(env, args)
    env.close()
    actor.share_memory()
    critic.share_memory()
    optimizer = SharedAdam(list(actor.parameters()) + list(critic.parameters()), lr=args.learning_rate)

    context = mp.get_context(START_METHOD)
    messages, stop = Messages(context), context.Event()

    run_dir = make_run_folder(args)
    write_json(os.path.join(run_dir, "args.json"), asdict(args))
    episodes_file = open(os.path.join(run_dir, "episodes.csv"), "w", newline="")
    metrics_file = open(os.path.join(run_dir, "metrics.csv"), "w", newline="")
    episodes_log, metrics_log = csv.writer(episodes_file), csv.writer(metrics_file)
    episodes_log.writerow(["global_step", "episodic_return", "episodic_length", "wall_time"])
    metrics_log.writerow(["global_step", "worker", "policy_loss", "value_loss", "entropy", "worker_episodes",
                          "learning_rate"])
    print(f"{SCRIPT} on {args.env_id}, seed {args.seed}, {args.num_workers} workers × rollouts of up to "
          f"{args.num_steps} steps, {args.total_timesteps:,} steps in all, device {device} (evaluation)")

    def handle(message):
        kind, step, *row = message
        if kind == "episode":
            episodes_log.writerow([step, row[0], row[1], round(time.time() - start_time, 3)])
            recent_returns.append(row[0])
        elif kind == "metrics":
            metrics_log.writerow([step, *row])
        else:  # a worker failed: stop the run with its error
            raise RuntimeError(f"A3C worker {row[0]} failed:\n{row[1]}")

    def drain():
        while not messages.queue.empty():
            handle(messages.queue.get())
        episodes_file.flush()
        metrics_file.flush()

    start_time = last_print = time.time()
    recent_returns = deque(maxlen=10)
    workers = []
    try:
        # The workers ignore Ctrl-C (they inherit the ignored SIGINT): the main process alone handles it and
        # then stops them, so that an interrupt cannot kill a worker in the middle of an update.
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for rank in range(args.num_workers):
                workers.append(context.Process(target=worker, args=(rank, args, actor, critic, optimizer,
                                                                    messages, stop), daemon=True))
                workers[-1].start()
        finally:
            signal.signal(signal.SIGINT, handler)
        while any(p.is_alive() for p in workers):
            drain()
            for p in workers:
                if p.exitcode not in (None, 0):  # killed without a message (e.g. out of memory)
                    drain()
                    raise RuntimeError(f"A3C worker {workers.index(p)} died with exit code {p.exitcode}")
            if time.time() - last_print > 2:
                last_print = time.time()
                mean_return = np.mean(recent_returns) if recent_returns else float("nan")
                global_step = messages.global_step.value
                print(f"step {global_step:>8,} | return (last 10) {mean_return:8.1f} | "
                      f"{global_step / (last_print - start_time):,.0f} steps/s")
            time.sleep(0.05)
        drain()
        global_step = messages.global_step.value
    except KeyboardInterrupt:
        global_step = messages.global_step.value
        print(f"\ninterrupted at step {global_step:,}: saving the model and the logs so far")
        raise
    else:
        sps = global_step / (time.time() - start_time)
        eval_actor = make_networks(gym.make(args.env_id), args)[0].to(device)
        eval_actor.load_state_dict(actor.state_dict())
        returns = evaluate(eval_actor, args, device) if args.eval_episodes > 0 else []
        summary = {"mean": float(np.mean(returns)) if returns else float("nan"),
                   "std": float(np.std(returns)) if returns else float("nan"),
                   "returns": returns, "episodes": len(returns), "global_step": global_step,
                   "sps": sps, "wall_time": time.time() - start_time}
        write_json(os.path.join(run_dir, "eval.json"), summary)
        print(f"evaluation over {len(returns)} episodes: {summary['mean']:.1f} ± {summary['std']:.1f} "
              f"| {sps:,.0f} steps/s | {summary['wall_time']:.1f} s")
    finally:
        # No worker outlives the run: ask them to stop, give them a moment, then terminate the rest
        stop.set()
        for p in workers:
            p.join(timeout=5)
        for p in workers:
            if p.is_alive():
                p.terminate()
                p.join()
        try:
            drain()
        except RuntimeError:
            pass  # a worker's error is already on its way up
        episodes_file.close()
        metrics_file.close()
        if args.save_model:
            model = {"actor": actor.state_dict(), "critic": critic.state_dict(), "args": asdict(args),
                     "global_step": messages.global_step.value}
            write_atomically(os.path.join(run_dir, "model.pt"), lambda tmp: torch.save(model, tmp))
        print(f"run folder: {run_dir}")
    return {"eval_mean": summary["mean"], "eval_std": summary["std"], "global_step": global_step,
            "sps": sps, "run_dir": run_dir}


if __name__ == "__main__":
    try:
        train(tyro.cli(Args))
    except KeyboardInterrupt:
        sys.exit(130)
