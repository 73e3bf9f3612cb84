"""Teaching plots: the quantities the lecture's slides talk about, from the logs of real runs.

    python plots/teaching.py --run-dir runs/benchmark --out plots

Writes, for the scripts whose runs it finds (mean over seeds as a line, min..max as a band):
- teaching_overestimation.png: dqn against double_dqn on CartPole-v1: the mean Q estimate of the training
  batches against the true discounted return of the final greedy policy (lecture 7, "Double DQN: solving
  overestimation in DQN" and "Value estimation in Atari");
- teaching_ppo_kl_clip.png: PPO's approximate KL and clip fraction over training, per env (lecture 7,
  "PPO-Clip");
- teaching_sac_alpha_entropy.png: SAC's temperature α and its policy's entropy (lecture 7, "Soft
  Actor-Critic", automatic temperature);
- teaching_per_beta_weights.png: PER's β schedule and mean importance weight (Schaul et al. 2016).
"""

import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot import draw_band  # noqa: E402
from runs import group, load_runs  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def metric_series(runs: list, column: str) -> list:
    series = []
    for run in runs:
        metrics = run.metrics()
        if column in metrics and len(metrics[column]):
            series.append((metrics["global_step"], metrics[column]))
    return series


def true_discounted_return(run) -> float:
    """Mean discounted return of the final greedy policy from the start state, for CartPole-v1 (reward 1 a
    step): an evaluation episode of length L is worth (1 − γ^L) / (1 − γ)."""
    gamma = json.load(open(os.path.join(run.path, "args.json")))["gamma"]
    return float(np.mean([(1 - gamma ** length) / (1 - gamma) for length in run.evaluation["returns"]]))


def save(fig, path: str):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def overestimation(groups: dict, out: str):
    pairs = [(script, groups.get(("CartPole-v1", script))) for script in ("dqn", "double_dqn")]
    pairs = [(script, runs) for script, runs in pairs if runs]
    if not pairs:
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for color, (script, runs) in zip(COLORS, pairs):
        draw_band(ax, metric_series(runs, "q_mean"), f"{script}: mean Q estimate of its batches", color)
        finished = [run for run in runs if run.evaluation]
        if finished:
            truth = np.mean([true_discounted_return(run) for run in finished])
            ax.axhline(truth, color=color, linestyle="--", linewidth=1.2,
                       label=f"{script}: true discounted return of its final greedy policy ({truth:.1f})")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("value")
    ax.set_title("CartPole-v1: mean Q estimate against the true discounted return (DQN, Double DQN)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default=os.path.join("runs", "benchmark"), help="folder of run folders")
    parser.add_argument("--out", default="plots", help="folder for the PNG files")
    options = parser.parse_args()
    groups = group(load_runs(options.run_dir))
    if not groups:
        sys.exit(f"teaching.py: error: no run folders under {options.run_dir!r}")
    os.makedirs(options.out, exist_ok=True)
    overestimation(groups, options.out)
    two_panels(groups, "ppo", ["approx_kl", "clip_fraction"],
               ["PPO: approximate KL(π_θk ‖ π_θ) per update", "PPO: fraction of samples whose ratio was clipped"],
               os.path.join(options.out, "teaching_ppo_kl_clip.png"))
    two_panels(groups, "sac", ["alpha", "entropy"],
               ["SAC: temperature α (tuned toward the target entropy)", "SAC: policy entropy estimate"],
               os.path.join(options.out, "teaching_sac_alpha_entropy.png"), log_scale=("alpha",))
    two_panels(groups, "per_dqn", ["beta", "weight_mean"],
               ["PER: β annealed to 1", "PER: mean importance-sampling weight of the batches"],
               os.path.join(options.out, "teaching_per_beta_weights.png"))


if __name__ == "__main__":
    main()
