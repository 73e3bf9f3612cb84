"""TD3: twin delayed DDPG, DDPG with three changes against the overestimation of Q.

Paper: Fujimoto, van Hoof and Meger, "Addressing Function Approximation Error in Actor-Critic
Methods", ICML 2018. Lecture 7, "TD3 (Twin Delayed Deep Deterministic)" slides and
"Algorithm 1 TD3".

The lecture's steps, as labelled in the code below: DDPG's five, then the three changes of TD3.
  DDPG-1  a deterministic actor μ_θ(s) ≈ argmax_a Q_φ(s, a), a critic Q_φ(s, a) and target copies
          θ', φ': with continuous actions DQN's max over a cannot be computed, so the actor learns
          to find it
  DDPG-2  act with a = clip(μ_θ(s) + N(0, σ²), low, high) and store (s, a, r, s', terminated) in the
          buffer B: μ_θ alone would always take the same action, the noise explores
  DDPG-3  targets y = r + γ (1 − terminated) Q_φ'(s', μ_θ'(s')) from the target networks, with no
          gradient through y; one gradient step on the critic loss MSE(Q_φ(s, a), y)
  DDPG-4  one gradient step on the actor loss −mean Q_φ(s, μ_θ(s)): its gradient is dQ/da · dμ/dθ,
          so the actor moves its action uphill on the critic
  DDPG-5  soft updates θ' ← τθ + (1 − τ)θ', φ' ← τφ + (1 − τ)φ': the targets trail the learned
          networks slowly, so y holds nearly still from one step to the next
  TD3-1   target policy smoothing: DDPG-3's target action becomes
          ã = clip(μ_θ'(s') + clip(N(0, σ̃²), −c, c), low, high): y averages Q' over nearby actions,
          so a narrow, wrong peak of the critic cannot pull it up
  TD3-2   clipped double Q: twin critics Q_φ1, Q_φ2,
          y = r + γ (1 − terminated) min_{i=1,2} Q_φ'_i(s', ã), and both critics regress on y: the
          smaller of two estimates counters the overestimation that an actor seeking the max brings
  TD3-3   delayed policy updates: the actor and the target networks every `policy_frequency` critic
          updates, so the actor follows a critic that has settled a little
`diff ddpg.py td3.py` shows these three changes and little else. Box action spaces of any bounds and
dimension; MuJoCo tasks run unchanged once gymnasium[mujoco] is installed.

Reading order: the per-env defaults and the settings (Args), the networks, the buffer and the
updates (update_critic, update_actor, soft_update), then train(), the loop that calls them step by
step. Everything under "Bookkeeping" at the bottom (filling in the per-env defaults, the run folder,
logs, errors, evaluation, Ctrl-C) can be skipped on a first reading.

Run:
  python td3.py                               # Pendulum-v1, 15k steps
  python td3.py --env-id HalfCheetah-v5       # 1M steps, the MuJoCo row of ENV_DEFAULTS
  # The MuJoCo row serves Hopper, HalfCheetah, Walker2d, Ant, Swimmer and Humanoid (any -vN).
  # Hours on a laptop CPU (about 130 steps/s on HalfCheetah-v5 with one torch thread here, more
  # with the row's two): --total-timesteps 100000 for a first look.
  python td3.py --help
"""

import contextlib
import csv
import importlib
import json
import math
import os
import pathlib
import random
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, replace

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

# Settings whose good value depends on the env. A setting left at None on the command line takes its
# value from this table: the env's own row, or the MuJoCo row for the tasks of SHARED_ROWS (any
# version: Hopper-v5, Hopper-v4, ...), or else, with a warning, the row of the tuned env with the
# same kind of action space (TUNED_ON). The resolved values are printed at the start and written to
# args.json.
ENV_DEFAULTS = {
    # learning_rate, buffer_size and gamma: RL Zoo; total_timesteps, batch_size, hidden_size
    # and learning_starts: ours (README: how the defaults were chosen)
    "Pendulum-v1": dict(total_timesteps=15_000, learning_rate=1e-3, buffer_size=200_000,
                        gamma=0.98, batch_size=128, hidden_size=64, learning_starts=5_000,
                        torch_threads=1),
    # Not tuned here. The same networks, batch, warm-up and budget as ddpg.py and sac.py on MuJoCo:
    # 256-256 units, Adam 3e-4, batch 256 (the TD3 authors' TD3.py and CleanRL); buffer 1e6,
    # γ 0.99, 1M steps (RL Zoo, CleanRL); 10,000 random steps first (RL Zoo, the SAC authors'
    # code). tau 0.005, exploration_noise 0.1, policy_noise 0.2, noise_clip 0.5 and
    # policy_frequency 2 mean the same there and keep their defaults (the TD3 paper, RL Zoo)
    # torch_threads: ours, measured: two threads update 256-unit networks 1.7 times as fast as one
    # on 2 cores (README: how long a run takes); one is fastest for Pendulum-v1's small networks
    "MuJoCo": dict(total_timesteps=1_000_000, learning_rate=3e-4, buffer_size=1_000_000,
                   gamma=0.99, batch_size=256, hidden_size=256, learning_starts=10_000,
                   torch_threads=2),
}
SHARED_ROWS = {"MuJoCo": ("Hopper", "HalfCheetah", "Walker2d", "Ant", "Swimmer", "Humanoid")}
TUNED_ON = {gym.spaces.Box: "Pendulum-v1"}


@dataclass
class Args:
    env_id: str = "Pendulum-v1"
    """Gymnasium environment id (Box actions with finite bounds, flat Box observations)"""
    seed: int = 1
    """seed of random, numpy, torch and the environment"""
    total_timesteps: int = None
    """environment steps to train for (per-env default: ENV_DEFAULTS)"""
    cuda: bool = True
    """use CUDA when it is available"""
    torch_deterministic: bool = True
    """use deterministic torch kernels"""
    torch_threads: int = None
    """CPU threads for torch (per-env default: ENV_DEFAULTS; two for the 256-unit networks of
    MuJoCo, one for Pendulum-v1's small ones)"""
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
    """Adam step size of the actor and of the critic (per-env default: ENV_DEFAULTS)"""
    buffer_size: int = None
    """capacity of the replay buffer B (per-env default: ENV_DEFAULTS)"""
    gamma: float = None
    """discount factor γ (per-env default: ENV_DEFAULTS)"""
    tau: float = 0.005  # RL Zoo
    """soft update coefficient τ of the target networks (DDPG-5)"""
    batch_size: int = None
    """transitions per mini-batch (per-env default: ENV_DEFAULTS)"""
    hidden_size: int = None
    """units in each of the two hidden layers of the actor and of the critic (per-env default:
    ENV_DEFAULTS)"""
    learning_starts: int = None
    """environment steps of uniformly random actions before learning starts (per-env default:
    ENV_DEFAULTS)"""
    exploration_noise: float = 0.1  # RL Zoo
    """σ of the Gaussian exploration noise, as a fraction of (high − low) / 2 (DDPG-2)"""
    policy_noise: float = 0.2  # paper
    """σ̃ of the target policy smoothing noise, as a fraction of the half-range (TD3-1)"""
    noise_clip: float = 0.5  # paper
    """c: the smoothing noise is clipped to [−c, c], as a fraction of the half-range (TD3-1)"""
    policy_frequency: int = 2  # paper
    """critic updates between two updates of the actor and of the targets (TD3-3)"""
    log_frequency: int = 500
    """environment steps between two rows of metrics.csv"""
    settings_row: tyro.conf.Suppress[dict | None] = None
    """not a setting: the row of ENV_DEFAULTS that the per-env settings came from, as args.json
    records it: {"row", "tuned_on", "borrowed"} (with_env_defaults fills it in)"""


# --------------------------------------------------------------------------------------------------
# The actor, the critic, the replay buffer and the updates
# --------------------------------------------------------------------------------------------------
class Actor(nn.Module):
    """μ_θ(s): tanh squashes the output into (−1, 1); scaled and shifted, it spans [low, high]."""

    def __init__(self, obs_dim: int, action_space: gym.spaces.Box, hidden_size: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, action_space.shape[0]), nn.Tanh(),
        )
        # buffers, not parameters: saved with the weights and moved to the device, but never trained
        scale = (action_space.high - action_space.low) / 2.0
        bias = (action_space.high + action_space.low) / 2.0
        self.register_buffer("action_scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("action_bias", torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.action_bias + self.action_scale * self.net(obs)


class Critic(nn.Module):
    """Twin critics Q_φ1(s, a), Q_φ2(s, a) (TD3-2): two independent networks, one module and one
    optimizer. They see the action rescaled to [−1, 1], so any bounds give inputs of one size."""

    def __init__(self, obs_dim: int, action_space: gym.spaces.Box, hidden_size: int):
        super().__init__()
        self.q1, self.q2 = (nn.Sequential(
            nn.Linear(obs_dim + action_space.shape[0], hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, 1),
        ) for _ in range(2))
        scale = (action_space.high - action_space.low) / 2.0
        bias = (action_space.high + action_space.low) / 2.0
        self.register_buffer("action_scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("action_bias", torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple:
        x = torch.cat([obs, (action - self.action_bias) / self.action_scale], dim=1)
        return self.q1(x).squeeze(1), self.q2(x).squeeze(1)

    def q1_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q_φ1(s, a) alone, for the actor's objective (TD3-5): Q_φ2 would be computed unused."""
        x = torch.cat([obs, (action - self.action_bias) / self.action_scale], dim=1)
        return self.q1(x).squeeze(1)


class ReplayBuffer:
    """Uniform replay buffer B, preallocated in numpy; the oldest transitions are overwritten."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int):
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, action_dim), dtype=np.float32)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        # 1 only when the MDP ended, not on a time limit: the target bootstraps past a time limit
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.capacity, self.pos, self.size = capacity, 0, 0

    def add(self, obs, action, reward, next_obs, terminated):
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.terminated[i] = next_obs, terminated
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device):
        idx = rng.integers(0, self.size, size=batch_size)
        return tuple(
            torch.as_tensor(a[idx], device=device)
            for a in (self.obs, self.actions, self.rewards, self.next_obs, self.terminated)
        )


def add_exploration_noise(action, rng: np.random.Generator, exploration_noise: float, low, high):
    """DDPG-2: clip(μ_θ(s) + N(0, σ²), low, high), σ = exploration_noise · (high − low) / 2 in each
    dimension."""
    noise = rng.normal(0.0, exploration_noise, size=action.shape) * (high - low) / 2.0
    return np.clip(action + noise, low, high).astype(np.float32)


@torch.no_grad()
def smoothed_target_action(actor_target, next_obs, policy_noise, noise_clip):
    """TD3-1: ã = clip(μ_θ'(s') + clip(N(0, σ̃), −c, c), low, high), with σ̃ and c in units of
    the half-range (high − low) / 2."""
    action = actor_target(next_obs)
    noise = (torch.randn_like(action) * policy_noise).clamp(-noise_clip, noise_clip)
    noise = noise * actor_target.action_scale  # from half-ranges to the env's units
    low = actor_target.action_bias - actor_target.action_scale
    high = actor_target.action_bias + actor_target.action_scale
    return (action + noise).clamp(low, high)


@torch.no_grad()  # easy to miss: y is a fixed regression target, no gradient may flow through it
def td_target(actor_target, critic_target, rewards, next_obs, terminated, gamma, *,
              policy_noise, noise_clip):
    """TD3-2: y = r + γ (1 − terminated) min_i Q_φ'_i(s', ã), ã from TD3-1; no gradient into y."""
    # easy to miss: the target's action gets noise of its own (TD3-1), not only the acting one
    next_actions = smoothed_target_action(actor_target, next_obs, policy_noise, noise_clip)
    next_q1, next_q2 = critic_target(next_obs, next_actions)
    return rewards + gamma * (1.0 - terminated) * torch.min(next_q1, next_q2)


def update_critic(critic, critic_optimizer, actor_target, critic_target, batch, gamma: float, *,
                  policy_noise: float, noise_clip: float):
    """DDPG-3 on one mini-batch: one gradient step on MSE(Q_φ1(s, a), y) + MSE(Q_φ2(s, a), y), both
    critics on the same y; returns the loss and Q_φ1(s, a)."""
    obs, actions, rewards, next_obs, terminated = batch
    y = td_target(actor_target, critic_target, rewards, next_obs, terminated, gamma,
                  policy_noise=policy_noise, noise_clip=noise_clip)
    q1_values, q2_values = critic(obs, actions)
    critic_loss = F.mse_loss(q1_values, y) + F.mse_loss(q2_values, y)
    critic_optimizer.zero_grad()
    critic_loss.backward()
    critic_optimizer.step()
    return critic_loss, q1_values


def update_actor(actor, actor_optimizer, critic, batch):
    """DDPG-4 on one mini-batch: one gradient step on −mean Q_φ1(s, μ_θ(s)) (the first critic, as in
    the paper); returns the loss. The critic is frozen meanwhile: the gradient flows through it
    into the action, but its weights get none."""
    obs = batch[0]
    critic.requires_grad_(False)  # no gradient for the critic's weights: less backward to do
    actor_loss = -critic.q1_value(obs, actor(obs)).mean()
    actor_optimizer.zero_grad()
    actor_loss.backward()
    critic.requires_grad_(True)
    actor_optimizer.step()
    return actor_loss


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float):
    """DDPG-5: θ' ← τθ + (1 − τ)θ' for every parameter; lerp_ computes exactly θ' + τ(θ − θ')."""
    for target_param, param in zip(target.parameters(), source.parameters()):
        target_param.lerp_(param, tau)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    env = make_env(args.env_id)
    args = with_env_defaults(args, env)
    check_args(args, env)
    seed_everything(args.seed, args)
    rng = np.random.default_rng(args.seed)  # exploration noise and mini-batch indices
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")

    # DDPG-1: actor μ_θ, twin critics Q_φ1, Q_φ2 (TD3-2) and their target copies θ' ← θ, φ' ← φ
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = env.action_space.low, env.action_space.high
    actor = Actor(obs_dim, env.action_space, args.hidden_size).to(device)
    critic = Critic(obs_dim, env.action_space, args.hidden_size).to(device)
    actor_target = Actor(obs_dim, env.action_space, args.hidden_size).to(device)
    critic_target = Critic(obs_dim, env.action_space, args.hidden_size).to(device)
    actor_target.load_state_dict(actor.state_dict())
    critic_target.load_state_dict(critic.state_dict())
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate, fused=True)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=args.learning_rate, fused=True)
    buffer = ReplayBuffer(args.buffer_size, obs_dim, action_dim)
    actor_loss = None  # no actor update yet (TD3-3): logged as nan

    @torch.no_grad()
    def policy(obs) -> np.ndarray:  # no noise: the evaluated policy, the mean of the exploring one
        return actor(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()

    with Run(args, env, device, args.total_timesteps,
             ["critic_loss", "actor_loss", "q_mean"]) as run:
        run.save(actor=actor, critic=critic)
        obs, _ = env.reset(seed=args.seed)
        env.action_space.seed(args.seed)
        for global_step in range(1, args.total_timesteps + 1):
            # DDPG-2: random actions first, then μ_θ(s) plus clipped Gaussian noise; store in B
            if global_step <= args.learning_starts:
                action = env.action_space.sample()
            else:
                action = add_exploration_noise(policy(obs), rng, args.exploration_noise, low, high)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            # Easy to miss: store next_obs, the real last observation even at a time limit, and
            # terminated, not truncated, so that DDPG-3 still bootstraps after a time limit.
            buffer.add(obs, action, reward, next_obs, terminated)
            run.rewards(global_step, reward, terminated or truncated)
            obs = next_obs  # easy to miss: the next step acts from the state this one reached
            if terminated or truncated:
                obs, _ = env.reset()

            if global_step > args.learning_starts:
                batch = buffer.sample(args.batch_size, rng, device)
                # DDPG-3 with TD3-1 and TD3-2: smoothed target action, the smaller target critic
                critic_loss, q_values = update_critic(
                    critic, critic_optimizer, actor_target, critic_target, batch, args.gamma,
                    policy_noise=args.policy_noise, noise_clip=args.noise_clip)
                # TD3-3: the actor and the targets only every policy_frequency critic updates
                if global_step % args.policy_frequency == 0:
                    # DDPG-4: move μ_θ(s) uphill on Q_φ1(s, ·)
                    actor_loss = update_actor(actor, actor_optimizer, critic, batch)
                    # DDPG-5: the targets slowly track the learned networks
                    soft_update(actor_target, actor, args.tau)
                    soft_update(critic_target, critic, args.tau)
                if global_step % args.log_frequency == 0:
                    run.log(global_step, critic_loss.item(),
                            float("nan") if actor_loss is None else actor_loss.item(),
                            q_values.mean().item())
            run.curve(global_step, policy)  # eval_curve.csv, every eval_every steps
        return run.evaluate(global_step, policy)


# ==================================================================================================
# Bookkeeping. A first reading can stop here: what follows checks the settings and keeps the run
# folder, the logs, the evaluation and Ctrl-C out of train().
# ==================================================================================================
def check_args(args: Args, env: gym.Env):
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        fail(f"{SCRIPT}.py needs Box (continuous) actions, and {args.env_id} has "
             f"{type(space).__name__} "
             "actions: use dqn.py (or ppo.py, a2c.py) for discrete actions")
    if len(space.shape) != 1 or not np.all(np.isfinite(np.concatenate([space.low, space.high]))):
        fail(f"{SCRIPT}.py scales its actions to finite bounds of a flat Box, and {args.env_id} "
             f"has {space}")
    observations = env.observation_space
    if not (isinstance(observations, gym.spaces.Box) and len(observations.shape) == 1):
        fail(f"{SCRIPT}.py needs a flat Box observation space, and {args.env_id} has "
             f"{observations}")
    problems = [
        (args.total_timesteps <= 0, "total_timesteps must be positive"),
        (args.total_timesteps <= args.learning_starts,
         f"total_timesteps ({args.total_timesteps}) must exceed learning_starts "
         f"({args.learning_starts}), "
         "or the run ends before its first gradient step"),
        (args.learning_rate <= 0, "learning_rate must be positive"),
        (not 0 <= args.gamma <= 1, "gamma must lie in [0, 1]"),
        (not 0 < args.tau <= 1, "tau must lie in (0, 1]"),
        (min(args.buffer_size, args.batch_size) <= 0, "buffer_size and batch_size must be > 0"),
        (args.batch_size > args.buffer_size, "batch_size cannot exceed buffer_size"),
        (args.learning_starts < args.batch_size, "learning_starts must be at least batch_size"),
        (args.exploration_noise < 0, "exploration_noise must be >= 0"),
        (min(args.policy_noise, args.noise_clip) < 0, "policy_noise and noise_clip must be >= 0"),
        (min(args.policy_frequency, args.log_frequency) <= 0,
         "policy_frequency and log_frequency must be positive"),
        (args.torch_threads <= 0, "torch_threads must be positive"),
        (args.hidden_size <= 0, "hidden_size must be positive"),
    ]
    for bad, message in problems:
        if bad:
            fail(message)


def saved_policy(saved: dict, args: Args, env: gym.Env, device: torch.device):
    """The deterministic actor μ_θ in a model.pt."""
    actor = Actor(env.observation_space.shape[0], env.action_space, args.hidden_size).to(device)
    actor.load_state_dict(saved["actor"])
    return lambda obs: actor(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()


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
