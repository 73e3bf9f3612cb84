"""PPO: proximal policy optimization with the clipped objective, for Discrete and Box actions.

Paper: Schulman et al., "Proximal Policy Optimization Algorithms", 2017; GAE from Schulman et al.,
"High-Dimensional Continuous Control Using Generalized Advantage Estimation", ICLR 2016.
Lecture 7, "Algorithm 1 PPO-Clip" and the PPO slides.

The lecture's steps, as labelled in the code below:
  PPO-1  collect num_steps steps of num_envs environments with π_θk: fresh on-policy samples, used
         for a few epochs of updates and then thrown away
  PPO-2  rewards-to-go R̂_t (here the λ-returns Â_t + V(s_t)) as the critic's targets
  PPO-3  advantages Â_t by GAE(λ) with the current value function: λ trades the bias of
         bootstrapping from V (λ = 0) against the variance of long sums of sampled rewards (λ = 1)
  PPO-4  r_t(θ) = π_θ(a_t|s_t) / π_θk(a_t|s_t); maximize mean min(r_t Â_t, clip(r_t, 1−ε, 1+ε) Â_t)
         by update_epochs epochs of shuffled mini-batches of Adam, gradient-norm clipping, entropy
         bonus. The clip takes away any gain from pushing r_t out of [1−ε, 1+ε], so many gradient
         steps on one rollout keep π_θ close to π_θk: a cheap stand-in for TRPO's trust region
  PPO-5  fit V_φ by regression on R̂_t (mean-squared error), in the same gradient steps as PPO-4

Reading order: the per-env defaults and the settings (Args), the actor and the critic, the rollout
buffer, GAE and the update, the normalization of observations and rewards, then train(), the loop
that collects each rollout and calls them. Everything under "Bookkeeping" at the bottom (filling in
the per-env defaults, the run folder, logs, errors, evaluation, Ctrl-C) can be skipped on a first
reading.

The actor and the critic read flat observations with two tanh hidden layers, and images (MinAtar's
grids, Atari's frames) with the convolutional torso of Pixels.

Run:
  python ppo.py                              # CartPole-v1, 100k steps
  python ppo.py --env-id Pendulum-v1         # 150k steps, its own defaults from ENV_DEFAULTS
  python ppo.py --env-id HalfCheetah-v5      # 1M steps, the MuJoCo row of ENV_DEFAULTS
                                             # (Hopper, Walker2d, Ant, Swimmer, Humanoid too)
  python ppo.py --env-id MinAtar/Breakout-v1 # pip install minatar
  python ppo.py --env-id ALE/Pong-v5         # pip install "gymnasium[atari,other]"; a GPU: --cuda
  python ppo.py --help
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
# value from this table: the env's own row, or the row its task shares (SHARED_ROWS: the MuJoCo row
# for its tasks of any version, Hopper-v5, Hopper-v4, ...; every MinAtar game takes "MinAtar",
# every Atari game "Atari"), or else, with a warning, the row of the tuned env with the same kind of
# action space (TUNED_ON). The resolved values are printed at the start and written to args.json.
ENV_DEFAULTS = {
    # RL Zoo, but 10 epochs instead of its 20 (README: how the defaults were chosen) and ε 0.2
    # constant (the Zoo anneals it)
    "CartPole-v1": dict(total_timesteps=99_840, num_envs=8, num_steps=32, gamma=0.98,
                        gae_lambda=0.8, update_epochs=10, num_minibatches=1, learning_rate=1e-3,
                        norm_obs=False, norm_reward=False, clip_coef=0.2, ent_coef=0.0),
    # RL Zoo, with plain Gaussian noise instead of its gSDE exploration
    "Pendulum-v1": dict(total_timesteps=147_456, num_envs=4, num_steps=1024, gamma=0.9,
                        gae_lambda=0.95, update_epochs=10, num_minibatches=64, learning_rate=1e-3,
                        norm_obs=False, norm_reward=False, clip_coef=0.2, ent_coef=0.0),
    # Not tuned here. The PPO paper's Table 3: 2048 steps a rollout, Adam 3e-4, 10 epochs of
    # mini-batches of 64 (2048 / 32), γ 0.99, λ 0.95, ε 0.2, 1M steps; CleanRL's
    # ppo_continuous_action.py: 1 env, the learning rate annealed, 488 rollouts (its 1M // 2048),
    # no entropy bonus, observations normalized and rewards scaled, both clipped at ±10. The
    # settings not here mean the same as on Pendulum-v1 and keep their defaults, which are the
    # paper's and CleanRL's: 64-64 tanh, log σ starting at 0, vf_coef 0.5, max_grad_norm 0.5,
    # advantages normalized
    "MuJoCo": dict(total_timesteps=999_424, num_envs=1, num_steps=2048, gamma=0.99,
                   gae_lambda=0.95, update_epochs=10, num_minibatches=32, learning_rate=3e-4,
                   norm_obs=True, norm_reward=True, clip_coef=0.2, ent_coef=0.0),
    # Not tuned: ours, the Atari row below with 1M steps (976 rollouts), a fifth of the MinAtar
    # paper's 5M
    "MinAtar": dict(total_timesteps=999_424, num_envs=8, num_steps=128, gamma=0.99,
                    gae_lambda=0.95, update_epochs=4, num_minibatches=4, learning_rate=2.5e-4,
                    norm_obs=False, norm_reward=False, clip_coef=0.1, ent_coef=0.01),
    # Not tuned here. The PPO paper's Atari settings (Table 5): 8 envs of 128 steps, Adam 2.5e-4
    # annealed, mini-batches of 256 (1024 / 4), γ 0.99, λ 0.95, ε 0.1, entropy bonus 0.01, 10M
    # steps (its 40M frames; here 9,765 rollouts); the RL Zoo's (and CleanRL's) 4 epochs instead of
    # the paper's 3, and their vf_coef 0.5 (the paper's 1) and max_grad_norm 0.5, which are the
    # defaults in Args. The paper and the Zoo anneal ε with the learning rate: here it stays 0.1.
    # Rewards are clipped to their sign by make_env: neither observations nor rewards normalized
    "Atari": dict(total_timesteps=9_999_360, num_envs=8, num_steps=128, gamma=0.99,
                  gae_lambda=0.95, update_epochs=4, num_minibatches=4, learning_rate=2.5e-4,
                  norm_obs=False, norm_reward=False, clip_coef=0.1, ent_coef=0.01),
}
SHARED_ROWS = {"MuJoCo": ("Hopper", "HalfCheetah", "Walker2d", "Ant", "Swimmer", "Humanoid"),
               "MinAtar": ("MinAtar/",), "Atari": ("ALE/",)}
TUNED_ON = {gym.spaces.Discrete: "CartPole-v1", gym.spaces.Box: "Pendulum-v1"}


@dataclass
class Args:
    env_id: str = "CartPole-v1"
    """Gymnasium environment id (Discrete or Box actions; flat Box or image observations)"""
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
    num_envs: int = None
    """environments stepped in parallel (per-env default: ENV_DEFAULTS)"""
    num_steps: int = None
    """steps of each environment per rollout; a rollout holds num_envs * num_steps samples
    (per-env default: ENV_DEFAULTS)"""
    gamma: float = None
    """discount factor γ (per-env default: ENV_DEFAULTS)"""
    gae_lambda: float = None
    """λ of GAE(λ): 0 gives the one-step TD advantage, 1 the n-step one to the rollout's end
    (per-env default: ENV_DEFAULTS)"""
    hidden_size: int = 64
    """units in each of the two hidden layers of the actor and of the critic, for flat
    observations (images: Pixels)"""
    log_std_init: float = 0.0
    """initial log standard deviation of the Gaussian policy (Box actions)"""
    norm_obs: bool = None
    """normalize observations by their running mean and std (flat observations only; per-env
    default: ENV_DEFAULTS)"""
    norm_reward: bool = None
    """divide rewards by the running std of the discounted return (per-env default:
    ENV_DEFAULTS)"""
    norm_adv: bool = True
    """normalize the advantages of each mini-batch to mean 0, std 1"""
    ent_coef: float = None
    """weight of the entropy bonus (per-env default: ENV_DEFAULTS)"""
    vf_coef: float = 0.5
    """weight of the critic's loss"""
    max_grad_norm: float = 0.5
    """global gradient-norm clipping threshold"""
    update_epochs: int = None
    """passes over each rollout (PPO-4) (per-env default: ENV_DEFAULTS)"""
    num_minibatches: int = None
    """mini-batches per pass over the rollout (per-env default: ENV_DEFAULTS)"""
    clip_coef: float = None
    """ε of the clipped objective: the ratio is kept within [1 − ε, 1 + ε] (per-env default:
    ENV_DEFAULTS)"""
    log_frequency: int = 2_000
    """environment steps between two rows of metrics.csv"""
    settings_row: tyro.conf.Suppress[dict | None] = None
    """not a setting: the row of ENV_DEFAULTS that the per-env settings came from, as args.json
    records it: {"row", "tuned_on", "borrowed"} (with_env_defaults fills it in)"""


# --------------------------------------------------------------------------------------------------
# The actor, the critic, the rollout buffer and the update
# --------------------------------------------------------------------------------------------------
class Pixels(nn.Module):
    """The torso for images. Atari's stacks of 4 frames of 84×84 (channels first) take the Nature
    DQN's layers (Mnih et al. 2015: three convolutions, then 512 units); MinAtar's 10×10 grids of C
    channels (channels last, moved first here) the MinAtar paper's (Young & Tian 2019: one 3×3
    convolution with 16 channels, then 128 units). The pixels are scaled to [0, 1] first."""

    def __init__(self, observation_space: gym.spaces.Box, linear=nn.Linear):
        super().__init__()
        shape = observation_space.shape
        self.channels_last = shape[:2] == (10, 10)  # MinAtar's (10, 10, C), not Atari's (4, 84, 84)
        channels, height, width = (shape[-1], *shape[:2]) if self.channels_last else shape
        self.scale = float(observation_space.high.max())  # 255 for Atari's frames, 1 for MinAtar
        if self.channels_last:
            convs, self.features = [nn.Conv2d(channels, 16, 3, stride=1), nn.ReLU()], 128
        else:
            convs, self.features = [nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(),
                                    nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                                    nn.Conv2d(64, 64, 3, stride=1), nn.ReLU()], 512
        self.convs = nn.Sequential(*convs, nn.Flatten(-3))  # one image or a batch of them
        flat = self.convs(torch.zeros(1, channels, height, width)).shape[1]
        self.fc = nn.Sequential(linear(flat, self.features), nn.ReLU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.movedim(-1, -3) if self.channels_last else obs  # (…, H, W, C) → (…, C, H, W)
        return self.fc(self.convs(obs / self.scale))


def network(observation_space: gym.spaces.Box, out_dim: int, hidden_size: int,
            out_gain: float) -> nn.Sequential:
    """Two tanh hidden layers for flat observations, the Pixels torso for images; then a linear
    output layer. Orthogonal weights of gain √2 and zero biases (the lecture's "orthogonal
    initialization and layer scaling" trick); the small out_gain of the policy head makes the first
    policy nearly uniform. The actor and the critic each have their own (the PPO paper's Atari
    network is one torso with both heads)."""
    if len(observation_space.shape) == 3:
        pixels = Pixels(observation_space)
        layers = [pixels, nn.Linear(pixels.features, out_dim)]
    else:
        layers = [nn.Linear(observation_space.shape[0], hidden_size), nn.Tanh(),
                  nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, out_dim)]
    net = nn.Sequential(*layers)
    weighted = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for layer in weighted:
        nn.init.orthogonal_(layer.weight, out_gain if layer is weighted[-1] else np.sqrt(2))
        nn.init.zeros_(layer.bias)
    return net


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

    def __init__(self, observation_space: gym.spaces.Box, n_actions: int, hidden_size: int,
                 log_std_init: float):
        super().__init__()
        self.logits = network(observation_space, n_actions, hidden_size, out_gain=0.01)

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
    so the ratio of PPO-4) is that of the unclipped sample a ~ N(μ, σ²), the one the policy really
    drew. This is the usual choice (CleanRL, SB3, the PPO paper): the Gaussian's log-probability
    stays exact and cheap, and the clipping is part of the environment. Squashing with tanh instead
    would need a change-of-variables term in the log-probability (as sac.py does)."""

    def __init__(self, observation_space: gym.spaces.Box, action_dim: int, hidden_size: int,
                 log_std_init: float):
        super().__init__()
        self.mean = network(observation_space, action_dim, hidden_size, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def sample(self, obs: torch.Tensor):
        mean = self.mean(obs)
        actions = mean + self.log_std.exp() * torch.randn_like(mean)
        return actions, gaussian_log_prob(mean, self.log_std, actions)

    def log_prob_entropy(self, obs: torch.Tensor, actions: torch.Tensor):
        mean = self.mean(obs)
        return (gaussian_log_prob(mean, self.log_std, actions),
                gaussian_entropy(self.log_std).expand(len(mean)))

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic policy of the evaluation: the mean action."""
        return self.mean(obs)


class Critic(nn.Module):
    """V_φ(s)."""

    def __init__(self, observation_space: gym.spaces.Box, hidden_size: int):
        super().__init__()
        self.net = network(observation_space, 1, hidden_size, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def env_actions(actions: np.ndarray, action_space: gym.Space) -> np.ndarray:
    """What the env gets: Gaussian samples clipped into the Box bounds (see GaussianActor)."""
    if isinstance(action_space, gym.spaces.Box):
        return np.clip(actions, action_space.low, action_space.high)
    return actions


class RolloutBuffer:
    """What PPO-1 collects, preallocated: one row per step, one column per env. Observations are
    kept in float32, as the networks read them (images too: a rollout is small)."""

    def __init__(self, num_steps: int, num_envs: int, obs_shape: tuple, action_shape: tuple,
                 discrete: bool):
        shape = (num_steps, num_envs)
        self.obs = np.zeros(shape + obs_shape, dtype=np.float32)
        self.actions = np.zeros(shape + action_shape, dtype=np.int64 if discrete else np.float32)
        # log π_θk(a_t|s_t), the denominator of the ratio
        self.log_probs = np.zeros(shape, dtype=np.float32)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.values = np.zeros(shape, dtype=np.float32)
        # V(final observation) where a time limit cut the episode, the bootstrap of next_values
        self.final_values = np.zeros(shape, dtype=np.float32)
        self.terminated, self.truncated = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)

    def next_values(self, last_values: np.ndarray) -> np.ndarray:
        """V(s_{t+1}) of each step's real successor: the next row's value, V(final observation)
        where a time limit cut the episode, and last_values, V(obs) after the last step, for the
        last row."""
        next_values = np.concatenate([self.values[1:], last_values[None]])
        return np.where(self.truncated, self.final_values, next_values)

    def batch(self, advantages: np.ndarray, returns: np.ndarray, device: torch.device) -> tuple:
        """The rollout as num_steps * num_envs samples: tensors (s, a, log π_θk(a|s), Â, R̂)."""
        arrays = (self.obs, self.actions, self.log_probs, advantages, returns)
        return tuple(torch.as_tensor(a.reshape((-1,) + a.shape[2:]), device=device) for a in arrays)


@torch.no_grad()
def value_of(critic: nn.Module, obs: np.ndarray, device: torch.device) -> np.ndarray:
    """V_φ(s) of a batch of observations, as a numpy array: a constant, no gradient flows back."""
    return critic(torch.as_tensor(obs, device=device)).cpu().numpy()


def compute_gae(rewards, values, next_values, terminated, dones, gamma: float, gae_lambda: float):
    """PPO-3 and PPO-2: GAE(λ) advantages and the critic's targets.

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


def clipped_surrogate(new_log_prob, old_log_prob, advantages, clip_coef: float):
    """PPO-4: loss −mean min(r Â, clip(r, 1−ε, 1+ε) Â) with r = π_θ / π_θk, plus two diagnostics:
    the approximate KL(π_θk ‖ π_θ) (the estimator E[(r − 1) − log r]) and the fraction of clipped
    ratios."""
    log_ratio = new_log_prob - old_log_prob
    ratio = log_ratio.exp()
    clipped_ratio = ratio.clamp(1 - clip_coef, 1 + clip_coef)
    loss = -torch.min(ratio * advantages, clipped_ratio * advantages).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clip_fraction = ((ratio - 1).abs() > clip_coef).float().mean()
    return loss, approx_kl, clip_fraction


def ppo_update(actor: nn.Module, critic: nn.Module, optimizer, batch, *, clip_coef: float,
               ent_coef: float, vf_coef: float, max_grad_norm: float, norm_adv: bool,
               update_epochs: int, num_minibatches: int):
    """PPO-4 and PPO-5 on one rollout: update_epochs passes over it in num_minibatches shuffled
    mini-batches, one Adam step per mini-batch on the clipped objective, the entropy bonus and the
    critic's loss together. Returns the last mini-batch's policy loss, value loss and mean entropy,
    and the approximate KL and the clip fraction averaged over all the mini-batches."""
    obs, actions, old_log_probs, advantages, returns = batch
    parameters = list(actor.parameters()) + list(critic.parameters())
    approx_kls, clip_fractions = [], []
    for epoch in range(update_epochs):
        for mb in torch.randperm(len(obs), device=obs.device).split(len(obs) // num_minibatches):
            new_log_probs, entropy = actor.log_prob_entropy(obs[mb], actions[mb])
            mb_adv = advantages[mb]
            if norm_adv and len(mb_adv) > 1:  # std() of one sample is NaN: leave it (as SB3 does)
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
            # PPO-4: the clipped objective, with π_θk's log-probabilities stored at PPO-1
            policy_loss, approx_kl, clip_fraction = clipped_surrogate(
                new_log_probs, old_log_probs[mb], mb_adv, clip_coef)
            # PPO-5: the critic regresses on the returns R̂_t. Easy to overlook: R̂_t and Â_t are
            # constants, computed without gradient at PPO-2/3, so no gradient flows through them
            value_loss = F.mse_loss(critic(obs[mb]), returns[mb])
            loss = policy_loss - ent_coef * entropy.mean() + vf_coef * value_loss
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, max_grad_norm)
            optimizer.step()
            approx_kls.append(approx_kl)
            clip_fractions.append(clip_fraction)
    return (policy_loss, value_loss, entropy.mean(), torch.stack(approx_kls).mean(),
            torch.stack(clip_fractions).mean())


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
    """Observations → clip((s − mean) / std, ±10) with the running mean and std of the training
    observations; rewards → r / std(R), R ← γR + r the running discounted return of each env
    (SB3's VecNormalize). Scaling rewards keeps the critic's targets near 1 whatever the env's
    reward scale. The statistics are saved in model.pt and used frozen (update=False) by the
    evaluation, which sees the same inputs as training."""

    def __init__(self, obs_shape: tuple, num_envs: int, gamma: float, norm_obs: bool,
                 norm_reward: bool):
        self.norm_obs, self.norm_reward, self.gamma = norm_obs, norm_reward, gamma
        self.obs_rms, self.return_rms = RunningMeanStd(obs_shape), RunningMeanStd()
        self.discounted_return = np.zeros(num_envs)

    def observation(self, obs: np.ndarray, update: bool) -> np.ndarray:
        if not self.norm_obs:
            return obs.astype(np.float32)
        if update:
            self.obs_rms.update(obs)
        normalized = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)
        return np.clip(normalized, -10, 10).astype(np.float32)

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


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    env = make_env(args.env_id)
    args = with_env_defaults(args, env)
    check_args(args, env)
    args = whole_rollouts(args)
    env.close()  # the rollouts run on num_envs copies of it
    seed_everything(args.seed, args)
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")

    # Gymnasium 1.x vector envs reset a finished env on the *next* step by default. In SAME_STEP
    # mode, the step that ends an episode already returns the next episode's first observation, and
    # the real final observation comes in info["final_obs"]: every step of the rollout is a real
    # transition (none is wasted on a reset), and a truncation can bootstrap from V(final obs).
    envs = gym.vector.SyncVectorEnv([lambda: make_env(args.env_id) for _ in range(args.num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    action_space, observations = envs.single_action_space, envs.single_observation_space
    discrete = isinstance(action_space, gym.spaces.Discrete)
    action_shape = () if discrete else action_space.shape
    # The actor π_θ (softmax or Gaussian) and the critic V_φ, separate networks as on the slides
    actor_class = CategoricalActor if discrete else GaussianActor
    actor = actor_class(observations, int(action_space.n) if discrete else action_shape[0],
                        args.hidden_size, args.log_std_init).to(device)
    critic = Critic(observations, args.hidden_size).to(device)
    parameters = list(actor.parameters()) + list(critic.parameters())
    optimizer = torch.optim.Adam(parameters, lr=args.learning_rate, eps=1e-5, fused=True)
    normalizer = Normalizer(observations.shape, args.num_envs, args.gamma, args.norm_obs,
                            args.norm_reward)
    rollout = RolloutBuffer(args.num_steps, args.num_envs, observations.shape, action_shape,
                            discrete)
    batch_size = args.num_envs * args.num_steps
    num_iterations = args.total_timesteps // batch_size

    @torch.no_grad()
    def deterministic_policy(obs):  # the evaluation's: mean or most probable action
        obs = torch.as_tensor(normalizer.observation(obs, update=False), device=device)
        return env_actions(actor.mode(obs).cpu().numpy(), action_space)

    metric_names = ["policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
                    "learning_rate"]
    with Run(args, envs, device, num_iterations * batch_size, metric_names) as run:
        run.save(actor=actor, critic=critic, normalizer=normalizer)
        global_step, last_log_step = 0, 0
        obs, _ = envs.reset(seed=args.seed)  # env i gets seed + i
        envs.action_space.seed(args.seed)
        obs = normalizer.observation(obs, update=True)
        for iteration in range(num_iterations):
            if args.anneal_lr:
                fraction_left = 1.0 - iteration / num_iterations
                optimizer.param_groups[0]["lr"] = args.learning_rate * fraction_left

            # PPO-1: collect num_steps steps of every env with the current policy π_θk
            for step in range(args.num_steps):
                with torch.no_grad():
                    actions, log_probs = actor.sample(torch.as_tensor(obs, device=device))
                actions, log_probs = actions.cpu().numpy(), log_probs.cpu().numpy()
                rollout.obs[step], rollout.actions[step] = obs, actions
                rollout.log_probs[step] = log_probs
                rollout.values[step] = value_of(critic, obs, device)
                next_obs, rewards, terminated, truncated, info = envs.step(
                    env_actions(actions, action_space))
                global_step += args.num_envs
                done = terminated | truncated
                run.rewards(global_step, rewards, done)
                rollout.rewards[step] = normalizer.reward(rewards, done)
                rollout.terminated[step] = terminated
                rollout.truncated[step] = truncated & ~terminated  # cut by a time limit only
                # Easy to overlook: advance obs; a finished env's next_obs starts its next episode
                obs = normalizer.observation(next_obs, update=True)
                # Easy to overlook: a time limit bootstraps from the real final obs, not next_obs
                if rollout.truncated[step].any():
                    cut = rollout.truncated[step]
                    final_obs = np.stack(info["final_obs"][cut])
                    final_obs = normalizer.observation(final_obs, update=False)
                    rollout.final_values[step, cut] = value_of(critic, final_obs, device)

            # PPO-3 and PPO-2: GAE advantages and the critic's targets, from V(s_{t+1}) of each
            # step's real successor
            next_values = rollout.next_values(value_of(critic, obs, device))
            dones = rollout.terminated | rollout.truncated
            advantages, returns = compute_gae(rollout.rewards, rollout.values, next_values,
                                              rollout.terminated, dones, args.gamma,
                                              args.gae_lambda)
            # PPO-4 and PPO-5: update_epochs epochs of shuffled mini-batches, the clipped objective
            batch = rollout.batch(advantages, returns, device)
            losses = ppo_update(actor, critic, optimizer, batch, clip_coef=args.clip_coef,
                                ent_coef=args.ent_coef, vf_coef=args.vf_coef,
                                max_grad_norm=args.max_grad_norm, norm_adv=args.norm_adv,
                                update_epochs=args.update_epochs,
                                num_minibatches=args.num_minibatches)
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
    shape = observations.shape if isinstance(observations, gym.spaces.Box) else None
    if not shape or not (len(shape) == 1 or shape == (4, 84, 84) or shape[:2] == (10, 10)):
        fail(f"{SCRIPT}.py needs a flat Box observation space, Atari's frames (4, 84, 84) or "
             f"MinAtar's grids (10, 10, C), and {args.env_id} has {observations}")
    problems = [
        (args.total_timesteps <= 0, "total_timesteps must be positive"),
        (args.learning_rate <= 0, "learning_rate must be positive"),
        (not 0 <= args.gamma <= 1, "gamma must lie in [0, 1]"),
        (not 0 <= args.gae_lambda <= 1, "gae_lambda must lie in [0, 1]"),
        (args.num_envs <= 0 or args.num_steps <= 0, "num_envs and num_steps must be positive"),
        (min(args.update_epochs, args.num_minibatches) <= 0,
         "update_epochs and num_minibatches must be positive"),
        (args.num_envs * args.num_steps % args.num_minibatches != 0,
         "num_minibatches must divide num_envs * num_steps"),
        (args.clip_coef <= 0, "clip_coef must be positive"),
        (min(args.ent_coef, args.vf_coef) < 0 or args.max_grad_norm <= 0,
         "ent_coef and vf_coef must be >= 0 and max_grad_norm > 0"),
        (args.log_frequency <= 0, "log_frequency must be positive"),
        (args.torch_threads <= 0, "torch_threads must be positive"),
        (args.hidden_size <= 0, "hidden_size must be positive"),
        (args.norm_obs and len(observations.shape) == 3,
         "norm_obs is for flat observations: Pixels scales an image's pixels to [0, 1]"),
    ]
    for bad, message in problems:
        if bad:
            fail(message)


def saved_policy(saved: dict, args: Args, env: gym.Env, device: torch.device):
    """The deterministic policy (mean or most probable action) of the actor in a model.pt, with
    its observation normalization frozen."""
    observations = env.observation_space
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    actor_class = CategoricalActor if discrete else GaussianActor
    action_dim = int(env.action_space.n) if discrete else env.action_space.shape[0]
    actor = actor_class(observations, action_dim, args.hidden_size,
                        args.log_std_init).to(device)
    actor.load_state_dict(saved["actor"])
    normalizer = Normalizer(observations.shape, 1, args.gamma, args.norm_obs, args.norm_reward)
    normalizer.load_state_dict(saved["normalizer"])

    def policy(obs):
        normalized = normalizer.observation(obs, update=False)
        action = actor.mode(torch.as_tensor(normalized, device=device))
        return env_actions(action.cpu().numpy(), env.action_space)
    return policy


def whole_rollouts(args: Args) -> Args:
    """total_timesteps rounded up to a whole number of rollouts of num_envs × num_steps steps."""
    rollout = args.num_envs * args.num_steps
    rounded = -(-args.total_timesteps // rollout) * rollout
    if rounded != args.total_timesteps:
        print(f"total_timesteps {args.total_timesteps:,} rounded up to {rounded:,}, whole rollouts"
              f" of num_envs × num_steps = {args.num_envs} × {args.num_steps} = {rollout:,} steps")
    return replace(args, total_timesteps=rounded)


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
