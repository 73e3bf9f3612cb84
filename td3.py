"""TD3: twin delayed DDPG, DDPG with three changes against the overestimation of Q.

Paper: Fujimoto, van Hoof and Meger, "Addressing Function Approximation Error in Actor-Critic Methods",
ICML 2018. Lecture 7, "TD3 (Twin Delayed Deep Deterministic)" slides and "Algorithm 1 TD3"; the steps are
ddpg.py's (DDPG-1 … DDPG-5 from lecture/PSEUDOCODE.md) with these three changes:
  TD3-1  target policy smoothing: ã = clip(μ_θ'(s') + clip(N(0, σ̃), −c, c), low, high)
  TD3-2  clipped double Q: y = r + γ (1 − terminated) min_{i=1,2} Q_φ'_i(s', ã); both critics regress to y
  TD3-3  delayed policy updates: the actor and the target networks every `policy_frequency` critic updates
`diff ddpg.py td3.py` shows these three changes and little else.
Box action spaces of any bounds and dimension; MuJoCo tasks run unchanged once gymnasium[mujoco] is installed.

Run:
  python td3.py                               # Pendulum-v1, 12k steps
  # MuJoCo, after pip install "gymnasium[mujoco]"; larger networks and γ 0.99 as usual there:
  python td3.py --env-id HalfCheetah-v5 --total-timesteps 1000000 --gamma 0.99 --hidden-size 256 --batch-size 256
  python td3.py --help
"""

import csv
import difflib
import json
import os
import random
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro


@dataclass
class Args:
    env_id: str = "Pendulum-v1"
    """Gymnasium environment id (Box actions with finite bounds, flat Box observations)"""
    seed: int = 1
    """seed of random, numpy, torch and the environment"""
    total_timesteps: int = 12_000
    """environment steps to train for"""
    cuda: bool = True
    """use CUDA when it is available"""
    torch_deterministic: bool = True
    """use deterministic torch kernels"""
    torch_threads: int = 1
    """CPU threads for torch (one is fastest for these small networks)"""
    eval_episodes: int = 10
    """episodes of the final deterministic (mean action) evaluation"""
    run_dir: str = "runs"
    """folder under which each run makes its own folder"""
    save_model: bool = True
    """write the trained weights to model.pt"""

    # Defaults for Pendulum-v1 from the RL Baselines3 Zoo (hyperparams/td3.yml): γ 0.98, lr 1e-3, Gaussian
    # noise σ 0.1, buffer 200k, one gradient step per environment step; σ̃ 0.2, c 0.5 and a policy delay of 2
    # from the TD3 paper. For speed on a CPU, smaller networks (64-64, the Zoo has 400-300), batch 128 (256),
    # 5k random steps first (10k) and 12k steps in all (20k): 7,000 critic steps, which learned Pendulum-v1 on
    # seeds 1-5 in our runs (the delayed actor makes TD3 learn more slowly than ddpg.py, which needs 10k).
    learning_rate: float = 1e-3
    """Adam step size of the actor and of the critic"""
    buffer_size: int = 200_000
    """capacity of the replay buffer B"""
    gamma: float = 0.98
    """discount factor γ"""
    tau: float = 0.005
    """soft update coefficient τ of the target networks (DDPG-5)"""
    batch_size: int = 128
    """transitions per mini-batch"""
    hidden_size: int = 64
    """units in each of the two hidden layers of the actor and of the critic"""
    learning_starts: int = 5_000
    """environment steps of uniformly random actions before learning starts"""
    exploration_noise: float = 0.1
    """σ of the Gaussian exploration noise, as a fraction of the half-range (high − low) / 2 (DDPG-2)"""
    policy_noise: float = 0.2
    """σ̃ of the target policy smoothing noise, as a fraction of the half-range (TD3-1)"""
    noise_clip: float = 0.5
    """c: the smoothing noise is clipped to [−c, c], as a fraction of the half-range (TD3-1)"""
    policy_frequency: int = 2
    """critic updates between two updates of the actor and of the targets (TD3-3)"""
    log_frequency: int = 500
    """environment steps between two rows of metrics.csv"""


# ---------------------------------------------------------------------------------------------------
# The actor, the critic and the replay buffer
# ---------------------------------------------------------------------------------------------------
class Actor(nn.Module):
    """μ_θ(s): tanh squashes the output into (−1, 1), then it is scaled and shifted to [low, high]."""

    def __init__(self, obs_dim: int, action_space: gym.spaces.Box, hidden_size: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, action_space.shape[0]), nn.Tanh(),
        )
        # buffers, not parameters: saved with the weights and moved to the device, but never trained
        self.register_buffer("action_scale", torch.as_tensor((action_space.high - action_space.low) / 2.0,
                                                             dtype=torch.float32))
        self.register_buffer("action_bias", torch.as_tensor((action_space.high + action_space.low) / 2.0,
                                                            dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.action_bias + self.action_scale * self.net(obs)


class Critic(nn.Module):
    """Twin critics Q_φ1(s, a), Q_φ2(s, a) (TD3-2): two independent networks, one module and one optimizer.
    They see the action rescaled to [−1, 1], so any bounds give inputs of one size."""

    def __init__(self, obs_dim: int, action_space: gym.spaces.Box, hidden_size: int):
        super().__init__()
        self.q1, self.q2 = (nn.Sequential(
            nn.Linear(obs_dim + action_space.shape[0], hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, 1),
        ) for _ in range(2))
        self.register_buffer("action_scale", torch.as_tensor((action_space.high - action_space.low) / 2.0,
                                                             dtype=torch.float32))
        self.register_buffer("action_bias", torch.as_tensor((action_space.high + action_space.low) / 2.0,
                                                            dtype=torch.float32))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple:
        x = torch.cat([obs, (action - self.action_bias) / self.action_scale], dim=1)
        return self.q1(x).squeeze(1), self.q2(x).squeeze(1)


class ReplayBuffer:
    """Uniform replay buffer B, preallocated in numpy; the oldest transitions are overwritten."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int):
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, action_dim), dtype=np.float32)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)  # 1 only when the MDP ended, not on a time limit
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


@torch.no_grad()
def smoothed_target_action(actor_target, next_obs, policy_noise, noise_clip):
    """TD3-1: ã = clip(μ_θ'(s') + clip(N(0, σ̃), −c, c), low, high), σ̃ and c in units of the half-range."""
    action = actor_target(next_obs)
    noise = (torch.randn_like(action) * policy_noise).clamp(-noise_clip, noise_clip) * actor_target.action_scale
    low = actor_target.action_bias - actor_target.action_scale
    high = actor_target.action_bias + actor_target.action_scale
    return (action + noise).clamp(low, high)


@torch.no_grad()
def td_target(actor_target, critic_target, rewards, next_obs, terminated, gamma, policy_noise, noise_clip):
    """TD3-2: y = r + γ (1 − terminated) min_i Q_φ'_i(s', ã), ã from TD3-1; no gradient flows into y."""
    next_actions = smoothed_target_action(actor_target, next_obs, policy_noise, noise_clip)
    next_q1, next_q2 = critic_target(next_obs, next_actions)
    return rewards + gamma * (1.0 - terminated) * torch.min(next_q1, next_q2)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float):
    """DDPG-5: θ' ← τθ + (1 − τ)θ' for every parameter; lerp_ computes exactly θ' + τ(θ − θ')."""
    for target_param, param in zip(target.parameters(), source.parameters()):
        target_param.lerp_(param, tau)


# ---------------------------------------------------------------------------------------------------
# Helpers: checking the settings, the run folder, evaluation
# ---------------------------------------------------------------------------------------------------
SCRIPT = os.path.basename(__file__)[: -len(".py")]


def fail(message: str):
    """Stop with one clear line on stderr and exit status 2 (bad input, not a bug)."""
    print(f"{SCRIPT}.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def make_env(env_id: str) -> gym.Env:
    if env_id not in gym.envs.registry:
        close = difflib.get_close_matches(env_id, gym.envs.registry.keys(), n=3, cutoff=0.5)
        fail(f"unknown env id {env_id!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    try:
        return gym.make(env_id)
    except gym.error.Error as e:  # e.g. a missing optional dependency such as MuJoCo
        fail(f"cannot make {env_id!r}: {str(e).splitlines()[0]}")


def check_args(args: Args, env: gym.Env):
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        fail(f"{SCRIPT}.py needs Box (continuous) actions, and {args.env_id} has {type(space).__name__} "
             "actions: use dqn.py (or ppo.py, a2c.py) for discrete actions")
    if len(space.shape) != 1 or not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        fail(f"{SCRIPT}.py scales its actions to finite bounds of a flat Box, and {args.env_id} has {space}")
    if not (isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1):
        fail(f"{SCRIPT}.py needs a flat Box observation space, and {args.env_id} has {env.observation_space}")
    problems = [
        (args.total_timesteps <= 0, "total_timesteps must be positive"),
        (args.learning_rate <= 0, "learning_rate must be positive"),
        (not 0 <= args.gamma <= 1, "gamma must lie in [0, 1]"),
        (not 0 < args.tau <= 1, "tau must lie in (0, 1]"),
        (args.buffer_size <= 0 or args.batch_size <= 0, "buffer_size and batch_size must be positive"),
        (args.batch_size > args.buffer_size, "batch_size cannot exceed buffer_size"),
        (args.learning_starts < args.batch_size, "learning_starts must be at least batch_size"),
        (args.exploration_noise < 0, "exploration_noise must be >= 0"),
        (min(args.policy_noise, args.noise_clip) < 0, "policy_noise and noise_clip must be >= 0"),
        (min(args.policy_frequency, args.log_frequency) <= 0, "policy_frequency and log_frequency must be positive"),
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
def evaluate(actor: Actor, args: Args, device: torch.device) -> list:
    """Deterministic policy μ_θ(s), no noise, on a fresh environment seeded apart from the training one."""
    env = gym.make(args.env_id)
    returns = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + 10_000 + episode)
        done, episode_return = False, 0.0
        while not done:
            action = actor(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()
            obs, reward, terminated, truncated, _ = env.step(action)
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
    check_args(args, env)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(args.torch_deterministic)
    torch.set_num_threads(args.torch_threads)
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
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate, fused=True)  # fused: one kernel
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=args.learning_rate, fused=True)  # both critics
    buffer = ReplayBuffer(args.buffer_size, obs_dim, action_dim)

    run_dir = make_run_folder(args)
    write_json(os.path.join(run_dir, "args.json"), asdict(args))
    episodes_file = open(os.path.join(run_dir, "episodes.csv"), "w", newline="")
    metrics_file = open(os.path.join(run_dir, "metrics.csv"), "w", newline="")
    episodes_log, metrics_log = csv.writer(episodes_file), csv.writer(metrics_file)
    episodes_log.writerow(["global_step", "episodic_return", "episodic_length", "wall_time"])
    metrics_log.writerow(["global_step", "critic_loss", "actor_loss", "q_mean"])
    print(f"{SCRIPT} on {args.env_id}, seed {args.seed}, {args.total_timesteps:,} steps, device {device}")

    start_time = last_print = time.time()
    recent_returns = deque(maxlen=10)
    critic_loss_value, actor_loss = float("nan"), torch.tensor(float("nan"))  # no actor loss before TD3-3's first
    global_step, episode_return, episode_length = 0, 0.0, 0
    obs, _ = env.reset(seed=args.seed)
    env.action_space.seed(args.seed)
    try:
        for global_step in range(1, args.total_timesteps + 1):
            # DDPG-2: random actions first, then μ_θ(s) plus Gaussian noise, clipped to the bounds; store in B
            if global_step <= args.learning_starts:
                action = env.action_space.sample()
            else:
                with torch.no_grad():
                    action = actor(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()
                noise = rng.normal(0.0, args.exploration_noise, size=action_dim) * (high - low) / 2.0
                action = np.clip(action + noise, low, high).astype(np.float32)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            # On a time limit (truncated) next_obs is the real last observation and terminated is False,
            # so DDPG-3 still bootstraps from it; only a real end of the MDP (terminated) stops the bootstrap.
            buffer.add(obs, action, reward, next_obs, terminated)
            episode_return += float(reward)
            episode_length += 1
            obs = next_obs
            if terminated or truncated:
                episodes_log.writerow([global_step, episode_return, episode_length, round(time.time() - start_time, 3)])
                episodes_file.flush()
                recent_returns.append(episode_return)
                obs, _ = env.reset()
                episode_return, episode_length = 0.0, 0

            if global_step > args.learning_starts:
                b_obs, b_actions, b_rewards, b_next_obs, b_terminated = buffer.sample(args.batch_size, rng, device)
                # DDPG-3 with TD3-1 and TD3-2: smoothed target action, the smaller of the two target critics;
                # both critics regress on the same y
                y = td_target(actor_target, critic_target, b_rewards, b_next_obs, b_terminated, args.gamma,
                              args.policy_noise, args.noise_clip)
                q1_values, q2_values = critic(b_obs, b_actions)
                critic_loss = F.mse_loss(q1_values, y) + F.mse_loss(q2_values, y)
                critic_optimizer.zero_grad()
                critic_loss.backward()
                critic_optimizer.step()

                # TD3-3: the actor and the targets only every policy_frequency critic updates
                if global_step % args.policy_frequency == 0:
                    # DDPG-4: move μ_θ(s) uphill on Q_φ1(s, ·) (the first critic, as in the paper)
                    actor_loss = -critic(b_obs, actor(b_obs))[0].mean()
                    actor_optimizer.zero_grad()
                    actor_loss.backward()
                    actor_optimizer.step()

                    # DDPG-5: the targets slowly track the learned networks
                    soft_update(actor_target, actor, args.tau)
                    soft_update(critic_target, critic, args.tau)

                if global_step % args.log_frequency == 0:
                    critic_loss_value = critic_loss.item()
                    metrics_log.writerow([global_step, critic_loss_value, actor_loss.item(), q1_values.mean().item()])
                    metrics_file.flush()

            if time.time() - last_print > 2:
                last_print = time.time()
                mean_return = np.mean(recent_returns) if recent_returns else float("nan")
                print(f"step {global_step:>8,} | return (last 10) {mean_return:8.1f} | "
                      f"critic loss {critic_loss_value:.4f} | {global_step / (last_print - start_time):,.0f} steps/s")
    except KeyboardInterrupt:
        print(f"\ninterrupted at step {global_step:,}: saving the model and the logs so far")
        raise
    else:
        sps = global_step / (time.time() - start_time)
        returns = evaluate(actor, args, device) if args.eval_episodes > 0 else []
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
        env.close()
        if args.save_model:
            model = {"actor": actor.state_dict(), "critic": critic.state_dict(), "args": asdict(args),
                     "global_step": global_step}
            write_atomically(os.path.join(run_dir, "model.pt"), lambda tmp: torch.save(model, tmp))
        print(f"run folder: {run_dir}")
    return {"eval_mean": summary["mean"], "eval_std": summary["std"], "global_step": global_step,
            "sps": sps, "run_dir": run_dir}


if __name__ == "__main__":
    try:
        train(tyro.cli(Args))
    except KeyboardInterrupt:
        sys.exit(130)
