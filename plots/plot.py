"""Learning curves from run folders: mean and band over seeds, x = environment steps.

    python plots/plot.py                          # reads runs/, writes plots/
    python plots/plot.py --run-dir runs/benchmark --out plots

For every env it writes `{env}.png` with one line per algorithm, and for every (algorithm, env) pair
`{script}_{env}.png` with each seed drawn thinly behind the mean. The curve of a seed is the mean of its
last 10 training-episode returns; the band spans the seeds' minimum to maximum. A dot at the right end
marks each seed's final deterministic evaluation (eval.json).
"""

import argparse
import os
import sys
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runs import THRESHOLDS, group, load_runs  # noqa: E402


def on_grid(series: list, points: int = 200):
    """Curves given as (x, y) pairs, interpolated on a common grid of x (NaN before a curve's first x, held
    flat after its last). Returns the grid and an array with one row per curve."""
    grid = np.linspace(0, max(x[-1] for x, _ in series), points)
    return grid, np.array([np.interp(grid, x, y, left=np.nan) for x, y in series])


def draw_band(ax, series: list, label: str, color, thin_lines: bool = False):
    """Mean over the curves as a thick line, min..max as a band, each curve thinly with thin_lines."""
    grid, curves = on_grid(series)
    if thin_lines:
        for curve in curves:
            ax.plot(grid, curve, color=color, linewidth=0.6, alpha=0.35)
    with warnings.catch_warnings():  # grid points before any curve starts are all NaN: left blank
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, low, high = np.nanmean(curves, axis=0), np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
    ax.plot(grid, mean, color=color, linewidth=2, label=label)
    ax.fill_between(grid, low, high, color=color, alpha=0.15)


def draw(ax, runs: list, label: str, color, seeds_too: bool):
    """Training returns of one algorithm over seeds, with a dot per seed for its final evaluation."""
    draw_band(ax, [(run.steps, run.smoothed()) for run in runs], f"{label} ({len(runs)} seeds)", color, seeds_too)
    finals = [(run.evaluation["global_step"], run.evaluation["mean"]) for run in runs if run.evaluation]
    if finals:
        ax.scatter(*zip(*finals), color=color, marker="o", s=18, zorder=3, edgecolors="black", linewidths=0.4)


def finish(ax, env_id: str, title: str, path: str):
    if env_id in THRESHOLDS:
        ax.axhline(THRESHOLDS[env_id], color="gray", linestyle="--", linewidth=1, label="solved")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return (mean of last 10)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=110)
    plt.close(ax.figure)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs", help="folder holding the run folders")
    parser.add_argument("--out", default="plots", help="folder for the PNG files")
    parser.add_argument("--scripts", nargs="*", help="only these algorithms (default: all found)")
    options = parser.parse_args()

    groups = group(load_runs(options.run_dir))
    if options.scripts:
        groups = {key: runs for key, runs in groups.items() if key[1] in options.scripts}
    if not groups:
        sys.exit(f"plot.py: error: no run folders under {options.run_dir!r}")
    os.makedirs(options.out, exist_ok=True)
    # matplotlib's ten default colors and black: one color per script for all eleven, the same in every figure
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"] + ["black"]
    scripts = sorted({script for _, script in groups})
    color_of = {script: colors[i % len(colors)] for i, script in enumerate(scripts)}

    for (env_id, script), runs in groups.items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        draw(ax, runs, script, color_of[script], seeds_too=True)
        finish(ax, env_id, f"{script} on {env_id}: thin lines = seeds, dots = final evaluation",
               os.path.join(options.out, f"{script}_{env_id}.png"))

    for env_id in sorted({env for env, _ in groups}):
        fig, ax = plt.subplots(figsize=(8, 5))
        for (env, script), runs in groups.items():
            if env == env_id:
                draw(ax, runs, script, color_of[script], seeds_too=False)
        finish(ax, env_id, f"{env_id}: training return, band = min..max over seeds, dots = final evaluation",
               os.path.join(options.out, f"{env_id}.png"))


if __name__ == "__main__":
    main()
