"""Teaching plots: the quantities the lecture's slides talk about, from the logs of real runs.

    python plots/teaching.py --run-dir runs/benchmark --out plots
    python plots/teaching.py --run-dir runs/benchmark --out plots --ablation-train   # trains Rainbow's ablation

Writes, for the scripts whose runs it finds (mean over seeds as a line, min..max as a band):
- teaching_overestimation.png: DQN against Double DQN (lecture 7, "Double DQN: solving overestimation in
  DQN" and "Value estimation in Atari"), in two parts:
  (a) CartPole-v1, from the dqn and double_dqn runs' model.pt: the estimate max_a Q(s, a) of states that the
      final greedy policy visits, against the discounted Monte-Carlo return of the same greedy policy from
      the same states, rolled on without the 500-step time limit (the scripts bootstrap through a time
      limit, so the limit is no part of the value they estimate);
  (b)-(d) the maximization-bias MDP of Sutton & Barto (Example 6.7; van Hasselt 2010), registered below as
      MaximizationBias-v0: dqn.py and double_dqn.py are trained on it here, through their own train(), at
      3 budgets × 8 seeds (48 short runs, about 2 minutes on one core; they are kept under --toy-run-dir and
      reused next time), and their estimates of Q(A, left) and max_a Q(B, a) and their choices in A are set
      against the exact values;
- teaching_overestimation_minatar.png: the same measure as (a) on the MinAtar games of PIXEL_VALUE_ENVS
  (van Hasselt et al. 2016 showed it on Atari), from the dqn and double_dqn runs of `benchmark.py --minatar`
  under --minatar-run-dir: max_a Q(s, a) of the states the final greedy policy visits in 20 seeded episodes
  (every 10th) against one Monte-Carlo rollout of that policy from a copy of each state, and each run's
  mean gap as a share of its mean return; skipped with one line when there are no such runs;
- teaching_ppo_kl_clip.png: PPO's approximate KL and clip fraction over training, per env (lecture 7,
  "PPO-Clip");
- teaching_sac_alpha_entropy.png: SAC's temperature α and its policy's entropy (lecture 7, "Soft
  Actor-Critic", automatic temperature);
- teaching_per_beta_weights.png: PER's β schedule and mean importance weight (Schaul et al. 2016);
- teaching_reinforce_grad_variance.png: REINFORCE's policy-gradient estimate with and without its learned
  baseline (lecture 7, "Recap: Policy Gradient"; REINF-4 in reinforce.py), made when the run folder holds
  reinforce runs on CartPole-v1. Snapshots of reinforce.py with its defaults: one run per --variance-seeds,
  trained here through its own train() with the schedule of the full run and stopped after the last of
  --variance-steps (kept under --variance-run-dir and reused next time), and the final model.pt of up to
  --variance-models of the folder's own runs. With each fixed snapshot, --variance-batches independent
  batches of num_episodes episodes are played, and on each batch the gradient of the script's own policy
  loss (its reward_to_go and update(), advantages not normalized) is taken twice, with Â = G − V_φ(s) and
  with Â = G, the same G: (a) the variance of the estimate across the batches (summed over the policy's
  parameters) against the training step; (b) at the first seed's last snapshot, the norm of the mean over
  the first k batches: the part that the baseline subtracts has expectation 0 (REINF-4), so its mean should
  shrink like noise, as 1/√k, while the two estimates' means settle on one gradient.
  The defaults (6 snapshots up to 50k steps, 50 batches, 2 models) took 122 s on one core of our 2-core
  machine, with two training runs beside it.
- teaching_rainbow_ablation.png: Rainbow's ablation on CartPole-v1 (Hessel et al. 2018, Figure 3): the full
  agent against each of its six parts turned off by its flag (--no-double, --no-dueling, --no-per, --n-step 1,
  --no-distributional, --no-noisy), training curves and final greedy evaluations over --ablation-seeds. The
  runs (experiments rainbow, rainbow-no-double, ..., rainbow-n-step-1, ...) are looked for under
  --ablation-run-dir; with --ablation-train the missing ones are trained there, one at a time, through
  rainbow.py's own train() at --ablation-steps (default: rainbow.py's budget for CartPole-v1), and reused next
  time. That is 7 runs per seed at the full budget, so it is never done without the flag; without it and
  without runs, the figure is skipped with one line.
"""

import argparse
import contextlib
import copy
import importlib
import io
import json
import os
import sys
import time
import warnings
from dataclasses import asdict
from unittest import mock

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from plot import draw_band, on_grid, seeds as seed_count  # noqa: E402
from runs import THRESHOLDS, group, load_runs, read_columns, read_run, stamp_of  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]
DQN_SCRIPTS = ("dqn", "double_dqn")
PIXEL_VALUE_ENVS = ("MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1")  # benchmark.py --minatar's games


def metric_series(runs: list, column: str) -> list:
    series = []
    for run in runs:
        metrics = run.metrics()
        if column in metrics and len(metrics[column]):
            series.append((metrics["global_step"], metrics[column]))
    return series


def import_script(name: str):
    """An algorithm script of the repository (e.g. "dqn") as a module: its Args, networks and train()."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    return importlib.import_module(name)


def save(fig, path: str):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


# ---------------------------------------------------------------------------------------------------
# Over-estimation, part 1: Q estimates against Monte-Carlo returns of the same policy from the same states
# ---------------------------------------------------------------------------------------------------
def script_of(run_path: str, checkpoint: dict = None) -> str:
    """The script that wrote a run folder: model.pt names it; older runs only in the folder's name."""
    checkpoint = checkpoint or torch.load(os.path.join(run_path, "model.pt"), weights_only=True)
    return checkpoint.get("script") or os.path.basename(run_path.rstrip(os.sep)).split("__")[1]


def load_q_network(run_path: str):
    """The final Q_φ of a dqn.py or double_dqn.py run folder (its script's QNetwork, weights from model.pt)
    and the run's args."""
    checkpoint = torch.load(os.path.join(run_path, "model.pt"), weights_only=True)
    args = checkpoint["args"]
    module = import_script(script_of(run_path, checkpoint))
    env = module.make_env(args["env_id"], training=False)  # MinAtar's and Atari's too, as the run saw them
    q_network = module.QNetwork(env.observation_space, int(env.action_space.n), args["hidden_size"])
    env.close()
    q_network.load_state_dict(checkpoint["q_network"])
    return q_network.eval(), args


def greedy_policy(q_network):
    """Observations (n, obs_dim) → the greedy actions argmax_a Q(s, a), (n,)."""
    @torch.no_grad()
    def policy(observations: np.ndarray) -> np.ndarray:
        return q_network(torch.as_tensor(observations, dtype=torch.float32)).argmax(dim=1).numpy()
    return policy


def visited_states(policy, env_id: str, episodes: int, stride: int, seed: int = 100_000, make=gym.make):
    """Every `stride`-th state that `policy` visits in `episodes` episodes of env_id (time limit included),
    the episodes seeded seed, seed + 1, ...: returns copies of the unwrapped env in those states and their
    observations. `make` builds the env (a script's make_env for MinAtar, whose package registers it)."""
    env = make(env_id)
    snapshots, observations = [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        t, done = 0, False
        while not done:
            if t % stride == 0:
                snapshots.append(copy.deepcopy(env.unwrapped))
                observations.append(obs)
            obs, _, terminated, truncated, _ = env.step(int(policy(obs[None])[0]))
            done, t = terminated or truncated, t + 1
    env.close()
    return snapshots, np.array(observations, dtype=np.float32)


def tolerance_horizon(gamma: float, tolerance: float = 1e-4):
    """(H, γ^H): the first H with γ^H < tolerance, where discounted_returns stops a rollout."""
    if not 0 <= gamma < 1:
        raise ValueError("the Monte-Carlo return needs γ < 1")
    horizon = int(np.ceil(np.log(tolerance) / np.log(gamma))) if gamma > 0 else 1
    return horizon, gamma ** horizon


def discounted_returns(policy, snapshots: list, observations: np.ndarray, gamma: float,
                       tolerance: float = 1e-4) -> np.ndarray:
    """Monte-Carlo discounted return Σ_t γ^t r_t of the deterministic `policy` from each snapshot (an unwrapped
    env, so with no time limit: a truncation is not an end of the MDP, and the scripts bootstrap through it).
    Each rollout runs until the env terminates or γ^t < tolerance: with rewards at most r_max the part left
    out is at most tolerance · r_max / (1 − γ) (0.01 on CartPole-v1 with γ = 0.99)."""
    horizon, _ = tolerance_horizon(gamma, tolerance)
    envs = [copy.deepcopy(snapshot) for snapshot in snapshots]
    obs = np.array(observations, dtype=np.float32)
    returns, alive, discount = np.zeros(len(envs)), np.arange(len(envs)), 1.0
    for _ in range(horizon):
        if not len(alive):
            break
        still = []
        for i, action in zip(alive, policy(obs[alive])):
            next_obs, reward, terminated, _, _ = envs[i].step(int(action))
            returns[i] += discount * float(reward)
            obs[i] = next_obs
            if not terminated:
                still.append(i)
        alive, discount = np.array(still, dtype=np.int64), discount * gamma
    return returns


def value_pairs(run_path: str, episodes: int = 5, stride: int = 20):
    """(max_a Q(s, a), Monte-Carlo return of the greedy policy from s) for the states s that the run's final
    greedy policy visits in `episodes` seeded episodes (every `stride`-th step)."""
    q_network, args = load_q_network(run_path)
    policy = greedy_policy(q_network)
    module = import_script(script_of(run_path))
    snapshots, observations = visited_states(policy, args["env_id"], episodes, stride,
                                             make=lambda env_id: module.make_env(env_id, training=False))
    with torch.no_grad():
        estimates = q_network(torch.as_tensor(observations)).max(dim=1).values.numpy()
    return estimates, discounted_returns(policy, snapshots, observations, args["gamma"])


def overestimation_pixels(groups: dict, out: str, env_ids=PIXEL_VALUE_ENVS, episodes: int = 20,
                          stride: int = 10):
    """teaching_overestimation_minatar.png: per MinAtar game with dqn or double_dqn runs, max_a Q(s, a) of the
    states the final greedy policy visits against the Monte-Carlo return of that policy from them (one
    rollout each: the games are random, so a single return is noisy, and the mean over states is what
    counts), then each run's mean gap as a share of its mean return."""
    games = [(env_id, with_models(groups, env_id)) for env_id in env_ids]
    games = [(env_id, pairs) for env_id, pairs in games if pairs]
    if not games:
        print("teaching_overestimation_minatar.png: no dqn or double_dqn run on MinAtar saved a model.pt: skipped")
        return
    fig, axes = plt.subplots(1, len(games) + 1, figsize=(6 * (len(games) + 1), 5.5), squeeze=False)
    labels, shares, colors = [], [], []
    for ax, (env_id, pairs) in zip(axes[0], games):
        low, high = np.inf, -np.inf
        for color, (script, runs) in zip(COLORS, pairs):
            for marker, run in zip("os^vDP*Xph", runs):
                estimates, returns = value_pairs(run.path, episodes, stride)
                gap, share = float(np.mean(estimates - returns)), float(np.mean(estimates - returns) / returns.mean())
                print(f"{env_id} {script} seed {run.seed}: {len(estimates)} states, mean max_a Q(s, a) "
                      f"{estimates.mean():.2f}, mean Monte-Carlo return {returns.mean():.2f}, mean gap {gap:+.2f} "
                      f"({share:+.0%})")
                ax.scatter(returns, estimates, s=14, alpha=0.5, color=color, marker=marker, edgecolors="none",
                           label=f"{script} seed {run.seed} ({len(estimates)} states): mean gap {gap:+.1f}")
                low, high = min(low, returns.min(), estimates.min()), max(high, returns.max(), estimates.max())
                labels.append(f"{env_id.split('/')[-1].split('-')[0]}\n{script} {run.seed}")
                shares.append(100 * share)
                colors.append(color)
        ax.plot([low, high], [low, high], color="black", linewidth=1, label="estimate = true value")
        ax.set_xlabel("discounted return of the greedy policy from s (one Monte-Carlo rollout)")
        ax.set_ylabel("max_a Q(s, a)")
        ax.set_title(f"{env_id}: value estimates of the states the final greedy policy visits\n"
                     f"({episodes} seeded episodes, every {stride}th state), against their returns", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    ax = axes[0, -1]
    ax.bar(range(len(shares)), shares, color=colors)
    ax.axhline(0.0, color="black", linewidth=1)
    ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=40, ha="right")
    ax.set_ylabel("mean(max_a Q(s, a) − return) / mean(return), %")
    ax.set_title("over-estimation of each run: its mean gap as a share of its mean return", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Over-estimation on MinAtar: DQN against Double DQN", fontsize=12)
    save(fig, os.path.join(out, "teaching_overestimation_minatar.png"))


# ---------------------------------------------------------------------------------------------------
# Over-estimation, part 2: the maximization-bias MDP (Sutton & Barto, Example 6.7)
# ---------------------------------------------------------------------------------------------------
TOY_ID = "MaximizationBias-v0"


class MaximizationBiasEnv(gym.Env):
    """Sutton & Barto's maximization-bias MDP (Example 6.7, Figure 6.5; van Hasselt 2010).

    Two states, A (the start) and B; observations are one-hot: A = [1, 0], B = [0, 1], and [0, 0] once the
    episode has ended. The same n_actions actions in both states:
    - in A, action 0 is "right": the episode terminates with reward 0; every other action is "left": reward 0
      and the next state is B (so n_actions − 1 actions of A lead to B);
    - in B, every action terminates with a reward drawn from N(mean, std²) (default N(−0.1, 1)).
    Exact values, whatever the policy in B: Q(B, a) = max_a Q(B, a) = mean = −0.1; Q(A, left) = γ · mean
    (−0.099 for γ = 0.99); Q(A, right) = 0. So "right" is optimal, and a learner that takes the max over noisy
    estimates of Q(B, ·) sees max_a Q(B, a) > 0 and goes left."""

    RIGHT = 0

    def __init__(self, n_actions: int = 10, mean: float = -0.1, std: float = 1.0):
        self.mean, self.std = mean, std
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(n_actions)
        self.state = 0

    def obs(self):
        return np.eye(2, dtype=np.float32)[self.state] if self.state is not None else np.zeros(2, np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = 0  # A
        return self.obs(), {}

    def step(self, action):
        if self.state == 0 and int(action) != self.RIGHT:  # A, left: on to B
            self.state = 1
            return self.obs(), 0.0, False, False, {}
        reward = 0.0 if self.state == 0 else float(self.np_random.normal(self.mean, self.std))
        self.state = None
        return self.obs(), reward, True, False, {}


if TOY_ID not in gym.envs.registry:
    gym.register(TOY_ID, entry_point=MaximizationBiasEnv)


def toy_true_values(gamma: float, mean: float = -0.1) -> dict:
    """The exact values of MaximizationBias-v0 (they hold for any policy in B: all of B's actions are worth
    the same)."""
    return {"max_a Q(B, a)": mean, "Q(A, left)": gamma * mean, "Q(A, right)": 0.0}


# The settings of the toy runs: the scripts' defaults (learning rate, batch 256 every 4 steps, target copy
# every 250 steps, ε from 1 to 0.05 over the first 20%), except that learning starts after one batch and a
# run is short. Chosen before looking at the results, not tuned.
TOY_SETTINGS = dict(env_id=TOY_ID, learning_starts=256, eval_episodes=2, log_frequency=100, cuda=False)
TOY_BUDGETS = (1_000, 2_000, 4_000)
TOY_SEEDS = tuple(range(1, 9))


def toy_run(script: str, seed: int, budget: int, run_dir: str) -> str:
    """The folder of a finished run of `script` on MaximizationBias-v0 with TOY_SETTINGS: an earlier one under
    run_dir if its settings match, else a new one (trained in this process, its output kept quiet)."""
    wanted = dict(TOY_SETTINGS, seed=seed, total_timesteps=budget)
    for run in load_runs(run_dir):
        args = json.load(open(os.path.join(run.path, "args.json")))
        if (run.script, run.seed) == (script, seed) and os.path.exists(os.path.join(run.path, "model.pt")) \
                and run.evaluation and all(args.get(key) == value for key, value in wanted.items()):
            return run.path
    module = import_script(script)
    with contextlib.redirect_stdout(io.StringIO()):
        return module.train(module.Args(run_dir=run_dir, **wanted))["run_dir"]


def toy_measure(run_path: str) -> dict:
    """The final Q_φ of a toy run in A and B, and whether its greedy action in A is "left"."""
    q_network, args = load_q_network(run_path)
    with torch.no_grad():
        q_a, q_b = q_network(torch.eye(2)).numpy()
    episodes = read_columns(os.path.join(run_path, "episodes.csv"))
    return {"max_a Q(B, a)": float(q_b.max()),
            "Q(A, left)": float(q_a[1:].mean()),  # its n − 1 left actions share one target: their mean
            "Q(A, right)": float(q_a[MaximizationBiasEnv.RIGHT]),
            "greedy left": float(q_a.argmax() != MaximizationBiasEnv.RIGHT),
            "episode steps": episodes["global_step"], "episode lengths": episodes["episodic_length"],
            "gamma": args["gamma"]}


def toy_experiment(run_dir: str, budgets=TOY_BUDGETS, seeds=TOY_SEEDS) -> dict:
    """{script: {budget: [toy_measure of each seed]}}, training the runs that run_dir does not hold yet."""
    results = {}
    for script in DQN_SCRIPTS:
        for budget in budgets:
            folder = os.path.join(run_dir, f"steps_{budget}")
            results.setdefault(script, {})[budget] = [toy_measure(toy_run(script, seed, budget, folder))
                                                      for seed in seeds]
        print(f"{TOY_ID}: {script} trained or reused at {', '.join(map(str, budgets))} steps, "
              f"seeds {', '.join(map(str, seeds))}")
    return results


def left_fraction_series(measures: list, window: int = 200) -> list:
    """(global step, fraction of the last `window` training episodes that went left from A) of each run:
    on MaximizationBias-v0 an episode of 2 steps went left, one of 1 step went right."""
    series = []
    for m in measures:
        steps, left = m["episode steps"], (m["episode lengths"] == 2).astype(float)
        sums = np.cumsum(np.insert(left, 0, 0.0))
        ends = np.arange(1, len(left) + 1)
        counts = np.minimum(ends, window)
        series.append((steps, (sums[ends] - sums[ends - counts]) / counts))
    return series


def with_models(groups: dict, env_id: str) -> list:
    """[(script, its runs on env_id that saved a model.pt)] for the DQN_SCRIPTS that have such runs."""
    pairs = [(script, [run for run in groups.get((env_id, script), [])
                       if os.path.exists(os.path.join(run.path, "model.pt"))]) for script in DQN_SCRIPTS]
    return [(script, runs) for script, runs in pairs if runs]


def overestimation(groups: dict, out: str, toy_run_dir: str, toy_budgets=TOY_BUDGETS, toy_seeds=TOY_SEEDS,
                   episodes: int = 5, stride: int = 20):
    pairs = with_models(groups, "CartPole-v1")
    if not pairs:
        return
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))

    # (a) CartPole-v1: max_a Q(s, a) against the Monte-Carlo return of the same greedy policy from s
    ax, low, high, gamma = axes[0, 0], np.inf, -np.inf, None
    # inset: the states from which the greedy policy never fails (all at ≈ 1/(1 − γ)), one column per run
    inset, columns = ax.inset_axes([0.08, 0.44, 0.34, 0.23]), []
    for color, (script, runs) in zip(COLORS, pairs):
        for marker, run in zip("os^vDP*Xph", runs):
            estimates, returns = value_pairs(run.path, episodes, stride)
            gamma = json.load(open(os.path.join(run.path, "args.json")))["gamma"]
            # reward 1 a step: a rollout that never terminates returns Σ_{t<H} γ^t = (1 − γ^H) / (1 − γ)
            never_fails = returns >= (1 - tolerance_horizon(gamma)[1]) / (1 - gamma) - 1e-6
            position = len(columns)
            columns.append(f"{'ddqn' if script == 'double_dqn' else script} {run.seed}")
            inset.scatter(position + np.linspace(-0.25, 0.25, never_fails.sum()), estimates[never_fails], s=5,
                          color=color, marker=marker, alpha=0.6, edgecolors="none")
            gap = float(np.mean(estimates - returns))
            print(f"CartPole-v1 {script} seed {run.seed}: {len(estimates)} states, mean max_a Q(s, a) "
                  f"{estimates.mean():.2f}, mean Monte-Carlo return {returns.mean():.2f} "
                  f"[{returns.min():.2f}, {returns.max():.2f}], mean gap {gap:+.2f}")
            ax.scatter(returns, estimates, s=16, alpha=0.5, color=color, marker=marker, edgecolors="none",
                       label=f"{script} seed {run.seed} ({len(estimates)} states): mean gap {gap:+.1f}")
            low = min(low, returns.min(), estimates.min())
            high = max(high, returns.max(), estimates.max())
    inset.set_xticks(range(len(columns)), columns, fontsize=6)
    inset.tick_params(axis="y", labelsize=6)
    inset.axhline((1 - tolerance_horizon(gamma)[1]) / (1 - gamma), color="black", linewidth=1)
    inset.set_title("states from which the greedy policy never fails:\nmax_a Q(s, a) per run; line: their true value",
                    fontsize=6.5)
    inset.grid(alpha=0.3)
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="estimate = true value")
    ax.axvline(1 / (1 - gamma), color="gray", linestyle=":", linewidth=1,
               label=f"1/(1−γ) = {1 / (1 - gamma):.0f}: the value of never failing")
    ax.set_xlabel("discounted return of the greedy policy from s (Monte-Carlo, no time limit)")
    ax.set_ylabel("max_a Q(s, a)")
    ax.set_title(f"(a) CartPole-v1: value estimates of the states the final greedy policy visits\n"
                 f"({episodes} seeded episodes, every {stride}th state), against their true values", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")

    # (b)-(d) the maximization-bias MDP, trained here
    results = toy_experiment(toy_run_dir, toy_budgets, toy_seeds)
    truth = toy_true_values(results[DQN_SCRIPTS[0]][toy_budgets[0]][0]["gamma"])
    for ax, key, title in ((axes[0, 1], "Q(A, left)", "(b) Q(A, left): bootstraps on the max over B"),
                           (axes[1, 0], "max_a Q(B, a)", "(c) max_a Q(B, a): a max over 10 noisy estimates")):
        for color, script in zip(COLORS, DQN_SCRIPTS):
            values = np.array([[m[key] for m in results[script][budget]] for budget in toy_budgets])
            ax.plot(toy_budgets, values.mean(axis=1), "o-", color=color, linewidth=2,
                    label=f"{script}: mean over {len(toy_seeds)} seeds (band: min..max)")
            ax.fill_between(toy_budgets, values.min(axis=1), values.max(axis=1), color=color, alpha=0.15)
            print(f"{TOY_ID} {script} {key}: " + ", ".join(
                f"{budget} steps {row.mean():+.3f} [{row.min():+.3f}, {row.max():+.3f}]"
                for budget, row in zip(toy_budgets, values)))
        ax.axhline(truth[key], color="black", linestyle="--", linewidth=1.2, label=f"true {key} = {truth[key]:.3f}")
        if key == "Q(A, left)":
            ax.axhline(0.0, color="gray", linestyle=":", linewidth=1.2, label="true Q(A, right) = 0")
        ax.set_xscale("log")
        ax.set_xticks(toy_budgets, [f"{budget:,}" for budget in toy_budgets])
        ax.minorticks_off()
        ax.set_xlabel("training budget (environment steps; one run per budget and seed)")
        ax.set_ylabel("final estimate")
        ax.set_title(f"{TOY_ID} {title}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    # (d) how often the agents go left from A
    ax, longest = axes[1, 1], toy_budgets[-1]
    for color, script in zip(COLORS, DQN_SCRIPTS):
        draw_band(ax, left_fraction_series(results[script][longest]),
                  f"{script}: ε-greedy, in training ({longest:,}-step runs, last 200 episodes)", color)
        greedy = [np.mean([m["greedy left"] for m in results[script][budget]]) for budget in toy_budgets]
        ax.plot(toy_budgets, greedy, "s--", color=color, markersize=7, markeredgecolor="black",
                label=f"{script}: share of seeds whose final greedy action in A is left")
        print(f"{TOY_ID} {script} greedy left: " + ", ".join(
            f"{budget} steps {share:.2f}" for budget, share in zip(toy_budgets, greedy)))
    n_actions = gym.make(TOY_ID).action_space.n
    steps = np.linspace(1, longest, 200)
    epsilon = 1.0 + np.minimum(steps / (0.2 * longest), 1.0) * (0.05 - 1.0)
    ax.plot(steps, epsilon * (n_actions - 1) / n_actions, color="black", linestyle="--", linewidth=1.2,
            label="ε-greedy with the optimal greedy action (right)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("fraction of left from A")
    ax.set_title(f"(d) {TOY_ID}: how often A goes left (optimal: never, but for ε)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper right")
    fig.suptitle("Over-estimation: DQN against Double DQN, estimates against exact values", fontsize=12)
    save(fig, os.path.join(out, "teaching_overestimation.png"))


# ---------------------------------------------------------------------------------------------------
# REINFORCE: the variance of the policy-gradient estimate, with and without the baseline
# ---------------------------------------------------------------------------------------------------
# Chosen before measuring, not tuned. Seed 1's snapshots (50 batches each) at steps 0, 5,426, 20,283 and 51,278
# played mean returns of 22, 53, 151 and 436: from a nearly uniform policy to one that nearly solves the task.
VARIANCE_ENV = "CartPole-v1"
VARIANCE_STEPS = (0, 2_000, 5_000, 10_000, 20_000, 50_000)
VARIANCE_SEEDS = (1,)
VARIANCE_BATCHES = 50
VARIANCE_MODELS = 2
VARIANCE_PLAY_SEED = 1_000_000  # the measured episodes are seeded apart from training (seed) and evaluation


def reinforce_module():
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    return importlib.import_module("reinforce")


class SnapshotsTaken(Exception):
    """Raised inside reinforce.py's train() once the last snapshot is saved: the rest of the run is not needed."""


def snapshot_path(run_path: str, step: int) -> str:
    return os.path.join(run_path, f"snapshot_{step}.pt")


def snapshot_run(seed: int, steps, run_dir: str) -> str:
    """The folder of a reinforce.py run on CartPole-v1 with its defaults holding snapshot_{step}.pt for each of
    `steps`: what model.pt holds (actor, baseline, normalizer, args), with global_step the steps of the batches
    learned from, taken at the first batch's end at or after that step. An earlier run under run_dir is reused
    if its settings match; else one is trained here through the script's own train(), its update() wrapped to
    save the snapshots, and stopped after the last one: the first steps of a full-length run, whose learning
    rate decays over the whole default budget."""
    module = reinforce_module()
    with contextlib.redirect_stdout(io.StringIO()):
        wanted = module.with_env_defaults(module.Args(env_id=VARIANCE_ENV, seed=seed, cuda=False, run_dir=run_dir),
                                          gym.make(VARIANCE_ENV))
    if max(steps) > wanted.total_timesteps:
        raise ValueError(f"snapshot steps up to {wanted.total_timesteps:,}, the run's budget, not {max(steps):,}")
    # settings left at None (eval_episodes, eval_every) are filled in by the run itself: not compared; nor is
    # settings_row, a record of where the settings came from that runs before issue 28 lack
    settings = {key: value for key, value in asdict(wanted).items()
                if key not in ("run_dir", "settings_row") and value is not None}
    for run in load_runs(run_dir):
        args = json.load(open(os.path.join(run.path, "args.json")))
        if all(args.get(key) == value for key, value in settings.items()) and \
                all(os.path.exists(snapshot_path(run.path, step)) for step in steps):
            return run.path

    pending, learned, runs = sorted(set(steps)), [0], []
    save, update = module.Run.save, module.update

    def recording_save(run, **parts):  # the parts train() will save to model.pt: its live networks
        runs.append((run, parts))
        save(run, **parts)

    def take_snapshots(every=False):
        run, parts = runs[0]
        while pending and (every or pending[0] <= learned[0]):
            model = {name: part.state_dict() for name, part in parts.items()}
            model.update(script="reinforce", args=asdict(run.args), global_step=learned[0])
            path = snapshot_path(run.dir, pending.pop(0))
            torch.save(model, path + ".tmp")
            os.replace(path + ".tmp", path)

    def snapshotting_update(actor, baseline, optimizer, batch, norm_adv):
        take_snapshots()  # before the first update: step 0
        losses = update(actor, baseline, optimizer, batch, norm_adv)
        learned[0] += len(batch[0])
        take_snapshots()
        if not pending:
            raise SnapshotsTaken
        return losses

    with mock.patch.object(module.Run, "save", recording_save), \
            mock.patch.object(module, "update", snapshotting_update), contextlib.redirect_stdout(io.StringIO()):
        try:
            module.train(wanted)
            take_snapshots(every=True)  # the budget ended before a batch ended at the last step: the last parameters
        except SnapshotsTaken:
            pass
    return runs[0][0].dir


def load_reinforce(path: str):
    """(actor, baseline or None, normalizer, args, global_step) of a reinforce.py model.pt or snapshot, in the
    script's own classes."""
    module = reinforce_module()
    checkpoint = torch.load(path, weights_only=True)
    args = module.Args(**{key: value for key, value in checkpoint["args"].items()
                          if key in module.Args.__dataclass_fields__})
    env = gym.make(args.env_id)
    obs_dim, discrete = env.observation_space.shape[0], isinstance(env.action_space, gym.spaces.Discrete)
    actor = (module.CategoricalActor if discrete else module.GaussianActor)(
        obs_dim, int(env.action_space.n) if discrete else env.action_space.shape[0], args.hidden_size,
        args.log_std_init)
    if not discrete and args.bound_mean:
        actor.bound_mean(env.action_space.low, env.action_space.high)
    env.close()
    actor.load_state_dict(checkpoint["actor"])
    baseline = None
    if "baseline" in checkpoint:
        baseline = module.Baseline(obs_dim, args.hidden_size)
        baseline.load_state_dict(checkpoint["baseline"])
    normalizer = module.Normalizer(obs_dim, args.gamma, args.norm_obs, args.norm_reward)
    normalizer.load_state_dict(checkpoint["normalizer"])
    return actor, baseline, normalizer, args, checkpoint["global_step"]


def play_episodes(actor, baseline, normalizer, env_id: str, episodes: int, seed: int) -> list:
    """`episodes` episodes of the fixed policy π_θ, side by side (one forward pass for all at each step: the
    policy does not change, so they are distributed as if played one after the other). Per episode, its steps
    as train() hands them to EpisodeBatch.add, but the reward still raw and the end of the episode added:
    (s, a, r, terminated, cut, V_φ(final observation) at a cut, done)."""
    module = reinforce_module()
    envs = [gym.make(env_id) for _ in range(episodes)]
    obs = np.array([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    steps, alive = [[] for _ in envs], list(range(episodes))
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        while alive:
            observations = normalizer.observation(obs[alive], update=False)
            actions = actor.sample(torch.as_tensor(observations))[0].numpy()
            still = []
            for i, observation, action in zip(alive, observations, actions):
                env_action = module.env_actions(action, envs[i].action_space)
                next_obs, reward, terminated, truncated, _ = envs[i].step(env_action)
                cut = truncated and not terminated
                final_value = 0.0
                if cut and baseline is not None:
                    final_value = module.value_of(baseline, normalizer.observation(next_obs, update=False), "cpu")
                steps[i].append((observation, action, float(reward), terminated, cut, final_value,
                                 terminated or truncated))
                obs[i] = next_obs
                if not (terminated or truncated):
                    still.append(i)
            alive = still
    for env in envs:
        env.close()
    return steps


class GradientOnly:
    """Stands in for the optimizer handed to reinforce.py's update(): zero_grad() clears the gradients as the
    optimizer's would, step() does nothing. After update(), the parameters are as they were and .grad holds the
    gradient of its loss."""

    def __init__(self, parameters):
        self.parameters = list(parameters)

    def zero_grad(self):
        for parameter in self.parameters:
            parameter.grad = None

    def step(self):
        pass


def policy_gradient(actor, baseline, batch: tuple) -> np.ndarray:
    """The gradient of reinforce.py's policy loss −mean_t log π_θ(a_t|s_t) Â_t with respect to the policy's
    parameters, flat, as update() computes it on the batch (s, a, G): Â_t = G_t − V_φ(s_t), or G_t for
    baseline None; the advantages not normalized (norm_adv off), so that nothing else is subtracted."""
    parameters = list(actor.parameters()) + (list(baseline.parameters()) if baseline is not None else [])
    reinforce_module().update(actor, baseline, GradientOnly(parameters), batch, False)
    return torch.cat([parameter.grad.flatten() for parameter in actor.parameters()]).numpy().copy()


def gradient_samples(actor, baseline, normalizer, env_id: str, gamma: float, num_episodes: int, batches: int,
                     seed: int = VARIANCE_PLAY_SEED) -> dict:
    """`batches` independent batches of num_episodes episodes of the fixed policy; on each, the policy gradient
    of update() with the baseline and without, on the same steps and the same reward-to-go G (reward_to_go,
    bootstrapped from V_φ at a time limit's cut, the rewards scaled by a fresh copy of the snapshot's
    normalizer, as training would at that point). Returns the two (batches, parameters) arrays "with" and
    "without", and the episodes' undiscounted raw returns."""
    module = reinforce_module()
    episodes = play_episodes(actor, baseline, normalizer, env_id, batches * num_episodes, seed)
    with_baseline, without_baseline = [], []
    for first in range(0, len(episodes), num_episodes):
        batch, scale = module.EpisodeBatch(), copy.deepcopy(normalizer)
        for episode in episodes[first: first + num_episodes]:
            for obs, action, reward, terminated, cut, final_value, done in episode:
                batch.add(obs, action, scale.reward(reward, done), terminated, cut, final_value)
        tensors = batch.tensors(module.reward_to_go(*batch.arrays(), gamma), torch.device("cpu"))
        with_baseline.append(policy_gradient(actor, baseline, tensors))
        without_baseline.append(policy_gradient(actor, None, tensors))
    return {"with": np.array(with_baseline), "without": np.array(without_baseline),
            "returns": np.array([sum(step[2] for step in episode) for episode in episodes])}


def variance_summary(samples: dict) -> dict:
    """Total variance across the batches (the sum over parameters of each one's variance) with and without the
    baseline; the cosine between their means; the baseline's part, the difference of the two estimates, whose
    mean over the B batches has a norm of about √(its total variance / B) if its expectation is 0."""
    with_baseline, without_baseline = samples["with"], samples["without"]
    term, batches = without_baseline - with_baseline, len(with_baseline)
    mean_with, mean_without = with_baseline.mean(0), without_baseline.mean(0)
    return {"var_with": float(with_baseline.var(0, ddof=1).sum()),
            "var_without": float(without_baseline.var(0, ddof=1).sum()),
            "cosine": float(mean_with @ mean_without / (np.linalg.norm(mean_with) * np.linalg.norm(mean_without))),
            "term_mean": float(np.linalg.norm(term.mean(0))),
            "term_noise": float(np.sqrt(term.var(0, ddof=1).sum() / batches)),
            "mean_return": float(samples["returns"].mean()), "batches": batches}


def measure_snapshot(path: str, batches: int) -> dict:
    actor, baseline, normalizer, args, global_step = load_reinforce(path)
    if baseline is None:
        raise ValueError(f"{path} has no baseline (trained with --no-baseline)")
    samples = gradient_samples(actor, baseline, normalizer, args.env_id, args.gamma, args.num_episodes, batches)
    summary = variance_summary(samples)
    print(f"{args.env_id} reinforce step {global_step:,} ({path}): mean return {summary['mean_return']:.1f}, "
          f"total variance with the baseline {summary['var_with']:.3g}, without {summary['var_without']:.3g} "
          f"(÷{summary['var_without'] / summary['var_with']:.1f}); cosine of the mean gradients "
          f"{summary['cosine']:.3f}; the baseline's part: mean {summary['term_mean']:.3g}, noise level "
          f"{summary['term_noise']:.3g}")
    return {**summary, "global_step": global_step, "samples": samples}


def running_mean_norms(samples: np.ndarray) -> np.ndarray:
    """‖mean of the first k rows‖ for k = 1, ..., len(samples)."""
    return np.linalg.norm(np.cumsum(samples, axis=0) / np.arange(1, len(samples) + 1)[:, None], axis=1)


def reinforce_grad_variance(groups: dict, out: str, run_dir: str, steps=VARIANCE_STEPS, seeds=VARIANCE_SEEDS,
                            batches: int = VARIANCE_BATCHES, models: int = VARIANCE_MODELS):
    """teaching_reinforce_grad_variance.png, when `groups` holds reinforce runs on CartPole-v1. Returns
    {"snapshots": {seed: [measure_snapshot of each step]}, "models": [measure_snapshot of each model.pt]}."""
    if not groups.get((VARIANCE_ENV, "reinforce")):
        print(f"{os.path.join(out, 'teaching_reinforce_grad_variance.png')}: skipped, no reinforce runs on "
              f"{VARIANCE_ENV} in the run folder")
        return None
    finals = [run for run in groups[(VARIANCE_ENV, "reinforce")] if os.path.exists(os.path.join(run.path, "model.pt"))
              and json.load(open(os.path.join(run.path, "args.json"))).get("baseline")][:models]
    results = {"snapshots": {}, "models": []}
    for seed in seeds:
        path = snapshot_run(seed, steps, run_dir)
        print(f"{VARIANCE_ENV} reinforce seed {seed}: snapshots at {', '.join(map(str, steps))} steps in {path}")
        results["snapshots"][seed] = [measure_snapshot(snapshot_path(path, step), batches) for step in steps]
    results["models"] = [measure_snapshot(os.path.join(run.path, "model.pt"), batches) for run in finals]

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    for marker, (seed, measures) in zip("osD^v", results["snapshots"].items()):
        x = [m["global_step"] for m in measures]
        for color, key, name in ((COLORS[0], "var_without", "without"), (COLORS[1], "var_with", "with")):
            ax.plot(x, [m[key] for m in measures], marker=marker, color=color,
                    label=f"{name} the baseline: snapshots of seed {seed}")
        for m in measures:
            ax.annotate(f"÷{m['var_without'] / m['var_with']:.1f}\nreturn {m['mean_return']:.0f}",
                        (m["global_step"], m["var_with"]), textcoords="offset points", xytext=(0, -22),
                        ha="center", fontsize=6.5)
    for run, m in zip(finals, results["models"]):
        for color, key in ((COLORS[0], "var_without"), (COLORS[1], "var_with")):
            ax.plot(m["global_step"], m[key], "*", markersize=12, color=color, markeredgecolor="black")
        ax.annotate(f"÷{m['var_without'] / m['var_with']:.1f}\nreturn {m['mean_return']:.0f}",
                    (m["global_step"], m["var_with"]), textcoords="offset points", xytext=(0, -22), ha="center",
                    fontsize=6.5)
    if finals:
        ax.plot([], [], "*", markersize=12, color="gray", markeredgecolor="black",
                label=f"final model.pt of {'seed' if len(finals) == 1 else 'seeds'} "
                      f"{', '.join(str(run.seed) for run in finals)}")
    positive = [m["global_step"] for measures in results["snapshots"].values() for m in measures if m["global_step"]]
    ax.set_xscale("symlog", linthresh=min(positive, default=1_000))
    ax.set_yscale("log")
    ax.set_xlabel("training step of the snapshot (symlog)")
    ax.set_ylabel("total variance of the batch's gradient\n(Σ over the policy's parameters)")
    ax.set_title(f"(a) {VARIANCE_ENV}: variance of REINFORCE's gradient over {batches} batches\n"
                 "(÷: variance without / with the baseline; return: mean of the measured episodes)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5)

    ax, (seed, measures) = axes[1], next(iter(results["snapshots"].items()))
    last = measures[-1]
    k = np.arange(1, batches + 1)
    term = last["samples"]["without"] - last["samples"]["with"]
    ax.plot(k, running_mean_norms(last["samples"]["without"]), color=COLORS[0], label="without the baseline: G")
    ax.plot(k, running_mean_norms(last["samples"]["with"]), color=COLORS[1], label="with the baseline: G − V(s)")
    ax.plot(k, running_mean_norms(term), color=COLORS[2], label="the baseline's part (their difference)")
    ax.plot(k, np.sqrt(term.var(0, ddof=1).sum() / k), color=COLORS[2], linestyle="--",
            label="√(its variance / k): pure noise of mean 0")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k, batches averaged")
    ax.set_ylabel("‖mean gradient of the first k batches‖")
    ax.set_title(f"(b) snapshot at step {last['global_step']:,} (seed {seed}): the baseline's part averages out;\n"
                 f"cosine of the two mean gradients over {batches} batches: {last['cosine']:.3f}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5)
    fig.suptitle("REINFORCE with and without the learned baseline: same batches, same reward-to-go G, "
                 "advantages not normalized", fontsize=11)
    save(fig, os.path.join(out, "teaching_reinforce_grad_variance.png"))
    return results


def two_panels(groups: dict, script: str, columns: list, titles: list, path: str, log_scale=()):
    envs = [env for env, s in groups if s == script]
    if not envs:
        return
    fig, axes = plt.subplots(1, len(columns), figsize=(6 * len(columns), 4.2))
    for ax, column, title in zip(axes, columns, titles):
        for color, env_id in zip(COLORS, envs):
            series = metric_series(groups[(env_id, script)], column)
            if series:
                draw_band(ax, series, f"{env_id} ({len(series)} seeds)", color)
        ax.set_title(title)
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if column in log_scale:
            ax.set_yscale("log")
    save(fig, path)


# ---------------------------------------------------------------------------------------------------
# Rainbow's ablation: the full agent against each of its parts turned off (Hessel et al. 2018, Figure 3)
# ---------------------------------------------------------------------------------------------------
ABLATION_FULL = "rainbow"
ABLATION_PARTS = {  # experiment name: (rainbow.py's settings that turn one part off, the part)
    "rainbow-no-double": (dict(double=False), "double targets (RAINBOW-1)"),
    "rainbow-no-dueling": (dict(dueling=False), "the dueling head (RAINBOW-2)"),
    "rainbow-no-per": (dict(per=False), "prioritized replay (RAINBOW-3)"),
    "rainbow-n-step-1": (dict(n_step=1), "n-step returns (RAINBOW-4)"),
    "rainbow-no-distributional": (dict(distributional=False), "C51 (RAINBOW-5)"),
    "rainbow-no-noisy": (dict(noisy=False), "NoisyNet (RAINBOW-6)"),
}
ABLATION_ENV = "CartPole-v1"
ABLATION_SEEDS = (1, 2, 3)  # 21 runs (7 a seed) of 3-9 minutes each on our CPU
ABLATION_SETTINGS = dict(env_id=ABLATION_ENV, cuda=False)  # else rainbow.py's defaults, as the benchmark runs it


def command_line_flags(settings: dict) -> str:
    """rainbow.py's flags for the settings: double=False is --no-double, n_step=1 is --n-step 1."""
    return " ".join(f"--no-{key}" if value is False else f"--{key.replace('_', '-')} {value}"
                    for key, value in settings.items())


def ablation_settings(name: str, budget: int, settings: dict) -> dict:
    """The Args of rainbow.py for experiment `name` (but the seed and run_dir): each of the six switches given,
    the one of ABLATION_PARTS[name] off, the others at rainbow.py's defaults."""
    defaults = import_script("rainbow").Args()
    off = ABLATION_PARTS[name][0] if name in ABLATION_PARTS else {}
    switches = [key for part, _ in ABLATION_PARTS.values() for key in part]
    return dict(ABLATION_SETTINGS, **settings, total_timesteps=budget, exp_name=name,
                **{key: off.get(key, getattr(defaults, key)) for key in switches})


def ablation_experiment(run_dir: str, budget: int, seeds=ABLATION_SEEDS, settings: dict = None,
                        train: bool = False) -> dict:
    """{experiment name: [the Run of each seed]} for the full agent and each part turned off, from the finished
    runs under run_dir whose args.json has these settings (the newest, when there are several). With train, the
    runs not found are trained, one at a time, in this process (their output kept quiet but for one line)."""
    module = import_script("rainbow")
    names = sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []
    finished = [run for run in (read_run(os.path.join(run_dir, name)) for name in names) if run and run.evaluation]
    results = {}
    for name in (ABLATION_FULL, *ABLATION_PARTS):
        wanted = ablation_settings(name, budget, settings or {})
        for seed in seeds:
            matching = [run for run in finished if run.exp_name == name and run.seed == seed and all(
                json.load(open(os.path.join(run.path, "args.json"))).get(key) == value
                for key, value in wanted.items())]
            run = max(matching, key=stamp_of) if matching else None
            if run is None and train:
                start = time.time()
                with contextlib.redirect_stdout(io.StringIO()):
                    run = read_run(module.train(module.Args(run_dir=run_dir, seed=seed, **wanted))["run_dir"])
                print(f"{ABLATION_ENV} {name} seed {seed}: trained {budget:,} steps in {time.time() - start:.0f} s, "
                      f"evaluation {run.evaluation['mean']:.1f}")
            if run is not None:
                results.setdefault(name, []).append(run)
    return results


def rainbow_ablation(out: str, run_dir: str, budget: int = None, seeds=ABLATION_SEEDS, settings: dict = None,
                     train: bool = False) -> dict:
    """teaching_rainbow_ablation.png from ablation_experiment (budget None: rainbow.py's for CartPole-v1);
    returns what ablation_experiment found."""
    budget = budget or import_script("rainbow").ENV_DEFAULTS[ABLATION_ENV]["total_timesteps"]
    results = ablation_experiment(run_dir, budget, seeds, settings, train)
    path = os.path.join(out, "teaching_rainbow_ablation.png")
    if not results:
        print(f"{path}: skipped, no finished rainbow.py runs of {budget:,} steps under {run_dir} "
              "(--ablation-train trains them)")
        return results
    fig, axes = plt.subplots(2, 4, figsize=(21, 9), sharey=True)
    threshold, full = THRESHOLDS[ABLATION_ENV], results.get(ABLATION_FULL, [])

    def curves(runs):
        return [(run.steps, run.smoothed()) for run in runs]

    def finish(ax, title, legend=True):
        ax.axhline(threshold, color="gray", linestyle="--", linewidth=1, label="solved")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if legend:
            ax.legend(fontsize=7.5, loc="lower right")

    # one panel per part: the full agent against the agent without that part
    for ax, color, (name, (off, part)) in zip(axes.flat, COLORS, ABLATION_PARTS.items()):
        if full:
            draw_band(ax, curves(full), f"{ABLATION_FULL}: all six parts ({seed_count(len(full))})", "black")
        if name in results:
            draw_band(ax, curves(results[name]), f"{name}: {command_line_flags(off)} "
                                                 f"({seed_count(len(results[name]))})", color)
        else:
            ax.text(0.5, 0.5, f"no runs of {name}", transform=ax.transAxes, ha="center", color=color)
        ax.set_xlabel("environment steps")
        finish(ax, f"without {part}")
    for ax in axes[:, 0]:
        ax.set_ylabel("training return (mean of the last 10 episodes)")

    # every variant's mean curve together, as the paper draws it
    ax, variants = axes[1, 2], [(ABLATION_FULL, "black"), *zip(ABLATION_PARTS, COLORS)]
    for name, color in variants:
        if name in results:
            grid, rows = on_grid(curves(results[name]))
            with warnings.catch_warnings():  # grid points before any curve starts are all NaN: left blank
                warnings.simplefilter("ignore", RuntimeWarning)
                ax.plot(grid, np.nanmean(rows, axis=0), color=color, linewidth=1.8, label=name)
    ax.set_xlabel("environment steps")
    finish(ax, "all together: the mean over seeds of each")

    # the final greedy evaluation of each seed, and how many seeds reached the threshold
    ax = axes[1, 3]
    for position, (name, color) in enumerate(variants):
        values = [run.evaluation["mean"] for run in results.get(name, [])]
        if values:
            ax.scatter(position + np.linspace(-0.15, 0.15, len(values)), values, color=color, s=22, zorder=3,
                       edgecolors="black", linewidths=0.4)
            ax.hlines(np.mean(values), position - 0.3, position + 0.3, color=color, linewidth=2.5)
            solved = sum(value >= threshold for value in values)
            ax.annotate(f"{solved}/{len(values)}", (position, 0.98), xycoords=("data", "axes fraction"),
                        ha="center", va="top", fontsize=8)
            print(f"{ABLATION_ENV} {name}: final evaluation {np.mean(values):.1f} [{min(values):.1f}, "
                  f"{max(values):.1f}] over {seed_count(len(values))}, {solved} reached {threshold:.0f}")
    ax.set_xticks(range(len(variants)), [name.removeprefix("rainbow-") for name, _ in variants], rotation=30,
                  ha="right", fontsize=8)
    ax.set_ylabel("evaluation return (mean over its episodes)")
    finish(ax, "final greedy evaluation of each seed\n(line: mean; top: seeds solved; dashed: solved)", legend=False)
    fig.suptitle(f"Rainbow on {ABLATION_ENV}: the full agent against each part turned off, {budget:,} steps "
                 "(line: mean over seeds, band: min..max)", fontsize=12)
    save(fig, path)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default=os.path.join("runs", "benchmark"), help="folder of run folders")
    parser.add_argument("--out", default="plots", help="folder for the PNG files")
    parser.add_argument("--toy-run-dir", default=None,
                        help=f"folder of the {TOY_ID} runs, trained when missing (default: RUN_DIR/maximization_bias)")
    parser.add_argument("--toy-budgets", type=int, nargs="+", default=list(TOY_BUDGETS),
                        help=f"training steps of the {TOY_ID} runs, one run per budget and seed")
    parser.add_argument("--toy-seeds", type=int, nargs="+", default=list(TOY_SEEDS), help=f"seeds of the {TOY_ID} runs")
    parser.add_argument("--value-episodes", type=int, default=5,
                        help="CartPole-v1: greedy episodes whose states are valued (seeded 100000, 100001, ...)")
    parser.add_argument("--minatar-run-dir", default=None,
                        help="folder of benchmark.py --minatar's runs, for the over-estimation on MinAtar "
                             "(default: runs/minatar beside --run-dir)")
    parser.add_argument("--value-stride", type=int, default=20, help="CartPole-v1: value every STRIDE-th state")
    parser.add_argument("--variance-run-dir", default=None,
                        help="folder of the reinforce.py snapshot runs, trained when missing "
                             "(default: RUN_DIR/reinforce_grad_variance)")
    parser.add_argument("--variance-steps", type=int, nargs="+", default=list(VARIANCE_STEPS),
                        help="training steps of the reinforce.py snapshots")
    parser.add_argument("--variance-seeds", type=int, nargs="+", default=list(VARIANCE_SEEDS),
                        help="seeds of the reinforce.py snapshot runs, one run each")
    parser.add_argument("--variance-batches", type=int, default=VARIANCE_BATCHES,
                        help="batches of episodes played with each snapshot to measure the gradient's variance")
    parser.add_argument("--variance-models", type=int, default=VARIANCE_MODELS,
                        help="measure the final model.pt of this many of the run folder's reinforce runs too")
    parser.add_argument("--ablation-run-dir", default=None,
                        help="folder of the rainbow.py ablation runs (default: RUN_DIR/rainbow_ablation)")
    parser.add_argument("--ablation-seeds", type=int, nargs="+", default=list(ABLATION_SEEDS),
                        help="seeds of the ablation runs")
    parser.add_argument("--ablation-steps", type=int, default=None,
                        help=f"training steps of each ablation run (default: rainbow.py's for {ABLATION_ENV})")
    parser.add_argument("--ablation-train", action="store_true",
                        help="train the ablation runs not found, one at a time (7 runs per seed)")
    options = parser.parse_args()
    torch.set_num_threads(1)  # small networks: one thread is fastest, and more only spin on a busy machine
    groups = group(load_runs(options.run_dir))
    if not groups and not options.ablation_train:
        sys.exit(f"teaching.py: error: no run folders under {options.run_dir!r}")
    os.makedirs(options.out, exist_ok=True)
    overestimation(groups, options.out, options.toy_run_dir or os.path.join(options.run_dir, "maximization_bias"),
                   tuple(options.toy_budgets), tuple(options.toy_seeds), options.value_episodes, options.value_stride)
    minatar_run_dir = options.minatar_run_dir or os.path.join(os.path.dirname(os.path.normpath(options.run_dir)),
                                                              "minatar")
    overestimation_pixels(group(load_runs(minatar_run_dir)) if os.path.isdir(minatar_run_dir) else {}, options.out)
    reinforce_grad_variance(groups, options.out,
                            options.variance_run_dir or os.path.join(options.run_dir, "reinforce_grad_variance"),
                            tuple(options.variance_steps), tuple(options.variance_seeds), options.variance_batches,
                            options.variance_models)
    two_panels(groups, "ppo", ["approx_kl", "clip_fraction"],
               ["PPO: approximate KL(π_θk ‖ π_θ) per update", "PPO: fraction of samples whose ratio was clipped"],
               os.path.join(options.out, "teaching_ppo_kl_clip.png"))
    two_panels(groups, "sac", ["alpha", "entropy"],
               ["SAC: temperature α (tuned toward the target entropy)", "SAC: policy entropy estimate"],
               os.path.join(options.out, "teaching_sac_alpha_entropy.png"), log_scale=("alpha",))
    two_panels(groups, "per_dqn", ["beta", "weight_mean"],
               ["PER: β annealed to 1", "PER: mean importance-sampling weight of the batches"],
               os.path.join(options.out, "teaching_per_beta_weights.png"))
    rainbow_ablation(options.out, options.ablation_run_dir or os.path.join(options.run_dir, "rainbow_ablation"),
                     options.ablation_steps, tuple(options.ablation_seeds), train=options.ablation_train)


if __name__ == "__main__":
    main()
