"""Rainbow: DQN with six of its improvements together, each one switchable by a flag.

Paper: Hessel et al., "Rainbow: Combining Improvements in Deep Reinforcement Learning", AAAI 2018
(arXiv 1710.02298). Its parts: van Hasselt et al. (Double DQN, AAAI 2016), Wang et al. (dueling
networks, ICML 2016), Schaul et al. (prioritized replay, ICLR 2016), Sutton 1988 (n-step returns),
Bellemare, Dabney and Munos (C51, "A Distributional Perspective on Reinforcement Learning", ICML
2017) and Fortunato et al. (NoisyNet, "Noisy Networks for Exploration", ICLR 2018). Lecture 7,
"Deep Q-Network (DQN)", "Rainbow" and "Performance of Rainbow".

DQN's steps, as labelled in the code below:
  DQN-1  act on Q_φ and store the transition in the replay buffer B
  DQN-2  sample a mini-batch from B
  DQN-3  targets from the target network φ', with no gradient through them: the regression chases
         a target that holds still between two copies
  DQN-4  one gradient step on the loss between Q_φ(s, a) and the targets
  DQN-5  copy φ into φ' every `target_network_frequency` steps
Rainbow's six parts, each changing one or two of those steps:
  RAINBOW-1  double targets (DQN-3): the online network chooses a* = argmax_a' Q_φ(s', a') and the
             target network evaluates it, which removes most of the over-estimation of DQN's max
  RAINBOW-2  dueling head: Q_φ(s, a) = V(s) + A(s, a) − mean_a' A(s, a') (with C51: per atom, on
             the logits), so that V learns from every transition of s whatever its action
  RAINBOW-3  proportional prioritized replay (DQN-2, DQN-4): sample i with P(i) = p_i^α / Σ_k p_k^α
             from a sum tree, new transitions at the largest priority so far, importance weights
             w_i = (N P(i))^(−β) / max_j w_j in the loss with β annealed from `per_beta_start` to 1,
             and each sampled transition's loss as its new priority
  RAINBOW-4  n-step returns (DQN-1, DQN-3): store (s_t, a_t, R = Σ_{j<k} γ^j r_{t+j}, s_{t+k}) with
             k = n, or fewer steps at an episode's end, and bootstrap with γ^k, so that a reward
             reaches the values n steps back in one update
  RAINBOW-5  C51 (DQN-3, DQN-4): the network gives, per action, a distribution p_i(s, a) over
             `num_atoms` returns z_i evenly spaced in [v_min, v_max] (Q = Σ_i z_i p_i), the target
             distribution is the target network's shifted by R + γ^k (1 − terminated) z_i and
             projected back onto the z_i, and the loss is the cross-entropy between the two
  RAINBOW-6  NoisyNet (DQN-1): every linear layer is y = (μ_w + σ_w ⊙ ε_w) x + μ_b + σ_b ⊙ ε_b with
             factorized Gaussian noise drawn anew at every step, so the agent explores by acting
             greedily on a noisy Q_φ instead of ε-greedily, and the learnt σ decides how much

Ablations, as in the paper's Figure 3 (each flag removes one part from the full agent):
  flag                  part off     what runs instead
  --no-double           RAINBOW-1    a* = argmax_a' Q_φ'(s', a') of the target network (DQN's max)
  --no-dueling          RAINBOW-2    one head of Q-values (logits with C51) after the hidden layers
  --no-per              RAINBOW-3    uniform replay: α = 0 makes every p^α = 1: P(i) = 1/N, w_i = 1
  --n-step 1            RAINBOW-4    one-step targets r + γ (1 − terminated) ...
  --no-distributional   RAINBOW-5    a scalar Q per action, target y = R + γ^k (1 − terminated)
                                     Q_φ'(s', a*), squared error and priorities |y − Q_φ(s, a)|
                                     (num_atoms, v_min, v_max unused)
  --no-noisy            RAINBOW-6    plain layers and DQN's ε-greedy schedule (start_e, end_e, ...)
All flags off (`--no-double --no-dueling --no-per --n-step 1 --no-distributional --no-noisy`) is
DQN, with its squared error and its learning rate decayed to 0, up to the stratified uniform
sampling of the sum tree: everything but the six parts is DQN's, and the lines of each part carry
its label RAINBOW-k. The loss of C51 is the cross-entropy −Σ_i m_i log p_i(s, a), also the
priority; the paper's KL divergence is the cross-entropy less the entropy of m: the same gradient,
but its priorities leave out that entropy. metrics.csv logs q_mean, the mean Q_φ(s, a) of the
batches, their mean importance weight and β.

Reading order: the per-env defaults and the settings (Args), the noisy layer and the network, the
n-step window, the sum tree and the prioritized buffer, the targets (double, n-step, the C51
projection) and the update, then train(), the loop that calls them step by step. Everything under
"Bookkeeping" at the bottom (the run folder, logs, errors, evaluation, Ctrl-C) can be skipped on a
first reading.

Run:
  python rainbow.py                          # CartPole-v1, 100k steps, all six parts
  python rainbow.py --env-id Acrobot-v1      # 100k steps, its own defaults from ENV_DEFAULTS
  python rainbow.py --no-noisy --n-step 1    # an ablation: without NoisyNet and n-step returns
  python rainbow.py --env-id MinAtar/Breakout-v1  # pip install minatar
  python rainbow.py --env-id ALE/Pong-v5     # pip install "gymnasium[atari,other]"; a GPU: --cuda
  python rainbow.py --help
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

# Settings whose good value depends on the env. A setting left at None on the command line takes
# its value from this table (other Discrete envs: from CartPole-v1's row, with a warning, see
# TUNED_ON, whose support [0, 100] suits positive rewards only: give such envs --v-min and
# --v-max); the resolved values are printed at the start and written to args.json. Not tuned:
# the support brackets every discounted return the env can give at γ = 0.99.
# DQN's settings on classic control (dqn.py: ours, README: how the defaults were chosen)
CLASSIC_CONTROL = dict(learning_rate=1e-3, adam_eps=1e-8, anneal_lr=True, buffer_size=50_000,
                       batch_size=256, learning_starts=1_000, train_frequency=4,
                       target_network_frequency=250)
ENV_DEFAULTS = {
    # +1 a step: every discounted return lies in [0, 1 / (1 − γ)] = [0, 100];
    # total_timesteps: ours (README: how the defaults were chosen)
    "CartPole-v1": dict(total_timesteps=100_000, v_min=0.0, v_max=100.0, **CLASSIC_CONTROL),
    # −1 a step until the goal: returns lie in [−1 / (1 − γ), 0] = [−100, 0];
    # total_timesteps: RL Zoo (its budget for DQN on Acrobot-v1)
    "Acrobot-v1": dict(total_timesteps=100_000, v_min=-100.0, v_max=0.0, **CLASSIC_CONTROL),
    # Rainbow on MinAtar by Obando-Ceron and Castro ("Revisiting Rainbow", 2021): Adam at 1e-4 with
    # ε 3.125e-4, buffer 100k, batch 32, learning from 1k steps, a gradient step every 4 steps, φ'
    # every 1k, atoms on [−100, 100]. Budget ours: 1M of their 10M steps
    "MinAtar": dict(total_timesteps=1_000_000, v_min=-100.0, v_max=100.0, learning_rate=1e-4,
                    adam_eps=3.125e-4, anneal_lr=False, buffer_size=100_000, batch_size=32,
                    learning_starts=1_000, train_frequency=4, target_network_frequency=1_000),
    # The Rainbow paper's Atari settings (its Table 1): Adam at 6.25e-5 with ε 1.5e-4, batch 32,
    # learning from 80k frames (20k steps), a gradient step every 4 steps, φ' every 32k frames (8k
    # steps), rewards clipped to [−1, 1], atoms on [−10, 10]; but a buffer of 50k, not 1M (memory:
    # README: Pixels), and 10M steps, not 50M
    "Atari": dict(total_timesteps=10_000_000, v_min=-10.0, v_max=10.0, learning_rate=6.25e-5,
                  adam_eps=1.5e-4, anneal_lr=False, buffer_size=50_000, batch_size=32,
                  learning_starts=20_000, train_frequency=4, target_network_frequency=8_000),
}
SHARED_ROWS = {"MinAtar": ("MinAtar/",), "Atari": ("ALE/",)}
TUNED_ON = {gym.spaces.Discrete: "CartPole-v1"}


@dataclass
class Args:
    env_id: str = "CartPole-v1"
    """Gymnasium environment id (Discrete actions; flat Box or image observations)"""
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
    """write the trained weights to model.pt"""
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of the experiment, in the run folder's name {env_id}__{exp_name}__{seed}__{time}"""

    learning_rate: float = None
    """Adam step size α (per-env default: ENV_DEFAULTS; decays linearly to 0 when anneal_lr)"""
    adam_eps: float = None
    """Adam's ε, added to the root of its second moment (per-env default: ENV_DEFAULTS)"""
    anneal_lr: bool = None
    """decay the learning rate linearly to 0, so the last network (the one evaluated) settles
    (per-env default: ENV_DEFAULTS)"""
    buffer_size: int = None
    """capacity of the replay buffer B (per-env default: ENV_DEFAULTS)"""
    gamma: float = 0.99
    """discount factor γ"""
    batch_size: int = None
    """transitions per mini-batch (DQN-2) (per-env default: ENV_DEFAULTS)"""
    hidden_size: int = 128
    """units in each of the two hidden layers, for flat observations (images: Pixels)"""
    learning_starts: int = None
    """environment steps before learning starts (on the noisy Q_φ, or ε-greedy with --no-noisy)
    (per-env default: ENV_DEFAULTS)"""
    train_frequency: int = None
    """environment steps between two gradient steps (per-env default: ENV_DEFAULTS)"""
    target_network_frequency: int = None
    """environment steps between two copies of φ into φ' (DQN-5) (per-env default: ENV_DEFAULTS)"""
    start_e: float = 1.0
    """ε at the start of training (--no-noisy only)"""
    end_e: float = 0.05
    """ε after the decay (its floor) (--no-noisy only)"""
    exploration_fraction: float = 0.2
    """fraction of total_timesteps for ε's linear decay from start_e to end_e (--no-noisy only)"""
    log_frequency: int = 500
    """environment steps between two rows of metrics.csv"""

    # Rainbow's parts. The values are the paper's (its Table 1) but per_eps (not in it) and v_min,
    # v_max (per env); the settings above are DQN's on classic control, the Rainbow paper's on
    # Atari and Revisiting Rainbow's on MinAtar (ENV_DEFAULTS). Not tuned.
    double: bool = True
    """RAINBOW-1: Q_φ chooses a*, the target network Q_φ' evaluates it (--no-double: DQN's max)"""
    dueling: bool = True
    """RAINBOW-2: a dueling head V(s) + A(s, a) − mean_a' A(s, a')"""
    per: bool = True
    """RAINBOW-3: proportional prioritized replay (--no-per: uniform replay)"""
    per_alpha: float = 0.5
    """priority exponent α of RAINBOW-3 (0: uniform sampling, 1: proportional to the priority)"""
    per_beta_start: float = 0.4
    """importance-weight exponent β at the start; it grows linearly to 1 by the end (RAINBOW-3)"""
    per_eps: float = 1e-6
    """ε added to each priority, so no transition gets priority 0 and is never replayed again"""
    n_step: int = 3
    """RAINBOW-4: steps n of the n-step returns (1: one-step targets)"""
    distributional: bool = True
    """RAINBOW-5: C51's distribution over returns (--no-distributional: scalar Q, squared error)"""
    num_atoms: int = 51
    """atoms z_i of C51's support (RAINBOW-5)"""
    v_min: float = None
    """lowest atom, at most the lowest discounted return (per-env default: ENV_DEFAULTS)"""
    v_max: float = None
    """highest atom, at least the highest discounted return (per-env default: ENV_DEFAULTS)"""
    noisy: bool = True
    """RAINBOW-6: NoisyNet layers explore (--no-noisy: plain layers and ε-greedy actions)"""
    noisy_sigma0: float = 0.5
    """σ0 of the noisy layers: σ starts at σ0 / √(inputs of the layer) (RAINBOW-6)"""
    settings_row: tyro.conf.Suppress[dict | None] = None
    """not a setting: the row of ENV_DEFAULTS that the per-env settings came from, as args.json
    records it: {"row", "tuned_on", "borrowed"} (with_env_defaults fills it in)"""


# --------------------------------------------------------------------------------------------------
# The Q-network, the replay buffer and the update
# --------------------------------------------------------------------------------------------------
def factorized_noise(size: int, device) -> torch.Tensor:
    """f(x) = sign(x) √|x| of standard Gaussian draws x."""
    x = torch.randn(size, device=device)
    return x.sign() * x.abs().sqrt()


class NoisyLinear(nn.Module):
    """RAINBOW-6: a linear layer y = (μ_w + σ_w ⊙ ε_w) x + μ_b + σ_b ⊙ ε_b with factorized Gaussian
    noise: ε_w = f(ε_out) f(ε_in)ᵀ (an outer product) and ε_b = f(ε_out), from in + out draws
    instead of in × out. In eval mode (module.eval()) it is the noise-free mean layer
    y = μ_w x + μ_b."""

    def __init__(self, in_features: int, out_features: int, sigma0: float):
        super().__init__()
        bound = in_features ** -0.5  # Fortunato et al. 3.2: μ ~ U[−1/√p, 1/√p], σ = σ0/√p, p inputs
        self.weight_mu = nn.Parameter(
            torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 * bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 * bound))
        # the noise is no parameter, and no part of model.pt: each network draws its own
        self.register_buffer("epsilon_in", torch.zeros(in_features), persistent=False)
        self.register_buffer("epsilon_out", torch.zeros(out_features), persistent=False)
        self.reset_noise()

    def reset_noise(self):  # in place: the buffers stay the same tensors
        self.epsilon_in.copy_(factorized_noise(len(self.epsilon_in), self.epsilon_in.device))
        self.epsilon_out.copy_(factorized_noise(len(self.epsilon_out), self.epsilon_out.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:  # RAINBOW-6: the evaluation uses the means only
            return F.linear(x, self.weight_mu, self.bias_mu)
        # RAINBOW-6: ε_w = f(ε_out) f(ε_in)ᵀ
        weight_epsilon = torch.outer(self.epsilon_out, self.epsilon_in)
        return F.linear(x, self.weight_mu + self.weight_sigma * weight_epsilon,
                        self.bias_mu + self.bias_sigma * self.epsilon_out)


def on_means(q_network: nn.Module, act):
    """act(obs) with q_network in eval mode, where its noisy layers are the means μ (RAINBOW-6)."""
    def act_on_means(obs):
        q_network.eval()
        action = act(obs)
        q_network.train()
        return action
    return act_on_means


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


def torso(observation_space: gym.spaces.Box, hidden_size: int, linear=nn.Linear):
    """The layers before the output head, and their width: Pixels for images, else two hidden
    layers of hidden_size ReLU units."""
    if len(observation_space.shape) == 3:
        pixels = Pixels(observation_space, linear)
        return pixels, pixels.features
    layers = nn.Sequential(linear(observation_space.shape[0], hidden_size), nn.ReLU(),
                           linear(hidden_size, hidden_size), nn.ReLU())
    return layers, hidden_size


class QNetwork(nn.Module):
    """Q_φ(s, ·): one output per action, or with C51 (`support` given) num_atoms logits per action
    whose softmax is a distribution over the atoms z_i of the support. A dueling head (RAINBOW-2)
    and noisy layers (RAINBOW-6) are switches; all off, it is DQN's network. The dueling streams
    share the torso's last layer (the papers give each stream 512 units of its own on images)."""

    def __init__(self, observation_space: gym.spaces.Box, n_actions: int, hidden_size: int, *,
                 support: torch.Tensor = None, dueling: bool = False, noisy: bool = False,
                 sigma0: float = 0.5):
        super().__init__()
        # RAINBOW-6: every linear layer noisy
        linear = (lambda n_in, n_out: NoisyLinear(n_in, n_out, sigma0)) if noisy else nn.Linear
        self.n_actions, self.num_atoms = n_actions, 1 if support is None else len(support)
        self.register_buffer("support", support)  # RAINBOW-5: the atoms z_i (None without C51)
        self.torso, features = torso(observation_space, hidden_size, linear)
        # without dueling, the only head: the Q-values (their logits with C51)
        self.advantage = linear(features, n_actions * self.num_atoms)
        self.value = linear(features, self.num_atoms) if dueling else None

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """Shape (batch, n_actions, num_atoms), or (n_actions, num_atoms) for one state; without C51
        num_atoms is 1 and the logits are Q."""
        features = self.torso(obs)
        advantage = self.advantage(features).unflatten(-1, (self.n_actions, self.num_atoms))
        if self.value is None:
            return advantage
        value = self.value(features).unsqueeze(-2)  # one value per atom, the same for every action
        # RAINBOW-2: Q = V + A − mean_a A per atom; the mean fixes the constant V and A could trade
        return value + advantage - advantage.mean(dim=-2, keepdim=True)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        logits = self.logits(obs)
        if self.support is None:
            return logits.squeeze(-1)
        # RAINBOW-5: Q(s, a) = Σ_i z_i p_i(s, a)
        return (logits.softmax(dim=-1) * self.support).sum(-1)

    def reset_noise(self):
        """RAINBOW-6: new noise in every noisy layer (nothing to do without them)."""
        for layer in self.modules():
            if isinstance(layer, NoisyLinear):
                layer.reset_noise()


def make_q_network(args: Args, observation_space: gym.spaces.Box, n_actions: int) -> QNetwork:
    """The QNetwork with the parts args switches on."""
    support = (torch.linspace(args.v_min, args.v_max, args.num_atoms) if args.distributional
               else None)
    return QNetwork(observation_space, n_actions, args.hidden_size, support=support,
                    dueling=args.dueling, noisy=args.noisy, sigma0=args.noisy_sigma0)


class NStepWindow:
    """RAINBOW-4: turns the steps of an episode into n-step transitions
    (s_t, a_t, R, s_{t+k}, terminated, k) with R = Σ_{j<k} γ^j r_{t+j}: k = n steps, or fewer at the
    episode's end, where the window is emptied, so that no transition is lost or reaches into the
    next episode. At a termination R is the whole rest of the episode (no bootstrap: terminated is
    stored); at a time limit s_{t+k} is the real last observation, to bootstrap from with γ^k."""

    def __init__(self, n: int, gamma: float):
        self.n, self.gamma, self.window = n, gamma, deque()

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> list:
        """Add one step; return the transitions it completes: the oldest step's once the window
        holds n steps, and every step's at the end of an episode."""
        self.window.append((obs, action, reward))
        completed = []
        while len(self.window) == self.n or (self.window and (terminated or truncated)):
            steps = len(self.window)
            n_step_return = sum(self.gamma ** j * r for j, (_, _, r) in enumerate(self.window))
            first_obs, first_action, _ = self.window.popleft()
            # Easy to get wrong: store terminated, not truncated. At a time limit, next_obs is the
            # real last observation and DQN-3 bootstraps from it; only an MDP end stops that.
            completed.append((first_obs, first_action, n_step_return, next_obs, terminated, steps))
        return completed


class SumTree:
    """A binary tree in one numpy array: leaf k holds the priority p_k^α of transition k, every
    inner node the sum of its two children, so the root holds Σ_k p_k^α. Node 1 is the root, node j
    has children 2j and 2j+1, and the leaves are nodes n_leaves … 2 n_leaves − 1. Changing a leaf or
    sampling one walks a single path between the root and a leaf: O(log N) instead of the O(N) of a
    cumulative sum over the whole buffer."""

    def __init__(self, capacity: int):
        # a power of two, so that every leaf is at the same depth
        self.n_leaves = 1 << (capacity - 1).bit_length()
        # float64, so that sums of many priorities stay accurate
        self.nodes = np.zeros(2 * self.n_leaves)

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        return self.nodes[indices + self.n_leaves]

    def set(self, index: int, value: float):
        """Set one leaf (a new transition), then recompute each ancestor from its two children."""
        node = index + self.n_leaves
        self.nodes[node] = value
        while node > 1:
            node //= 2
            self.nodes[node] = self.nodes[2 * node] + self.nodes[2 * node + 1]

    def set_many(self, indices: np.ndarray, values: np.ndarray):
        """set() for a batch of leaves, one numpy operation per level. A leaf repeated in
        `indices` keeps one of its values; a parent reached twice is recomputed twice, with the
        same result."""
        nodes = indices + self.n_leaves
        self.nodes[nodes] = values
        while nodes[0] > 1:
            nodes = nodes // 2
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]

    def find(self, values: np.ndarray) -> np.ndarray:
        """For each value in [0, total): the leaf k with Σ_{j<k} p_j^α <= value < Σ_{j<=k} p_j^α,
        i.e. where the value falls when the leaves are laid end to end with widths p_k^α."""
        nodes = np.ones(len(values), dtype=np.int64)
        # descend from the root, all values at once, one level per loop
        while nodes[0] < self.n_leaves:
            left = 2 * nodes
            left_sums = self.nodes[left]
            go_right = values >= left_sums
            values = values - left_sums * go_right  # going right skips the left subtree's mass
            nodes = left + go_right
        return nodes - self.n_leaves


class PrioritizedReplayBuffer:
    """Replay buffer B with proportional priorities (RAINBOW-3), preallocated in numpy; the oldest
    transitions are overwritten (their leaves in the sum tree too). A transition is n-step
    (RAINBOW-4): it keeps k, its steps. Observations keep their own type: an image's uint8 takes a
    quarter of float32's memory."""

    def __init__(self, capacity: int, observation_space: gym.spaces.Box, alpha: float, eps: float):
        shape, dtype = (capacity, *observation_space.shape), observation_space.dtype
        self.obs, self.next_obs = np.zeros(shape, dtype), np.zeros(shape, dtype)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)  # RAINBOW-4: the n-step return R
        # 1 only when the MDP ended; a time limit (truncation) stores 0: the target bootstraps there
        self.terminated = np.zeros(capacity, dtype=np.float32)
        # RAINBOW-4: k, the steps from obs to next_obs
        self.steps = np.zeros(capacity, dtype=np.float32)
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.tree, self.alpha, self.eps = SumTree(capacity), alpha, eps
        self.max_priority = 1.0  # the largest priority so far (before the exponent α)

    def add(self, obs, action, reward, next_obs, terminated, steps):
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.terminated[i], self.steps[i] = next_obs, terminated, steps
        # RAINBOW-3: a new transition gets the largest priority so far: likely replayed soon
        self.tree.set(i, self.max_priority ** self.alpha)
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, beta: float, rng: np.random.Generator, device: torch.device):
        # RAINBOW-3: P(i) = p_i^α / Σ_k p_k^α. Stratified, as in the PER paper: one uniform draw
        # in each of batch_size equal segments of [0, Σ_k p_k^α), then a walk down the sum tree to
        # its leaf.
        total = self.tree.total
        values = (np.arange(batch_size) + rng.random(batch_size)) * (total / batch_size)
        # the minimum guards against round-off reaching an empty leaf
        idx = np.minimum(self.tree.find(values), self.size - 1)
        probs = self.tree.get(idx) / total
        # RAINBOW-3: w_i = (N · P(i))^(−β), divided by the batch's largest: weights only scale down
        weights = (self.size * probs) ** -beta
        weights /= weights.max()
        batch = tuple(
            torch.as_tensor(a[idx], device=device)
            for a in (self.obs, self.actions, self.rewards, self.next_obs, self.terminated,
                      self.steps)
        )
        return batch + (torch.as_tensor(weights, dtype=torch.float32, device=device), idx)

    def update_priorities(self, idx: np.ndarray, losses: np.ndarray):
        # RAINBOW-3: p_i = loss_i + ε (a transition drawn twice keeps one of its two values)
        priorities = np.abs(losses).astype(np.float64) + self.eps
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.set_many(idx, priorities ** self.alpha)


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    return start + min(t / duration, 1.0) * (end - start)


@torch.no_grad()
def next_actions(q_network, target_network, next_obs, *, double: bool):
    """RAINBOW-1: a* = argmax_a' Q_φ(s', a'), chosen by the online network for the target network
    to evaluate; with --no-double the target network chooses too: DQN's max_a' Q_φ'(s', a')."""
    chooser = q_network if double else target_network
    return chooser(next_obs).argmax(dim=1)


@torch.no_grad()  # easy to overlook: no gradient flows into the target y
def td_target(q_network, target_network, rewards, next_obs, terminated, discounts, *,
              double: bool):
    """DQN-3 without C51: y = R + γ^k (1 − terminated) Q_φ'(s', a*); no gradient flows into y."""
    chosen = next_actions(q_network, target_network, next_obs, double=double).unsqueeze(1)
    next_q = target_network(next_obs).gather(1, chosen).squeeze(1)  # RAINBOW-1: Q_φ' evaluates a*
    # RAINBOW-4: R and γ^k of the n-step transition
    return rewards + discounts * (1.0 - terminated) * next_q


def project_distribution(support, next_probs, rewards, terminated, discounts):
    """RAINBOW-5: C51's projection. Atom z_j with probability p_j moves to
    T z_j = R + γ^k (1 − terminated) z_j, clipped to [v_min, v_max]; its probability is then split
    between the two atoms around it, z_l and z_u with l = ⌊b⌋, u = ⌈b⌉, b = (T z_j − v_min) / Δz:
    m_l += p_j (u − b), m_u += p_j (b − l) (all of p_j to z_l when b falls on an atom, l = u).
    Returns m, shape (batch, num_atoms)."""
    v_min, v_max, num_atoms = support[0].item(), support[-1].item(), len(support)
    delta_z = (v_max - v_min) / (num_atoms - 1)
    # T z_j, one row per transition
    shifted = rewards.unsqueeze(1) + (discounts * (1.0 - terminated)).unsqueeze(1) * support
    # the second clamp guards against round-off at the ends
    b = ((shifted.clamp(v_min, v_max) - v_min) / delta_z).clamp(0, num_atoms - 1)
    lower, upper = b.floor().long(), b.ceil().long()
    # l = u: b is an atom, which gets all of p_j
    lower_share = torch.where(lower == upper, 1.0, upper - b)
    m = torch.zeros_like(next_probs)
    m.scatter_add_(1, lower, next_probs * lower_share)
    m.scatter_add_(1, upper, next_probs * (b - lower))  # b − l is 0 when l = u
    return m


@torch.no_grad()  # easy to overlook: no gradient flows into the target distribution
def target_distribution(q_network, target_network, rewards, next_obs, terminated, discounts, *,
                        double: bool):
    """DQN-3 with C51: the target network's distribution at (s', a*), moved by the n-step return
    and projected onto the support (RAINBOW-5); no gradient flows into it."""
    chosen = next_actions(q_network, target_network, next_obs, double=double)
    # RAINBOW-1: the target network's distribution at the online network's choice a*
    next_probs = target_network.logits(next_obs).softmax(dim=-1)[torch.arange(len(chosen)), chosen]
    return project_distribution(target_network.support, next_probs, rewards, terminated, discounts)


def update(q_network, target_network, optimizer, batch, weights, gamma: float, *, double: bool):
    """DQN-3 and DQN-4 on one mini-batch with importance weights w_i (RAINBOW-3); returns the loss,
    Q_φ(s, a) and the new priorities: each transition's cross-entropy (C51) or |y − Q_φ(s, a)|."""
    obs, actions, rewards, next_obs, terminated, steps = batch
    discounts = gamma ** steps  # RAINBOW-4: γ^k, k the steps of each n-step transition
    if q_network.support is None:  # --no-distributional: DQN's scalar target and squared error
        y = td_target(q_network, target_network, rewards, next_obs, terminated, discounts,
                      double=double)
        # the squared error between Q_φ(s, a) and y. The Nature paper clips the error's gradient
        # at 1 (the Huber loss); on CartPole-v1, whose values reach 100, DQN solved more seeds
        # with the squared error (README: how the defaults were chosen).
        q_values = q_network(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
        losses, priorities = F.mse_loss(q_values, y, reduction="none"), (y - q_values).abs()
    else:
        m = target_distribution(q_network, target_network, rewards, next_obs, terminated, discounts,
                                double=double)
        # RAINBOW-5: cross-entropy −Σ_i m_i log p_i(s, a) between the projected target and Z_φ(s, a)
        log_probs = q_network.logits(obs)[torch.arange(len(actions)), actions].log_softmax(dim=-1)
        losses = -(m * log_probs).sum(-1)
        q_values, priorities = (log_probs.exp() * q_network.support).sum(-1), losses
    # DQN-4: one gradient step on the loss, weighted by w_i (RAINBOW-3)
    loss = (weights * losses).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss, q_values.detach(), priorities.detach()


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    env = make_env(args.env_id)
    args = with_env_defaults(args, env)
    check_args(args, env)
    seed_everything(args.seed, args)
    rng = np.random.default_rng(args.seed)  # ε draws and mini-batch indices
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")

    observations, n_actions = env.observation_space, int(env.action_space.n)
    q_network = make_q_network(args, observations, n_actions).to(device)
    target_network = make_q_network(args, observations, n_actions).to(device)
    target_network.load_state_dict(q_network.state_dict())  # φ' ← φ
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, eps=args.adam_eps,
                                 fused=True)
    alpha = args.per_alpha if args.per else 0.0  # RAINBOW-3; --no-per: α = 0, uniform replay
    buffer = PrioritizedReplayBuffer(args.buffer_size, observations, alpha, args.per_eps)
    n_step = NStepWindow(args.n_step, args.gamma)  # RAINBOW-4
    exploration_steps = max(1, int(args.exploration_fraction * args.total_timesteps))

    @torch.no_grad()
    def greedy(obs) -> np.ndarray:  # argmax_a Q(s, a), of one state or of each row of a batch
        q_values = q_network(torch.as_tensor(obs, dtype=torch.float32, device=device))
        return q_values.argmax(-1).cpu().numpy()

    greedy_on_means = on_means(q_network, greedy)  # RAINBOW-6: evaluations act without noise
    with Run(args, env, device, args.total_timesteps,
             ["td_loss", "q_mean", "epsilon", "weight_mean", "beta"]) as run:
        run.save(q_network=q_network)
        obs, _ = env.reset(seed=args.seed)
        env.action_space.seed(args.seed)
        for global_step in range(1, args.total_timesteps + 1):
            q_network.reset_noise()  # RAINBOW-6: new noise in both networks at every step
            target_network.reset_noise()
            # DQN-1: greedy action on the noisy Q_φ (RAINBOW-6: ε = 0), or ε-greedy with --no-noisy
            epsilon = 0.0 if args.noisy else linear_schedule(args.start_e, args.end_e,
                                                             exploration_steps, global_step)
            action = env.action_space.sample() if rng.random() < epsilon else greedy(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            # DQN-1, RAINBOW-4: the n-step transitions this step completes go into B
            for transition in n_step.add(obs, action, reward, next_obs, terminated, truncated):
                buffer.add(*transition)
            run.rewards(global_step, reward, terminated or truncated)
            # Easy to overlook: advance obs, or the next action is chosen for a state already left
            if terminated or truncated:
                obs, _ = env.reset()
            else:
                obs = next_obs

            if global_step > args.learning_starts and global_step % args.train_frequency == 0:
                if args.anneal_lr:
                    progress = (global_step - 1) / args.total_timesteps
                    optimizer.param_groups[0]["lr"] = args.learning_rate * (1 - progress)
                # DQN-2, RAINBOW-3: a mini-batch drawn in proportion to p_i^α, with its weights w_i
                beta = linear_schedule(args.per_beta_start, 1.0, args.total_timesteps, global_step)
                *batch, weights, idx = buffer.sample(args.batch_size, beta, rng, device)
                # DQN-3 and DQN-4: targets from φ', one weighted gradient step towards them
                td_loss, q_values, priorities = update(q_network, target_network, optimizer, batch,
                                                       weights, args.gamma, double=args.double)
                # RAINBOW-3: each sampled transition's loss becomes its priority
                buffer.update_priorities(idx, priorities.cpu().numpy())
                if global_step % args.log_frequency == 0:
                    run.log(global_step, td_loss.item(), q_values.mean().item(), epsilon,
                            weights.mean().item(), beta)

            if global_step % args.target_network_frequency == 0:  # DQN-5: copy φ into φ'
                target_network.load_state_dict(q_network.state_dict())
            run.curve(global_step, greedy_on_means)  # eval_curve.csv, every eval_every steps
        q_network.eval()
        return run.evaluate(global_step, greedy)


# ==================================================================================================
# Bookkeeping. A first reading can stop here: what follows checks the settings and keeps the run
# folder, the logs, the evaluation and Ctrl-C out of train().
# ==================================================================================================
def check_args(args: Args, env: gym.Env):
    if not isinstance(env.action_space, gym.spaces.Discrete):
        fail(f"{SCRIPT}.py needs Discrete actions, and {args.env_id} has "
             f"{type(env.action_space).__name__} "
             "actions: use ddpg.py, td3.py or sac.py (or ppo.py, a2c.py) for continuous control")
    observations = env.observation_space
    shape = observations.shape if isinstance(observations, gym.spaces.Box) else None
    if not shape or not (len(shape) == 1 or shape == (4, 84, 84) or shape[:2] == (10, 10)):
        fail(f"{SCRIPT}.py needs a flat Box observation space, Atari's frames (4, 84, 84) or "
             f"MinAtar's grids (10, 10, C), and {args.env_id} has {observations}")
    problems = [
        (args.total_timesteps <= 0, "total_timesteps must be positive"),
        (args.learning_rate <= 0, "learning_rate must be positive"),
        (args.adam_eps <= 0, "adam_eps must be positive"),
        (not 0 <= args.gamma <= 1, "gamma must lie in [0, 1]"),
        (min(args.buffer_size, args.batch_size) <= 0, "buffer_size and batch_size must be > 0"),
        (args.batch_size > args.buffer_size, "batch_size cannot exceed buffer_size"),
        (args.learning_starts < args.batch_size, "learning_starts must be at least batch_size"),
        (args.total_timesteps <= args.learning_starts,
         f"total_timesteps ({args.total_timesteps}) must exceed learning_starts "
         f"({args.learning_starts}), or the run ends before its first gradient step"),
        (min(args.train_frequency, args.target_network_frequency, args.log_frequency) <= 0,
         "train_frequency, target_network_frequency and log_frequency must be positive"),
        (not (0 <= args.end_e <= args.start_e <= 1), "need 0 <= end_e <= start_e <= 1"),
        (not 0 < args.exploration_fraction <= 1, "exploration_fraction must lie in (0, 1]"),
        (args.torch_threads <= 0, "torch_threads must be positive"),
        (args.hidden_size <= 0, "hidden_size must be positive"),
        (args.per_alpha < 0, "per_alpha must be >= 0"),
        (not 0 <= args.per_beta_start <= 1, "per_beta_start must lie in [0, 1]"),
        (args.per_eps <= 0, "per_eps must be positive"),
        (args.n_step < 1, f"n_step must be at least 1 (1: one-step targets), not {args.n_step}"),
        (args.n_step > args.learning_starts, "n_step cannot exceed learning_starts"),
        (args.num_atoms < 2, f"num_atoms must be at least 2, not {args.num_atoms}"),
        (not args.v_min < args.v_max, f"v_min ({args.v_min}) must be below v_max ({args.v_max})"),
        (args.noisy_sigma0 < 0, "noisy_sigma0 must be >= 0"),
    ]
    for bad, message in problems:
        if bad:
            fail(message)


def saved_policy(saved: dict, args: Args, env: gym.Env, device: torch.device):
    """The greedy policy of the Q-network in a model.pt, without noise (eval mode)."""
    q_network = make_q_network(args, env.observation_space, int(env.action_space.n)).to(device)
    q_network.load_state_dict(saved["q_network"])
    q_network.eval()
    return lambda obs: q_network(torch.as_tensor(obs, dtype=torch.float32,
                                                 device=device)).argmax(-1).cpu().numpy()


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
