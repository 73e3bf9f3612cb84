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
- teaching_ppo_kl_clip.png: PPO's approximate KL and clip fraction over training, per env (lecture 7,
  "PPO-Clip");
- teaching_sac_alpha_entropy.png: SAC's temperature α and its policy's entropy (lecture 7, "Soft
  Actor-Critic", automatic temperature);
- teaching_per_beta_weights.png: PER's β schedule and mean importance weight (Schaul et al. 2016);
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
def load_q_network(run_path: str):
    """The final Q_φ of a dqn.py or double_dqn.py run folder (its script's QNetwork, weights from model.pt)
    and the run's args."""
    checkpoint = torch.load(os.path.join(run_path, "model.pt"), weights_only=True)
    args = checkpoint["args"]
    script = checkpoint.get("script") or os.path.basename(run_path.rstrip(os.sep)).split("__")[1]  # older runs
    module = import_script(script)
    env = gym.make(args["env_id"])
    q_network = module.QNetwork(env.observation_space.shape[0], int(env.action_space.n), args["hidden_size"])
    env.close()
    q_network.load_state_dict(checkpoint["q_network"])
    return q_network.eval(), args


def greedy_policy(q_network):
    """Observations (n, obs_dim) → the greedy actions argmax_a Q(s, a), (n,)."""
    @torch.no_grad()
    def policy(observations: np.ndarray) -> np.ndarray:
        return q_network(torch.as_tensor(observations, dtype=torch.float32)).argmax(dim=1).numpy()
    return policy


def visited_states(policy, env_id: str, episodes: int, stride: int, seed: int = 100_000):
    """Every `stride`-th state that `policy` visits in `episodes` episodes of env_id (time limit included),
    the episodes seeded seed, seed + 1, ...: returns copies of the unwrapped env in those states and their
    observations."""
    env = gym.make(env_id)
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
    snapshots, observations = visited_states(policy, args["env_id"], episodes, stride)
    with torch.no_grad():
        estimates = q_network(torch.as_tensor(observations)).max(dim=1).values.numpy()
    return estimates, discounted_returns(policy, snapshots, observations, args["gamma"])


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


def overestimation(groups: dict, out: str, toy_run_dir: str, toy_budgets=TOY_BUDGETS, toy_seeds=TOY_SEEDS,
                   episodes: int = 5, stride: int = 20):
    pairs = [(script, [run for run in groups.get(("CartPole-v1", script), [])
                       if os.path.exists(os.path.join(run.path, "model.pt"))]) for script in DQN_SCRIPTS]
    pairs = [(script, runs) for script, runs in pairs if runs]
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
ABLATION_SEEDS = tuple(range(1, 6))
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
    parser.add_argument("--value-stride", type=int, default=20, help="CartPole-v1: value every STRIDE-th state")
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
