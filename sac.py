"""SAC: soft actor-critic, off-policy maximum-entropy actor-critic with a stochastic actor.

Papers: Haarnoja et al., "Soft Actor-Critic: Off-Policy Maximum Entropy Deep Reinforcement Learning with a
Stochastic Actor", ICML 2018; automatic α: Haarnoja et al., "Soft Actor-Critic Algorithms and Applications",
2018 (2018b). Lecture 7, "SAC (Soft Actor Critic)" slides and "Algorithm 1 Soft Actor-Critic"; steps from
lecture/PSEUDOCODE.md:
  SAC-1  stochastic actor: a Gaussian squashed by tanh and scaled to the bounds; twin critics, their targets
  SAC-2  y = r + γ (1 − terminated) (min_i Q_φ'_i(s', ã') − α log π_θ(ã'|s')), ã' ~ π_θ(·|s'), no gradient
  SAC-3  each Q_φi regresses on y
  SAC-4  actor: maximize min_i Q_φi(s, ã_θ(s)) − α log π_θ(ã_θ(s)|s), ã_θ(s) reparameterized
  SAC-5  soft target updates φ' ← τφ + (1 − τ)φ' (the slides' ρ is 1 − τ)
  SAC-6  tune α toward the target entropy −dim(A) (on by default; --no-autotune keeps α fixed)
Compared with td3.py: a sampled action instead of added noise, an entropy term in the target and in the actor
loss, no target actor, and the actor updated at every step.
Box action spaces of any bounds and dimension; MuJoCo tasks run unchanged once gymnasium[mujoco] is installed.

Run:
  python sac.py                               # Pendulum-v1, 10k steps
  python sac.py --no-autotune --alpha 0.1     # fixed α
  # MuJoCo, after pip install "gymnasium[mujoco]"; larger networks and γ 0.99 as usual there:
  python sac.py --env-id HalfCheetah-v5 --total-timesteps 1000000 --gamma 0.99 --hidden-size 256 --batch-size 256
  python sac.py --help
"""

import csv
import difflib
import json
import math
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
    total_timesteps: int = 10_000
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

    # Defaults for Pendulum-v1: lr 1e-3, automatic α, τ 0.005 and one gradient step per environment step as in
    # the RL Baselines3 Zoo (hyperparams/sac.yml); γ 0.98 and buffer 200k from its ddpg/td3 entries. For speed
    # on a CPU, smaller networks (64-64, the Zoo has 256-256), batch 128 (256), 5k random steps first and 10k
    # steps in all (20k): 5,000 gradient steps, which learned Pendulum-v1 on seeds 1-5 in our runs.
    learning_rate: float = 1e-3
    """Adam step size of the actor, of the critics and of log α"""
    buffer_size: int = 200_000
    """capacity of the replay buffer B"""
    gamma: float = 0.98
    """discount factor γ"""
    tau: float = 0.005
    """soft update coefficient τ of the target critics (SAC-5)"""
    batch_size: int = 128
    """transitions per mini-batch"""
    hidden_size: int = 64
    """units in each of the two hidden layers of the actor and of the critics"""
    learning_starts: int = 5_000
    """environment steps of uniformly random actions before learning starts"""
    autotune: bool = True
    """tune α automatically toward the target entropy −dim(A) (SAC-6)"""
    alpha: float = 0.2
    """entropy coefficient α: fixed with --no-autotune, its starting value otherwise"""
    log_frequency: int = 500
    """environment steps between two rows of metrics.csv"""


# ---------------------------------------------------------------------------------------------------
# The actor, the critic and the replay buffer
# ---------------------------------------------------------------------------------------------------
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # bounds of log σ, as in the authors' implementation


class Actor(nn.Module):
    """π_θ(·|s) (SAC-1): u ~ N(mean(s), σ(s)²), squashed and scaled to the bounds, a = bias + scale · tanh(u)."""

    def __init__(self, obs_dim: int, action_space: gym.spaces.Box, hidden_size: int):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(obs_dim, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(),
        )
        self.mean = nn.Linear(hidden_size, action_space.shape[0])
        self.log_std = nn.Linear(hidden_size, action_space.shape[0])
        # buffers, not parameters: saved with the weights and moved to the device, but never trained
        self.register_buffer("action_scale", torch.as_tensor((action_space.high - action_space.low) / 2.0,
                                                             dtype=torch.float32))
        self.register_buffer("action_bias", torch.as_tensor((action_space.high + action_space.low) / 2.0,
                                                            dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> tuple:
        """A sample ã = bias + scale · tanh(mean + σ ε), ε ~ N(0, I), differentiable in θ (the
        reparameterization trick), and its log-probability log π_θ(ã|s)."""
        hidden = self.trunk(obs)
        mean, log_std = self.mean(hidden), self.log_std(hidden).clamp(LOG_STD_MIN, LOG_STD_MAX)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return self.action_bias + self.action_scale * torch.tanh(u), squashed_log_prob(u, mean, log_std,
                                                                                        self.action_scale)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The evaluation action: the squashed mean, bias + scale · tanh(mean(s))."""
        return self.action_bias + self.action_scale * torch.tanh(self.mean(self.trunk(obs)))


def squashed_log_prob(u, mean, log_std, action_scale):
    """log π(a|s) of a = bias + scale · tanh(u), u ~ N(mean, σ²), by the change of variables
        log π(a|s) = Σ_i [log N(u_i; mean_i, σ_i) − log(scale_i (1 − tanh²(u_i)))]
    with log(1 − tanh²(u)) written as 2 (log 2 − u − softplus(−2u)): the same value, but finite where
    tanh(u) rounds to ±1 (log(1 − tanh²) would be log 0 there)."""
    log_normal = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2.0 * math.pi)
    log_det_jacobian = torch.log(action_scale) + 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return (log_normal - log_det_jacobian).sum(dim=-1)


class Critic(nn.Module):
    """Twin critics Q_φ1(s, a), Q_φ2(s, a) (SAC-1): two independent networks, one module and one optimizer.
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
def td_target(actor, critic_target, rewards, next_obs, terminated, gamma, alpha):
    """SAC-2: y = r + γ (1 − terminated) (min_i Q_φ'_i(s', ã') − α log π_θ(ã'|s')), ã' ~ π_θ(·|s') from the
    current actor (SAC has no target actor); no gradient flows into y."""
    next_actions, next_log_prob = actor(next_obs)
    next_q1, next_q2 = critic_target(next_obs, next_actions)
    return rewards + gamma * (1.0 - terminated) * (torch.min(next_q1, next_q2) - alpha * next_log_prob)


def alpha_loss(log_alpha, log_prob, target_entropy):
    """SAC-6: J(α) = mean(−α (log π(ã|s) + H̄)) with α = exp(log α) > 0. Its gradient lowers α when the
    entropy −log π is above the target H̄ and raises it when below; no gradient flows into the actor."""
    return -(log_alpha.exp() * (log_prob.detach() + target_entropy)).mean()


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float):
    """SAC-5: φ' ← τφ + (1 − τ)φ' for every parameter; lerp_ computes exactly φ' + τ(φ − φ')."""
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
        (args.alpha <= 0, "alpha must be positive"),
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
def evaluate(actor: Actor, args: Args, device: torch.device) -> list:
    """Deterministic policy (the squashed mean) on a fresh environment seeded apart from the training one."""
    env = gym.make(args.env_id)
    returns = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=args.seed + 10_000 + episode)
        done, episode_return = False, 0.0
        while not done:
            action = actor.deterministic(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()
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
    rng = np.random.default_rng(args.seed)  # mini-batch indices
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")

    # SAC-1: stochastic actor π_θ, twin critics Q_φ1, Q_φ2 and their target copies φ' ← φ (no target actor)
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    actor = Actor(obs_dim, env.action_space, args.hidden_size).to(device)
    critic = Critic(obs_dim, env.action_space, args.hidden_size).to(device)
    critic_target = Critic(obs_dim, env.action_space, args.hidden_size).to(device)
    critic_target.load_state_dict(critic.state_dict())
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate, fused=True)  # fused: one kernel
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=args.learning_rate, fused=True)  # both critics
    # SAC-6: α = exp(log α) stays positive; the target entropy −dim(A) is the heuristic of Haarnoja et al. 2018b
    log_alpha = torch.tensor([math.log(args.alpha)], device=device, requires_grad=args.autotune)
    alpha_optimizer = torch.optim.Adam([log_alpha], lr=args.learning_rate, fused=True)
    target_entropy = -float(action_dim)
    alpha = log_alpha.detach().exp()
    buffer = ReplayBuffer(args.buffer_size, obs_dim, action_dim)

    run_dir = make_run_folder(args)
    write_json(os.path.join(run_dir, "args.json"), asdict(args))
    episodes_file = open(os.path.join(run_dir, "episodes.csv"), "w", newline="")
    metrics_file = open(os.path.join(run_dir, "metrics.csv"), "w", newline="")
    episodes_log, metrics_log = csv.writer(episodes_file), csv.writer(metrics_file)
    episodes_log.writerow(["global_step", "episodic_return", "episodic_length", "wall_time"])
    metrics_log.writerow(["global_step", "critic_loss", "actor_loss", "q_mean", "alpha", "entropy"])
    print(f"{SCRIPT} on {args.env_id}, seed {args.seed}, {args.total_timesteps:,} steps, device {device}")

    start_time = last_print = time.time()
    recent_returns = deque(maxlen=10)
    critic_loss_value = float("nan")
    global_step, episode_return, episode_length = 0, 0.0, 0
    obs, _ = env.reset(seed=args.seed)
    env.action_space.seed(args.seed)
    try:
        for global_step in range(1, args.total_timesteps + 1):
            # random actions first, then a ~ π_θ(·|s): the policy's own randomness explores; store in B
            if global_step <= args.learning_starts:
                action = env.action_space.sample()
            else:
                with torch.no_grad():
                    action, _ = actor(torch.as_tensor(obs, dtype=torch.float32, device=device))
                action = action.cpu().numpy()
            next_obs, reward, terminated, truncated, _ = env.step(action)
            # On a time limit (truncated) next_obs is the real last observation and terminated is False,
            # so SAC-2 still bootstraps from it; only a real end of the MDP (terminated) stops the bootstrap.
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
                # SAC-2: entropy-regularized targets from the smaller target critic, without gradient
                y = td_target(actor, critic_target, b_rewards, b_next_obs, b_terminated, args.gamma, alpha)
                # SAC-3: both critics regress on the same y
                q1_values, q2_values = critic(b_obs, b_actions)
                critic_loss = F.mse_loss(q1_values, y) + F.mse_loss(q2_values, y)
                critic_optimizer.zero_grad()
                critic_loss.backward()
                critic_optimizer.step()

                # SAC-4: maximize min_i Q_φi(s, ã) − α log π_θ(ã|s) through a reparameterized ã;
                # only the actor's optimizer steps here
                actions, log_prob = actor(b_obs)
                actor_loss = (alpha * log_prob - torch.min(*critic(b_obs, actions))).mean()
                actor_optimizer.zero_grad()
                actor_loss.backward()
                actor_optimizer.step()

                # SAC-6: one step on J(α) with the log-probabilities of the actor step
                if args.autotune:
                    loss_alpha = alpha_loss(log_alpha, log_prob, target_entropy)
                    alpha_optimizer.zero_grad()
                    loss_alpha.backward()
                    alpha_optimizer.step()
                    alpha = log_alpha.detach().exp()

                # SAC-5: the target critics slowly track the learned ones
                soft_update(critic_target, critic, args.tau)

                if global_step % args.log_frequency == 0:
                    critic_loss_value = critic_loss.item()
                    metrics_log.writerow([global_step, critic_loss_value, actor_loss.item(), q1_values.mean().item(),
                                          alpha.item(), -log_prob.mean().item()])
                    metrics_file.flush()

            if time.time() - last_print > 2:
                last_print = time.time()
                mean_return = np.mean(recent_returns) if recent_returns else float("nan")
                print(f"step {global_step:>8,} | return (last 10) {mean_return:8.1f} | α {alpha.item():.3f} | "
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
            model = {"actor": actor.state_dict(), "critic": critic.state_dict(), "log_alpha": log_alpha.detach(),
                     "args": asdict(args), "global_step": global_step}
            write_atomically(os.path.join(run_dir, "model.pt"), lambda tmp: torch.save(model, tmp))
        print(f"run folder: {run_dir}")
    return {"eval_mean": summary["mean"], "eval_std": summary["std"], "global_step": global_step,
            "sps": sps, "run_dir": run_dir}


if __name__ == "__main__":
    try:
        train(tyro.cli(Args))
    except KeyboardInterrupt:
        sys.exit(130)
