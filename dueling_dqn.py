"""Dueling DQN: DQN whose Q-network has a value stream V(s) and an advantage stream A(s, a).

Paper: Wang et al., "Dueling Network Architectures for Deep Reinforcement Learning", ICML 2016.
Lecture 7, "Variant: Dueling DQN".

The lecture's steps, as labelled in the code below:
  DQN-1  act ε-greedily on Q_φ; store (s, a, r, s', terminated) in the replay buffer B
  DQN-2  sample a mini-batch from B uniformly: consecutive steps are correlated, a random one is not
  DQN-3  targets y = r + γ (1 − terminated) max_a' Q_φ'(s', a') from the target network φ', with
         no gradient through y: the regression chases a target that holds still between two copies
  DQN-4  one gradient step on the loss between Q_φ(s, a) and y
  DQN-5  copy φ into φ' every `target_network_frequency` steps
  DUEL   Q_φ(s, a) = V(s) + A(s, a) − mean_a' A(s, a'): shared hidden layers, then a value stream
         and an advantage stream. V + A alone is not identifiable (add c to V, subtract it from A:
         same Q); subtracting the mean makes A average to zero, so V(s) is the mean of Q(s, ·)

Only the network differs from DQN's (dqn.py; `diff dqn.py dueling_dqn.py` shows it): the loss,
target and loop are DQN's, and the default batch is larger (512 transitions). V(s) learns from every
transition of s whatever its action, which helps where the choice of action rarely matters. The
paper's streams each have a hidden layer on top of the shared convolutional layers; here DQN's two
hidden layers are shared and each stream is one linear layer, so that the network has DQN's size.
metrics.csv logs q_mean, the mean Q_φ(s, a) of the batches.

Reading order: the settings (Args), the network, the buffer and the update, then train(), the loop
that calls them step by step. Everything under "Bookkeeping" at the bottom (the run folder, logs,
errors, evaluation, Ctrl-C) can be skipped on a first reading.

The Q-network reads flat observations with two hidden layers, and images (MinAtar's grids, Atari's
frames) with the convolutional torso of Pixels. The settings come per env from ENV_DEFAULTS.

Run:
  python dueling_dqn.py                      # CartPole-v1, 100k steps
  python dueling_dqn.py --env-id Acrobot-v1 --seed 2
  python dueling_dqn.py --env-id MinAtar/Breakout-v1 # pip install minatar
  python dueling_dqn.py --env-id ALE/Pong-v5  # pip install "gymnasium[atari,other]"; a GPU: --cuda
  python dueling_dqn.py --help
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


# The settings that differ between envs (None in Args): each run takes its values from this table,
# the env's own row, or the row its task shares (SHARED_ROWS: every MinAtar game takes "MinAtar",
# every Atari game "Atari"), or else, with a warning, the row of the tuned env (TUNED_ON).
# ours (README: how the defaults were chosen), one row for CartPole-v1 and Acrobot-v1
CLASSIC_CONTROL = dict(
    total_timesteps=100_000, learning_rate=1e-3, anneal_lr=True, buffer_size=50_000,
    batch_size=256, learning_starts=1_000, train_frequency=4, target_network_frequency=250,
    end_e=0.05, exploration_fraction=0.25, huber=False)
ENV_DEFAULTS = {
    "CartPole-v1": CLASSIC_CONTROL,
    "Acrobot-v1": CLASSIC_CONTROL,
    # The MinAtar paper's DQN (Young & Tian 2019): batch 32, buffer 100k, learning from 5k steps,
    # φ' every 1k, ε 1 → 0.1 over the first 100k steps (a tenth of this budget), the Huber loss,
    # α 2.5e-4 (its RMSprop's; ours Adam's), constant. Ours: a gradient step every 4 steps (Nature
    # DQN's; the paper's every step costs a CPU 3 times as long), 1M of its 5M steps (README:
    # Pixels)
    "MinAtar": dict(total_timesteps=1_000_000, learning_rate=2.5e-4, anneal_lr=False,
                    buffer_size=100_000, batch_size=32, learning_starts=5_000, train_frequency=4,
                    target_network_frequency=1_000, end_e=0.1, exploration_fraction=0.1,
                    huber=True),
    # RL Zoo's Atari DQN (Nature DQN's network and Huber loss, Adam at 1e-4, φ' every 1k steps,
    # ε 1 → 0.01 over a tenth of 10M steps), but a buffer of 50k (the Zoo's 100k, Nature's 1M do not
    # fit a laptop's memory: README: Pixels) and learning from 50k steps
    "Atari": dict(total_timesteps=10_000_000, learning_rate=1e-4, anneal_lr=False,
                  buffer_size=50_000, batch_size=32, learning_starts=50_000, train_frequency=4,
                  target_network_frequency=1_000, end_e=0.01, exploration_fraction=0.1,
                  huber=True),
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
    anneal_lr: bool = None
    """decay the learning rate linearly to 0, so the last network (the one evaluated) settles
    (per-env default: ENV_DEFAULTS)"""
    buffer_size: int = None
    """capacity of the replay buffer B (per-env default: ENV_DEFAULTS)"""
    gamma: float = 0.99
    """discount factor γ"""
    batch_size: int = None
    """transitions per mini-batch (DQN-2) (per-env default: ENV_DEFAULTS)"""
    hidden_size: int = 256  # ours (README: how the defaults were chosen)
    """units in each of the two hidden layers, for flat observations (images: Pixels)"""
    learning_starts: int = None
    """environment steps of random play before learning starts (per-env default: ENV_DEFAULTS)"""
    train_frequency: int = None
    """environment steps between two gradient steps (per-env default: ENV_DEFAULTS)"""
    target_network_frequency: int = None
    """environment steps between two copies of φ into φ' (DQN-5) (per-env default: ENV_DEFAULTS)"""
    start_e: float = 1.0
    """ε at the start of training"""
    end_e: float = None
    """ε after the decay (its floor) (per-env default: ENV_DEFAULTS)"""
    exploration_fraction: float = None
    """fraction of total_timesteps over which ε decays linearly from start_e to end_e (per-env
    default: ENV_DEFAULTS)"""
    huber: bool = None
    """the Huber loss (the Nature paper's clipped error) instead of the squared error (per-env
    default: ENV_DEFAULTS)"""
    log_frequency: int = 500
    """environment steps between two rows of metrics.csv"""
    settings_row: tyro.conf.Suppress[dict | None] = None
    """not a setting: the row of ENV_DEFAULTS that the per-env settings came from, as args.json
    records it: {"row", "tuned_on", "borrowed"} (with_env_defaults fills it in)"""


# --------------------------------------------------------------------------------------------------
# The Q-network, the replay buffer and the update
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
    """Dueling Q_φ(s, ·): DQN's torso, shared, then a value head V(s) and an advantage
    head A(s, ·). On images the paper splits the two streams before the torso's last layer, each
    with 512 units of its own; here they share it, so that the change from dqn.py is the heads."""

    def __init__(self, observation_space: gym.spaces.Box, n_actions: int, hidden_size: int):
        super().__init__()
        self.torso, features = torso(observation_space, hidden_size)
        self.value = nn.Linear(features, 1)
        self.advantage = nn.Linear(features, n_actions)

    def streams(self, obs: torch.Tensor):
        """V(s) with shape (batch, 1) and A(s, ·) with shape (batch, n_actions)."""
        features = self.torso(obs)
        return self.value(features), self.advantage(features)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        value, advantage = self.streams(obs)
        # DUEL: Q = V + A − mean_a A; the mean removes the constant that V and A could trade
        return value + advantage - advantage.mean(dim=-1, keepdim=True)


class ReplayBuffer:
    """Uniform replay buffer B, preallocated in numpy; the oldest transitions are overwritten.
    Observations keep their own type: an image's uint8 takes a quarter of float32's memory."""

    def __init__(self, capacity: int, observation_space: gym.spaces.Box):
        shape, dtype = (capacity, *observation_space.shape), observation_space.dtype
        self.obs, self.next_obs = np.zeros(shape, dtype), np.zeros(shape, dtype)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        # 1 only when the MDP ended; a time limit (truncation) stores 0: the target bootstraps there
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


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    return start + min(t / duration, 1.0) * (end - start)


@torch.no_grad()  # easy to overlook: no gradient flows into the target y
def td_target(target_network, rewards, next_obs, terminated, gamma):
    """DQN-3: y = r + γ (1 − terminated) max_a' Q_φ'(s', a'); no gradient flows into y."""
    next_q = target_network(next_obs).max(dim=1).values
    return rewards + gamma * (1.0 - terminated) * next_q


def update(q_network, target_network, optimizer, batch, gamma: float, huber: bool):
    """DQN-3 and DQN-4 on one mini-batch; returns the loss and Q_φ(s, a)."""
    obs, actions, rewards, next_obs, terminated = batch
    y = td_target(target_network, rewards, next_obs, terminated, gamma)
    # DQN-4: gradient step on the error between Q_φ(s, a) and y. The Nature paper clips the
    # error's gradient at 1 (the Huber loss); on CartPole-v1, whose values reach 100, plain DQN
    # solved more seeds with the squared error (README: how the defaults were chosen).
    q_values = q_network(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
    loss = F.huber_loss(q_values, y) if huber else F.mse_loss(q_values, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss, q_values


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
    q_network = QNetwork(observations, n_actions, args.hidden_size).to(device)
    target_network = QNetwork(observations, n_actions, args.hidden_size).to(device)
    target_network.load_state_dict(q_network.state_dict())  # φ' ← φ
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)
    buffer = ReplayBuffer(args.buffer_size, observations)
    exploration_steps = max(1, int(args.exploration_fraction * args.total_timesteps))

    @torch.no_grad()
    def greedy(obs) -> np.ndarray:  # argmax_a Q(s, a), of one state or of each row of a batch
        q_values = q_network(torch.as_tensor(obs, dtype=torch.float32, device=device))
        return q_values.argmax(-1).cpu().numpy()

    with Run(args, env, device, args.total_timesteps, ["td_loss", "q_mean", "epsilon"]) as run:
        run.save(q_network=q_network)
        obs, _ = env.reset(seed=args.seed)
        env.action_space.seed(args.seed)
        for global_step in range(1, args.total_timesteps + 1):
            # DQN-1: ε-greedy action on Q_φ, observe (s, a, r, s'), add it to B
            epsilon = linear_schedule(args.start_e, args.end_e, exploration_steps, global_step)
            action = env.action_space.sample() if rng.random() < epsilon else greedy(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            # Easy to get wrong: store terminated, not truncated. At a time limit, next_obs is
            # the real last observation and DQN-3 bootstraps from it; only an MDP end stops that.
            buffer.add(obs, action, reward, next_obs, terminated)
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
                # DQN-2: sample a mini-batch from B uniformly
                batch = buffer.sample(args.batch_size, rng, device)
                # DQN-3 and DQN-4: targets from the target network, one gradient step towards them
                td_loss, q_values = update(q_network, target_network, optimizer, batch, args.gamma,
                                           args.huber)
                if global_step % args.log_frequency == 0:
                    run.log(global_step, td_loss.item(), q_values.mean().item(), epsilon)

            if global_step % args.target_network_frequency == 0:  # DQN-5: copy φ into φ'
                target_network.load_state_dict(q_network.state_dict())
            run.curve(global_step, greedy)  # eval_curve.csv, every eval_every steps
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
    ]
    for bad, message in problems:
        if bad:
            fail(message)


def saved_policy(saved: dict, args: Args, env: gym.Env, device: torch.device):
    """The greedy policy of the Q-network in a model.pt."""
    n_actions = int(env.action_space.n)
    q_network = QNetwork(env.observation_space, n_actions, args.hidden_size).to(device)
    q_network.load_state_dict(saved["q_network"])
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
