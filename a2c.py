"""A2C: synchronous advantage actor-critic, for Discrete and Box actions.

Paper: Mnih et al., "Asynchronous Methods for Deep Reinforcement Learning", ICML 2016 (A2C is its
synchronous variant, as in OpenAI Baselines); GAE from Schulman et al., "High-Dimensional Continuous Control
Using Generalized Advantage Estimation", ICLR 2016.
policy-based-rl.md, A2C slides; steps from lecture/PSEUDOCODE.md:
  A2C-1  actor π_θ(a|s) (softmax for Discrete, Gaussian for Box actions) and critic V_φ(s)
  A2C-2  advantages from r_t + γ V_φ(s_{t+1}) − V_φ(s_t), over num_steps steps of num_envs environments by
         GAE(λ) (λ = 1: the n-step advantage)
  A2C-3  actor loss −log π_θ(a_t|s_t) Â_t (Â_t a constant), minus an optional entropy bonus
  A2C-4  critic loss (R̂_t − V_φ(s_t))²; one synchronous gradient step per rollout, gradient-norm clipping

Run:
  python a2c.py                              # CartPole-v1, 300k steps
  python a2c.py --env-id Pendulum-v1         # 500k steps, its own defaults from ENV_DEFAULTS
  python a2c.py --help
"""

import csv
import difflib
import importlib
import json
import os
import random
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

# Settings whose good value depends on the env. A setting left at None on the command line takes its value
# from this table (other envs: from the tuned env with the same kind of action space, see TUNED_ON); the
# resolved values are printed at the start and written to args.json.
ENV_DEFAULTS = {
    # RL Baselines3 Zoo's A2C for CartPole-v1: 8 envs × 5 steps, γ 0.99, λ 1 (n-step advantages), no
    # entropy bonus; the Zoo's RMSprop at 7e-4 becomes Adam at 1e-3, decayed linearly.
    "CartPole-v1": dict(total_timesteps=300_000, num_envs=8, num_steps=5, gamma=0.99, gae_lambda=1.0,
                        learning_rate=1e-3, norm_obs=False, norm_reward=False, norm_adv=True),
    # RL Zoo's A2C for Pendulum-v1: 8 envs × 8 steps, γ 0.9, λ 0.9, normalized rewards, advantages not
    # normalized (SB3's A2C default); the Zoo adds gSDE exploration and trains for 1M steps. With a plain
    # Gaussian we need a larger step (3e-3; at 1e-3 nothing was learned in 300k steps) and the mean kept
    # inside the bounds (bound_mean). Measured on the failing seeds, with bound_mean: normalizing each
    # 64-sample rollout's advantages kept seed 2 near -1100 for all 500k steps (without it: -173), and
    # normalizing observations kept seed 1 there (without it: takes off after ~100k steps).
    "Pendulum-v1": dict(total_timesteps=500_000, num_envs=8, num_steps=8, gamma=0.9, gae_lambda=0.9,
                        learning_rate=3e-3, norm_obs=False, norm_reward=True, norm_adv=False),
}
TUNED_ON = {gym.spaces.Discrete: "CartPole-v1", gym.spaces.Box: "Pendulum-v1"}


@dataclass
class Args:
    env_id: str = "CartPole-v1"
    """Gymnasium environment id (Discrete or Box actions, flat Box observations)"""
    seed: int = 1
    """seed of random, numpy, torch and the environment"""
    total_timesteps: Optional[int] = None
    """environment steps to train for (None: per-env default, see ENV_DEFAULTS)"""
    cuda: bool = True
    """use CUDA when it is available"""
    torch_deterministic: bool = True
    """use deterministic torch kernels"""
    torch_threads: int = 1
    """CPU threads for torch (one is fastest for these small networks)"""
    eval_episodes: int = 10
    """episodes of the final deterministic (mean or greedy action) evaluation"""
    run_dir: str = "runs"
    """folder under which each run makes its own folder"""
    save_model: bool = True
    """write the trained weights and the normalization statistics to model.pt"""

    learning_rate: Optional[float] = None
    """Adam step size α (decays linearly to 0 when anneal_lr) (None: per-env default)"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over training"""
    num_envs: Optional[int] = None
    """environments stepped in parallel (None: per-env default)"""
    num_steps: Optional[int] = None
    """steps of each environment per rollout; a rollout holds num_envs * num_steps samples (None: per-env default)"""
    gamma: Optional[float] = None
    """discount factor γ (None: per-env default)"""
    gae_lambda: Optional[float] = None
    """λ of GAE(λ): 0 gives the one-step TD advantage, 1 the n-step one to the rollout's end (None: per-env default)"""
    hidden_size: int = 64
    """units in each of the two hidden layers of the actor and of the critic"""
    log_std_init: float = 0.0
    """initial log standard deviation of the Gaussian policy (Box actions)"""
    bound_mean: bool = True
    """Box actions: keep the Gaussian's mean inside the action bounds (see GaussianActor.bound_mean)"""
    norm_obs: Optional[bool] = None
    """normalize observations by their running mean and std (None: per-env default)"""
    norm_reward: Optional[bool] = None
    """divide rewards by the running std of the discounted return (None: per-env default)"""
    norm_adv: Optional[bool] = None
    """normalize the advantages of each rollout to mean 0, std 1 (None: per-env default)"""
    ent_coef: float = 0.0
    """weight of the entropy bonus"""
    vf_coef: float = 0.5
    """weight of the critic's loss"""
    max_grad_norm: float = 0.5
    """global gradient-norm clipping threshold"""
    log_frequency: int = 2_000
    """environment steps between two rows of metrics.csv"""


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
    gradient of A2C-3) is that of the unclipped sample a ~ N(μ, σ²), the one the policy really drew. This is the
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
    """A2C-2: GAE(λ) advantages and the critic's targets; arrays of shape (num_steps, num_envs).

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


# ---------------------------------------------------------------------------------------------------
# Normalization of observations and rewards (the lecture's "observation and reward scaling" trick)
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


class Normalizer:
    """Observations → clip((s − mean) / std, ±10) with the running mean and std of the training observations;
    rewards → r / std(R), R ← γR + r the running discounted return of each env (SB3's VecNormalize).
    Scaling rewards keeps the critic's targets near 1 whatever the env's reward scale. The statistics are
    saved in model.pt and used frozen (update=False) by the evaluation, which sees the same inputs as training."""

    def __init__(self, obs_dim: int, num_envs: int, gamma: float, norm_obs: bool, norm_reward: bool):
        self.norm_obs, self.norm_reward, self.gamma = norm_obs, norm_reward, gamma
        self.obs_rms, self.return_rms = RunningMeanStd((obs_dim,)), RunningMeanStd()
        self.discounted_return = np.zeros(num_envs)

    def observation(self, obs: np.ndarray, update: bool) -> np.ndarray:
        if not self.norm_obs:
            return obs.astype(np.float32)
        if update:
            self.obs_rms.update(obs)
        return np.clip((obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8), -10, 10).astype(np.float32)

    def reward(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        if not self.norm_reward:
            return reward.astype(np.float32)
        self.discounted_return = self.discounted_return * self.gamma + reward
        self.return_rms.update(self.discounted_return)
        self.discounted_return[done] = 0.0
        return np.clip(reward / np.sqrt(self.return_rms.var + 1e-8), -10, 10).astype(np.float32)

    def state_dict(self) -> dict:
        return {"obs_rms": self.obs_rms.state_dict(), "return_rms": self.return_rms.state_dict()}

    def load_state_dict(self, state: dict):
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.return_rms.load_state_dict(state["return_rms"])


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
        (args.num_envs <= 0 or args.num_steps <= 0, "num_envs and num_steps must be positive"),
        (args.total_timesteps < args.num_envs * args.num_steps,
         "total_timesteps must be at least one rollout, num_envs * num_steps"),
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
def evaluate(actor: nn.Module, normalizer: Normalizer, args: Args, device: torch.device) -> list:
    """Deterministic policy (mean or most probable action) on a fresh environment, seeded apart from the
    training ones; observations normalized with the training statistics, frozen."""
    env = gym.make(args.env_id)
    returns = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + 10_000 + episode)
        done, episode_return = False, 0.0
        while not done:
            action = actor.mode(torch.as_tensor(normalizer.observation(obs, update=False), device=device))
            obs, reward, terminated, truncated, _ = env.step(env_actions(action.cpu().numpy(), env.action_space))
            episode_return += float(reward)
            done = terminated or truncated
        returns.append(episode_return)
    env.close()
    return returns


# ---------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    env = make_env(args.env_id)
    args = with_env_defaults(args, env)
    check_args(args, env)
    env.close()

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(args.torch_deterministic)
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")

    # Gymnasium 1.x vector envs reset an env whose episode ended on the *next* step by default. We ask for the
    # SAME_STEP mode instead: the step that ends an episode already returns the first observation of the next
    # one, and the real final observation arrives in info["final_obs"]. So every step of the rollout is a
    # real transition (none is wasted on a reset step), and on a truncation we can bootstrap from
    # V(final observation), the value of the state where the time limit cut the episode.
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(args.env_id) for _ in range(args.num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    action_space = envs.single_action_space
    obs_dim = envs.single_observation_space.shape[0]
    discrete = isinstance(action_space, gym.spaces.Discrete)
    action_shape = () if discrete else action_space.shape
    # A2C-1: the actor π_θ (softmax or Gaussian) and the critic V_φ, separate networks as on the slides
    actor_class = CategoricalActor if discrete else GaussianActor
    actor = actor_class(obs_dim, int(action_space.n) if discrete else action_shape[0], args.hidden_size,
                        args.log_std_init).to(device)
    if not discrete and args.bound_mean:
        actor.bound_mean(action_space.low, action_space.high)
    critic = Critic(obs_dim, args.hidden_size).to(device)
    parameters = list(actor.parameters()) + list(critic.parameters())
    optimizer = torch.optim.Adam(parameters, lr=args.learning_rate, eps=1e-5, fused=True)  # fused: one kernel
    normalizer = Normalizer(obs_dim, args.num_envs, args.gamma, args.norm_obs, args.norm_reward)

    # The rollout storage, preallocated: one row per step, one column per env
    shape = (args.num_steps, args.num_envs)
    obs_buf = np.zeros(shape + (obs_dim,), dtype=np.float32)
    actions_buf = np.zeros(shape + action_shape, dtype=np.int64 if discrete else np.float32)
    rewards_buf, values_buf = np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)
    final_values_buf = np.zeros(shape, dtype=np.float32)  # V(final observation) where a time limit hit
    terminated_buf, truncated_buf = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    batch_size = args.num_envs * args.num_steps
    num_iterations = args.total_timesteps // batch_size

    run_dir = make_run_folder(args)
    write_json(os.path.join(run_dir, "args.json"), asdict(args))
    episodes_file = open(os.path.join(run_dir, "episodes.csv"), "w", newline="")
    metrics_file = open(os.path.join(run_dir, "metrics.csv"), "w", newline="")
    episodes_log, metrics_log = csv.writer(episodes_file), csv.writer(metrics_file)
    episodes_log.writerow(["global_step", "episodic_return", "episodic_length", "wall_time"])
    metrics_log.writerow(["global_step", "policy_loss", "value_loss", "entropy", "learning_rate"])
    print(f"{SCRIPT} on {args.env_id}, seed {args.seed}, {num_iterations} rollouts of {args.num_envs} envs × "
          f"{args.num_steps} steps = {num_iterations * batch_size:,} steps, device {device}")

    start_time = last_print = time.time()
    recent_returns = deque(maxlen=10)
    policy_loss = value_loss = torch.tensor(float("nan"))
    global_step, last_log_step = 0, 0
    episode_returns, episode_lengths = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=np.int64)
    obs, _ = envs.reset(seed=args.seed)  # env i gets seed + i
    envs.action_space.seed(args.seed)
    obs = normalizer.observation(obs, update=True)
    try:
        for iteration in range(num_iterations):
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - iteration / num_iterations)

            # A2C-2 (data): run num_steps steps of every env with the current policy π_θ
            for step in range(args.num_steps):
                obs_buf[step] = obs
                with torch.no_grad():
                    obs_tensor = torch.as_tensor(obs, device=device)
                    actions, _ = actor.sample(obs_tensor)
                    values_buf[step] = critic(obs_tensor).cpu().numpy()
                actions = actions.cpu().numpy()
                actions_buf[step] = actions
                next_obs, rewards, terminated, truncated, info = envs.step(env_actions(actions, action_space))
                global_step += args.num_envs
                episode_returns += rewards
                episode_lengths += 1
                done = terminated | truncated
                rewards_buf[step] = normalizer.reward(rewards, done)
                terminated_buf[step], truncated_buf[step] = terminated, truncated & ~terminated
                obs = normalizer.observation(next_obs, update=True)  # of a finished env: its next episode's start
                if truncated_buf[step].any():  # bootstrap value of the real final observation
                    cut = truncated_buf[step]
                    final_obs = normalizer.observation(np.stack(info["final_obs"][cut]), update=False)
                    with torch.no_grad():
                        final_values_buf[step, cut] = critic(torch.as_tensor(final_obs, device=device)).cpu().numpy()
                for i in np.flatnonzero(done):
                    episodes_log.writerow([global_step, episode_returns[i], episode_lengths[i],
                                           round(time.time() - start_time, 3)])
                    recent_returns.append(episode_returns[i])
                    episode_returns[i], episode_lengths[i] = 0.0, 0
                if done.any():
                    episodes_file.flush()

            # A2C-2: GAE advantages and the critic's targets, from V(s_{t+1}) of each real successor:
            # the next row's value, V(final obs) where a time limit cut the episode, V(obs) after the last step
            with torch.no_grad():
                last_values = critic(torch.as_tensor(obs, device=device)).cpu().numpy()
            next_values = np.concatenate([values_buf[1:], last_values[None]])
            next_values = np.where(truncated_buf, final_values_buf, next_values)
            advantages, returns = compute_gae(rewards_buf, values_buf, next_values, terminated_buf,
                                              terminated_buf | truncated_buf, args.gamma, args.gae_lambda)

            b_obs = torch.as_tensor(obs_buf.reshape(batch_size, obs_dim), device=device)
            b_actions = torch.as_tensor(actions_buf.reshape((batch_size,) + action_shape), device=device)
            b_advantages = torch.as_tensor(advantages.reshape(batch_size), device=device)
            b_returns = torch.as_tensor(returns.reshape(batch_size), device=device)
            # A2C-3: actor loss −log π_θ(a|s) Â, the advantages constants (computed without gradient)
            new_log_probs, entropy = actor.log_prob_entropy(b_obs, b_actions)
            if args.norm_adv:
                b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)
            policy_loss = -(new_log_probs * b_advantages).mean()
            # A2C-4: critic loss (R̂ − V_φ(s))², then one synchronous gradient step on the whole rollout
            value_loss = F.mse_loss(critic(b_obs), b_returns)
            loss = policy_loss - args.ent_coef * entropy.mean() + args.vf_coef * value_loss
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, args.max_grad_norm)
            optimizer.step()

            if global_step - last_log_step >= args.log_frequency:
                last_log_step = global_step
                metrics_log.writerow([global_step, policy_loss.item(), value_loss.item(), entropy.mean().item(),
                                      optimizer.param_groups[0]["lr"]])
                metrics_file.flush()

            if time.time() - last_print > 2:
                last_print = time.time()
                mean_return = np.mean(recent_returns) if recent_returns else float("nan")
                print(f"step {global_step:>8,} | return (last 10) {mean_return:8.1f} | "
                      f"value loss {value_loss.item():.4f} | {global_step / (last_print - start_time):,.0f} steps/s")
    except KeyboardInterrupt:
        print(f"\ninterrupted at step {global_step:,}: saving the model and the logs so far")
        raise
    else:
        sps = global_step / (time.time() - start_time)
        returns = evaluate(actor, normalizer, args, device) if args.eval_episodes > 0 else []
        summary = {"mean": float(np.mean(returns)) if returns else float("nan"),
                   "std": float(np.std(returns)) if returns else float("nan"),
                   "returns": returns, "episodes": len(returns), "global_step": global_step,
                   "sps": sps, "wall_time": time.time() - start_time}
        write_json(os.path.join(run_dir, "eval.json"), summary)
        print(f"evaluation over {len(returns)} episodes: {summary['mean']:.1f} ± {summary['std']:.1f} "
              f"| {sps:,.0f} steps/s | {summary['wall_time']:.1f} s")
    finally:
        episodes_file.close()
        metrics_file.close()
        envs.close()
        if args.save_model:
            model = {"actor": actor.state_dict(), "critic": critic.state_dict(),
                     "normalizer": normalizer.state_dict(), "args": asdict(args), "global_step": global_step}
            write_atomically(os.path.join(run_dir, "model.pt"), lambda tmp: torch.save(model, tmp))
        print(f"run folder: {run_dir}")
    return {"eval_mean": summary["mean"], "eval_std": summary["std"], "global_step": global_step,
            "sps": sps, "run_dir": run_dir}


if __name__ == "__main__":
    try:
        train(tyro.cli(Args))
    except KeyboardInterrupt:
        sys.exit(130)
