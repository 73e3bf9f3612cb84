"""REINFORCE: Monte-Carlo policy gradient with reward-to-go and a learned baseline, for Discrete and
Box actions.

Paper: Williams, "Simple Statistical Gradient-Following Algorithms for Connectionist Reinforcement
Learning", Machine Learning 8, 1992 (REINFORCE, and its reinforcement baseline); the learned
state-value baseline as in Sutton and Barto, "Reinforcement Learning: An Introduction", 2nd ed.,
Section 13.4.
Lecture 7, "Recap: Policy Gradient" (REINFORCE is the first algorithm it lists), and its A3C slide's
gradient ∇_θ J(π_θ) = E_τ[Σ_t ∇_θ log π_θ(a_t|s_t) A(s_t, a_t)], with the reward-to-go minus a
baseline as the A here.

The lecture's steps, as labelled in the code below:
  REINF-1  policy π_θ(a|s) (softmax for Discrete, Gaussian for Box actions) and, with the baseline
           on (the default), a state-value network V_φ(s)
  REINF-2  play num_episodes whole episodes with π_θ, one after the other: Monte Carlo, the
           episode's own rewards score each action, no value function is needed for that
  REINF-3  reward-to-go G_t = r_t + γ r_{t+1} + … to the episode's end: an action cannot change the
           rewards that came before it, so leaving them out removes noise, not signal. A time
           limit's cut is not the end of the task: with the baseline, G_t bootstraps from
           γ V_φ(final observation) there; without it, the cut return is used as it is, a biased
           return for the states near the cut, which lacks all that would have come after (too
           small where rewards are positive, as in CartPole; see reward_to_go)
  REINF-4  baseline: advantages Â_t = G_t − V_φ(s_t), and V_φ fitted by a plain regression on G_t.
           Since E_a~π[∇_θ log π_θ(a|s)] = ∇_θ Σ_a π_θ(a|s) = ∇_θ 1 = 0 (an integral for Box
           actions), subtracting any b(s) that does not depend on the action leaves the gradient's
           expectation as it is: no bias.
           What it changes is the variance: it removes the part of G_t that the state alone
           explains, so a good action in a bad state gets a positive Â, and a bad action in a good
           state a negative one
  REINF-5  loss −mean_t log π_θ(a_t|s_t) Â_t (Â_t a constant), one Adam step per batch of episodes:
           its gradient estimates −∇_θ J(θ), so the step makes the actions with Â_t > 0 more
           probable

Two common choices, made here too: the exact gradient of the discounted objective has a factor γ^t
in front of each step, left out here (with it, the late steps of an episode would barely count);
and the advantages are normalized to mean 0, std 1 per batch (norm_adv), which subtracts a constant
baseline of its own (the batch's mean) and rescales the step. `--no-baseline --no-norm-adv` gives
the estimator without any baseline, Williams' REINFORCE with the reward-to-go, to see how much
noisier it is.

Reading order: the per-env defaults and the settings (Args), the policy and the baseline, the batch
of episodes, the reward-to-go and the update, the normalization of observations and rewards, then
train(), the loop that plays the episodes and calls them. Everything under "Bookkeeping" at the
bottom (filling in the per-env defaults, the run folder, logs, errors, evaluation, Ctrl-C) can be
skipped on a first reading.

Run:
  python reinforce.py                            # CartPole-v1, 500k steps
  python reinforce.py --env-id Pendulum-v1       # 1M steps, its own defaults from ENV_DEFAULTS
  python reinforce.py --env-id HalfCheetah-v5    # 1M steps, the MuJoCo row of ENV_DEFAULTS
                                                 # (Hopper, Walker2d, Ant, Swimmer, Humanoid too)
  python reinforce.py --no-baseline --no-norm-adv    # the plain estimator, without any baseline
  python reinforce.py --help
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
    # ours, chosen by reasoning, not tuned (README: how the defaults were chosen)
    "CartPole-v1": dict(total_timesteps=500_000, num_episodes=8, gamma=0.99, learning_rate=2e-3,
                        norm_obs=False, norm_reward=True, norm_adv=True, log_std_init=0.0),
    # ours, chosen by reasoning, with γ as RL Zoo's A2C on Pendulum-v1; 2 episodes a batch, not 4,
    # since issue 27 (README: how the defaults were chosen)
    "Pendulum-v1": dict(total_timesteps=1_000_000, num_episodes=2, gamma=0.9, learning_rate=3e-3,
                        norm_obs=False, norm_reward=True, norm_adv=True, log_std_init=0.0),
    # Not tuned here, and no published REINFORCE row for MuJoCo exists: Spinning Up's VPG
    # defaults (a policy gradient with a learned baseline), mapped: its 4,000 steps a batch as 4
    # whole episodes (4,000 steps once the episodes reach MuJoCo's 1,000-step limit, fewer before),
    # γ 0.99, policy Adam 3e-4, log σ starting at −0.5, advantages normalized, no normalization of
    # observations or rewards, 64-64 tanh (the default). Its λ 0.97 has no counterpart (the
    # reward-to-go is λ = 1) and its critic's own Adam 1e-3 × 80 steps neither (the baseline takes
    # the policy's one step); annealed as on the other rows, bound_mean ours; 1M steps as the other
    # on-policy scripts
    "MuJoCo": dict(total_timesteps=1_000_000, num_episodes=4, gamma=0.99, learning_rate=3e-4,
                   norm_obs=False, norm_reward=False, norm_adv=True, log_std_init=-0.5),
}
SHARED_ROWS = {"MuJoCo": ("Hopper", "HalfCheetah", "Walker2d", "Ant", "Swimmer", "Humanoid")}
TUNED_ON = {gym.spaces.Discrete: "CartPole-v1", gym.spaces.Box: "Pendulum-v1"}


@dataclass
class Args:
    env_id: str = "CartPole-v1"
    """Gymnasium environment id (Discrete or Box actions, flat Box observations)"""
    seed: int = 1
    """seed of random, numpy, torch and the environment"""
    total_timesteps: int = None
    """environment steps to train for (per-env default: ENV_DEFAULTS)"""
    cuda: bool = True
    """use CUDA when it is available"""
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
    """write the trained weights and the normalization statistics to model.pt"""
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of the experiment, in the run folder's name {env_id}__{exp_name}__{seed}__{time}"""

    learning_rate: float = None
    """Adam step size α (decays linearly to 0 when anneal_lr; per-env default: ENV_DEFAULTS)"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over training"""
    num_episodes: int = None
    """whole episodes played (one after the other, on one env) for each update (per-env default:
    ENV_DEFAULTS)"""
    gamma: float = None
    """discount factor γ (per-env default: ENV_DEFAULTS)"""
    baseline: bool = True
    """learn a state-value baseline V_φ(s), subtract it from the returns and bootstrap time-limit
    cuts from it"""
    hidden_size: int = 64
    """units in each of the two hidden layers of the policy and of the baseline"""
    log_std_init: float = None
    """initial log standard deviation of the Gaussian policy (Box actions; per-env default:
    ENV_DEFAULTS)"""
    bound_mean: bool = True
    """Box actions: keep the Gaussian's mean inside the action bounds (GaussianActor.bound_mean)"""
    norm_obs: bool = None
    """normalize observations by their running mean and std (per-env default: ENV_DEFAULTS)"""
    norm_reward: bool = None
    """divide rewards by the running std of the discounted return (per-env default: ENV_DEFAULTS)"""
    norm_adv: bool = None
    """normalize the advantages of each batch to mean 0, std 1 (per-env default: ENV_DEFAULTS)"""
    log_frequency: int = 2_000
    """environment steps between two rows of metrics.csv"""
    settings_row: tyro.conf.Suppress[dict | None] = None
    """not a setting: the row of ENV_DEFAULTS that the per-env settings came from, as args.json
    records it: {"row", "tuned_on", "borrowed"} (with_env_defaults fills it in)"""


# --------------------------------------------------------------------------------------------------
# The policy, the baseline, the batch of episodes, the reward-to-go and the update
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
    so the gradient of REINF-5) is that of the unclipped sample a ~ N(μ, σ²), the one the policy
    really drew: the Gaussian's log-probability stays exact and cheap, and the clipping is part of
    the environment."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_size: int, log_std_init: float):
        super().__init__()
        self.mean = mlp(obs_dim, action_dim, hidden_size, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        self.register_buffer("center", None)  # set by bound_mean
        self.register_buffer("half_width", None)

    def bound_mean(self, low: np.ndarray, high: np.ndarray):
        """μ_θ(s) = c + h · tanh(net(s)) from now on, with c and h the center and half-width of the
        finite action bounds [low, high]. Without it the mean can drift far outside them (Pendulum's
        [-2, 2]): every sample is then clipped to the same bound, the returns carry no information
        about the action, and learning stalls. Only the mean is squashed; the sample a ~ N(μ, σ²)
        and its log-probability stay."""
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


class Baseline(nn.Module):
    """V_φ(s), the baseline of REINF-4: an estimate of the return from s, whatever the action."""

    def __init__(self, obs_dim: int, hidden_size: int):
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden_size, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def env_actions(actions: np.ndarray, action_space: gym.Space) -> np.ndarray:
    """What the env gets: Gaussian samples clipped into the Box bounds (see GaussianActor)."""
    if isinstance(action_space, gym.spaces.Box):
        return np.clip(actions, action_space.low, action_space.high)
    return actions


@torch.no_grad()
def value_of(baseline: nn.Module, obs: np.ndarray, device: torch.device) -> float:
    """V_φ(s) of one observation, as a number: a constant, no gradient flows back."""
    return float(baseline(torch.as_tensor(obs, device=device)))


class EpisodeBatch:
    """What REINF-2 collects: every step of the batch's whole episodes, one after the other."""

    def __init__(self):
        self.obs, self.actions, self.rewards = [], [], []
        self.terminated, self.truncated, self.final_values = [], [], []

    def add(self, obs, action, reward: float, terminated: bool, truncated: bool,
            final_value: float):
        """One step; final_value is what REINF-3 bootstraps from if a time limit cut the episode."""
        columns = (self.obs, self.actions, self.rewards, self.terminated, self.truncated,
                   self.final_values)
        for steps, value in zip(columns, (obs, action, reward, terminated, truncated, final_value)):
            steps.append(value)

    def arrays(self) -> tuple:
        """(rewards, terminated, truncated, final_values) as numpy arrays, one entry per step."""
        return (np.array(self.rewards, dtype=np.float32), np.array(self.terminated),
                np.array(self.truncated), np.array(self.final_values, dtype=np.float32))

    def tensors(self, returns: np.ndarray, device: torch.device) -> tuple:
        """The batch as tensors (s, a, G) for the update."""
        columns = (self.obs, self.actions, returns)
        return tuple(torch.as_tensor(np.array(a), device=device) for a in columns)


def reward_to_go(rewards, terminated, truncated, final_values, gamma: float) -> np.ndarray:
    """REINF-3: G_t = r_t + γ G_{t+1} inside an episode, on arrays of one entry per step of
    episodes laid end to end (the batch's last step ends an episode). At an episode's last step the
    sum stops:
      terminated (the MDP ended):        G_t = r_t                       nothing comes after
      truncated (a time limit cut it):   G_t = r_t + γ final_values[t]   what would have come after
    train() gives final_values[t] = V_φ(final observation) with the baseline, and 0 without: the
    cut return is then used as it is, and misses γ^k × the return after the cut for a state k steps
    before it (too small where rewards are positive, as in CartPole; too large where they are
    negative, as in Pendulum)."""
    returns = np.zeros(len(rewards), dtype=np.float32)
    future = 0.0
    for t in reversed(range(len(rewards))):
        if terminated[t]:
            future = 0.0
        elif truncated[t]:
            future = final_values[t]
        future = rewards[t] + gamma * future
        returns[t] = future
    return returns


def update(actor: nn.Module, baseline, optimizer, batch, norm_adv: bool):
    """REINF-4 and REINF-5 on one batch: one Adam step on the policy's loss and the baseline's
    together (two networks without a shared parameter: the sum gives each its own gradient).
    baseline is None when it is off. Returns the policy loss, the baseline's loss (0 without one)
    and the policy's mean entropy."""
    obs, actions, returns = batch
    log_probs, entropy = actor.log_prob_entropy(obs, actions)
    if baseline is None:
        advantages, value_loss = returns, torch.zeros((), device=returns.device)
    else:
        # REINF-4: Â_t = G_t − V_φ(s_t). Easy to overlook: V is a constant in the policy's loss
        # (detach: no gradient through it; fitted on the earlier batches only, it does not depend
        # on this batch's actions: no bias). V_φ is regressed on G_t, a plain mean-squared error
        values = baseline(obs)
        advantages = returns - values.detach()
        value_loss = F.mse_loss(values, returns)
    if norm_adv and len(advantages) > 1:  # std() of a single sample is NaN: leave it as it is
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    # REINF-5: −mean log π_θ(a|s) Â. A mean over the batch's steps, not a sum per episode: a
    # positive factor per batch, the same direction
    policy_loss = -(log_probs * advantages).mean()
    optimizer.zero_grad()
    (policy_loss + value_loss).backward()
    optimizer.step()
    return policy_loss, value_loss, entropy.mean()


# --------------------------------------------------------------------------------------------------
# Normalization of observations and rewards (the lecture's "observation and reward scaling" trick)
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


class Normalizer:
    """For one env: observations → clip((s − mean) / std, ±10) with the running mean and std of the
    training observations; rewards → r / std(R), R ← γR + r the running discounted return (SB3's
    VecNormalize). The statistics are saved in model.pt and used frozen (update=False) by the
    evaluation."""

    def __init__(self, obs_dim: int, gamma: float, norm_obs: bool, norm_reward: bool):
        self.norm_obs, self.norm_reward, self.gamma = norm_obs, norm_reward, gamma
        self.obs_rms, self.return_rms = RunningMeanStd((obs_dim,)), RunningMeanStd()
        self.discounted_return = 0.0

    def observation(self, obs: np.ndarray, update: bool) -> np.ndarray:
        if not self.norm_obs:
            return np.asarray(obs, dtype=np.float32)
        if update:
            self.obs_rms.update(obs[None])
        normalized = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)
        return np.clip(normalized, -10, 10).astype(np.float32)

    def reward(self, reward: float, done: bool) -> float:
        if not self.norm_reward:
            return float(reward)
        self.discounted_return = self.discounted_return * self.gamma + reward
        self.return_rms.update(np.array([self.discounted_return]))
        if done:
            self.discounted_return = 0.0
        return float(np.clip(reward / np.sqrt(self.return_rms.var + 1e-8), -10, 10))

    def state_dict(self) -> dict:
        return {"obs_rms": self.obs_rms.state_dict(), "return_rms": self.return_rms.state_dict()}

    def load_state_dict(self, state: dict):
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.return_rms.load_state_dict(state["return_rms"])


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    env = make_env(args.env_id)
    args = with_env_defaults(args, env)
    check_args(args, env)
    seed_everything(args.seed, args)
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")

    action_space, obs_dim = env.action_space, env.observation_space.shape[0]
    discrete = isinstance(action_space, gym.spaces.Discrete)
    # REINF-1: the policy π_θ (softmax or Gaussian) and, if on, the baseline V_φ, its own network
    actor_class = CategoricalActor if discrete else GaussianActor
    actor = actor_class(obs_dim, int(action_space.n) if discrete else action_space.shape[0],
                        args.hidden_size, args.log_std_init).to(device)
    if not discrete and args.bound_mean:
        actor.bound_mean(action_space.low, action_space.high)
    baseline = Baseline(obs_dim, args.hidden_size).to(device) if args.baseline else None
    parameters = list(actor.parameters()) + (list(baseline.parameters()) if baseline else [])
    optimizer = torch.optim.Adam(parameters, lr=args.learning_rate, eps=1e-5, fused=True)
    normalizer = Normalizer(obs_dim, args.gamma, args.norm_obs, args.norm_reward)

    @torch.no_grad()
    def deterministic_policy(obs):  # the evaluation's: mean or most probable action
        obs = torch.as_tensor(normalizer.observation(obs, update=False), device=device)
        return env_actions(actor.mode(obs).cpu().numpy(), action_space)

    metric_names = ["policy_loss", "value_loss", "entropy", "learning_rate"]
    with Run(args, env, device, args.total_timesteps, metric_names) as run:
        run.save(actor=actor, normalizer=normalizer, **({"baseline": baseline} if baseline else {}))
        batch, episodes, last_log_step = EpisodeBatch(), 0, 0
        obs, _ = env.reset(seed=args.seed)
        env.action_space.seed(args.seed)
        obs = normalizer.observation(obs, update=True)
        # The steps of a batch still unfinished when the budget runs out are never learned from
        for global_step in range(1, args.total_timesteps + 1):
            # REINF-2: a ~ π_θ(·|s), played to the episode's end
            with torch.no_grad():
                action = actor.sample(torch.as_tensor(obs[None], device=device))[0][0].cpu().numpy()
            next_obs, reward, terminated, truncated, _ = env.step(env_actions(action, action_space))
            run.rewards(global_step, reward, terminated or truncated)
            cut = truncated and not terminated  # a time limit, not the MDP, ended the episode
            # REINF-3, easy to overlook: where a time limit cut the episode, the return goes on
            # after next_obs, the real final observation (a plain env does not reset by itself):
            # with the baseline, reward_to_go adds γ V_φ(next_obs) for it. Without, 0: the cut
            # return as it is, biased (too small in CartPole) for the states up to about 1/(1 − γ)
            # steps before the cut
            final_value = 0.0
            if cut and baseline is not None:
                final_obs = normalizer.observation(next_obs, update=False)
                final_value = value_of(baseline, final_obs, device)
            scaled_reward = normalizer.reward(reward, terminated or truncated)
            batch.add(obs, action, scaled_reward, terminated, cut, final_value)
            # Easy to overlook: advance obs, after an episode's end to the next episode's start
            if terminated or truncated:
                next_obs, _ = env.reset()
                episodes += 1
            obs = normalizer.observation(next_obs, update=True)
            if not (terminated or truncated) or episodes % args.num_episodes != 0:
                continue

            # A batch of num_episodes whole episodes is complete: REINF-3, every step's reward-to-go
            returns = reward_to_go(*batch.arrays(), args.gamma)
            if args.anneal_lr:
                fraction_left = 1.0 - global_step / args.total_timesteps
                optimizer.param_groups[0]["lr"] = args.learning_rate * fraction_left
            # REINF-4 and REINF-5: advantages, then one gradient step on the summed losses
            losses = update(actor, baseline, optimizer, batch.tensors(returns, device),
                            args.norm_adv)
            batch = EpisodeBatch()
            if global_step - last_log_step >= args.log_frequency:
                last_log_step = global_step
                run.log(global_step, *(loss.item() for loss in losses),
                        optimizer.param_groups[0]["lr"])
            run.curve(global_step, deterministic_policy)  # eval_curve.csv, every eval_every steps
        return run.evaluate(global_step, deterministic_policy)


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
        (args.total_timesteps <= 0, "total_timesteps must be positive"),
        (args.learning_rate <= 0, "learning_rate must be positive"),
        (not 0 <= args.gamma <= 1, "gamma must lie in [0, 1]"),
        (args.num_episodes <= 0, "num_episodes must be positive"),
        (args.log_frequency <= 0, "log_frequency must be positive"),
        (args.torch_threads <= 0, "torch_threads must be positive"),
        (args.hidden_size <= 0, "hidden_size must be positive"),
    ]
    for bad, message in problems:
        if bad:
            fail(message)


def saved_policy(saved: dict, args: Args, env: gym.Env, device: torch.device):
    """The deterministic policy (mean or most probable action) of the actor in a model.pt, with
    its observation normalization frozen."""
    obs_dim = env.observation_space.shape[0]
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    actor_class = CategoricalActor if discrete else GaussianActor
    action_dim = int(env.action_space.n) if discrete else env.action_space.shape[0]
    actor = actor_class(obs_dim, action_dim, args.hidden_size,
                        args.log_std_init).to(device)
    if not discrete and args.bound_mean:
        actor.bound_mean(env.action_space.low, env.action_space.high)
    actor.load_state_dict(saved["actor"])
    normalizer = Normalizer(obs_dim, args.gamma, args.norm_obs, args.norm_reward)
    normalizer.load_state_dict(saved["normalizer"])

    def policy(obs):
        normalized = normalizer.observation(obs, update=False)
        action = actor.mode(torch.as_tensor(normalized, device=device))
        return env_actions(action.cpu().numpy(), env.action_space)
    return policy


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
