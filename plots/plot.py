"""Learning curves from run folders: compare experiments, mean and band over seeds, x = environment steps.

    python plots/plot.py runs                                 # every experiment in runs/, figures into runs/
    python plots/plot.py runs --exp-names ppo ppo_lr3e-4      # only these experiments, in this order
    python plots/plot.py runs/lr1e-3 runs/lr3e-4 --labels "lr 1e-3" "lr 3e-4"   # one curve per folder, named
    python plots/plot.py runs/CartPole-v1__ppo__*             # run folders themselves work too
    python plots/plot.py --run-dir runs/benchmark --out plots # the benchmark: the figures committed in plots/

FOLDER (or --run-dir FOLDER ...; default runs) is a folder holding run folders, as a script's --run-dir, or a
run folder itself. The runs of one experiment (a script's --exp-name, default the script's name) in one
folder are the seeds of one curve. Of several runs of an (env, experiment, seed) the newest finished one
(with eval.json) counts, or, for a seed still training, its newest run; a line names each run skipped. A
curve is labeled by its experiment name, or by --labels: one per --exp-names name, or else one per folder
given; the folder is put before the label when the same experiment comes from several folders. Figures go
to --out, default the first folder given (for a run folder: the folder holding it), never plots/ unless
asked:
- `{env}.png`: one curve per experiment;
- `{label}_{env}.png` per experiment, with each seed drawn thinly behind the mean.
The curve of a seed is the mean of its last 10 training-episode returns; the line is the mean over seeds, the
band spans their minimum to maximum. A dot at the right end marks each seed's final deterministic evaluation
(eval.json). Runs with a greedy curve (eval_curve.csv: the deterministic policy tested on 5 episodes every
`eval_every` steps during training) also get it, dashed in the same color: the mean over seeds of the tests'
means, with a lighter band from their minimum to maximum. Runs without one (written before it existed) are
drawn as before. Dotted gray lines mark the return that counts as solved (runs.threshold: a script may have its
own).
"""

import argparse
import os
import re
import sys
import warnings
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runs import load_runs, pick, read_run, threshold  # noqa: E402

GREEDY_LABEL = "dashed: deterministic policy, 5 test episodes (band: min..max over seeds)"


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


def seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def draw_greedy(ax, runs: list, color) -> bool:
    """The greedy curves of the runs that have one: their mean over seeds dashed, min..max as a light band.
    Returns whether there was one to draw."""
    series = [(run.curve_steps, run.curve_means) for run in runs if len(run.curve_steps)]
    if not series:
        return False
    grid, curves = on_grid(series)
    with warnings.catch_warnings():  # grid points before any seed's first test are all NaN: left blank
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, low, high = np.nanmean(curves, axis=0), np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
    ax.plot(grid, mean, color=color, linewidth=1.5, linestyle="--")
    ax.fill_between(grid, low, high, color=color, alpha=0.07)
    return True


def draw(ax, runs: list, label: str, color, seeds_too: bool) -> bool:
    """Training returns of one experiment over seeds, with a dot per seed for its final evaluation, and the
    greedy curve of the runs that have one. Returns whether a greedy curve was drawn."""
    draw_band(ax, [(run.steps, run.smoothed()) for run in runs], f"{label} ({seeds(len(runs))})", color, seeds_too)
    finals = [(run.evaluation["global_step"], run.evaluation["mean"]) for run in runs if run.evaluation]
    if finals:
        ax.scatter(*zip(*finals), color=color, marker="o", s=18, zorder=3, edgecolors="black", linewidths=0.4)
    return draw_greedy(ax, runs, color)


def draw_thresholds(ax, runs: list, env_id: str, greedy: bool):
    """A dotted line at each threshold of the runs' scripts on env_id ("solved", or with several, which
    scripts), and the legend's entry for the dashed greedy curves if any was drawn."""
    scripts = {}
    for script in sorted({run.script for run in runs}):
        if not np.isnan(threshold(script, env_id)):
            scripts.setdefault(threshold(script, env_id), []).append(script)
    for bar, names in scripts.items():
        label = "solved" if len(scripts) == 1 else f"solved by {', '.join(names)}"
        ax.axhline(bar, color="gray", linestyle=":", linewidth=1.2, label=label)
    if greedy:
        ax.plot([], [], color="gray", linewidth=1.5, linestyle="--", label=GREEDY_LABEL)


def finish(ax, env_id: str, title: str, path: str):
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return (mean of last 10)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=110)
    plt.close(ax.figure)
    print(f"wrote {path}")


@dataclass
class Curve:
    env_id: str
    exp_name: str
    folder: str
    """the folder holding its runs"""
    runs: list
    label: str = ""
    color: str = ""


def load(folders: list) -> dict:
    """{folder holding runs: its runs}: a folder given is read with load_runs, a run folder given counts
    under the folder holding it; one run per (env, experiment, seed) of each folder (see runs.pick)."""
    found = {}
    for folder in folders:
        if not os.path.exists(folder):
            sys.exit(f"plot.py: error: no folder {folder!r}")
        run = read_run(folder)
        if run is not None:
            found.setdefault(os.path.dirname(os.path.normpath(folder)) or ".", []).append(run)
        else:
            runs = load_runs(folder)
            if not runs:
                sys.exit(f"plot.py: error: no run folders in {folder!r}")
            found.setdefault(os.path.normpath(folder), []).extend(runs)
    return {folder: pick(runs) for folder, runs in found.items()}


def slug(text: str) -> str:
    return re.sub(r"[^\w.+-]+", "_", text).strip("_") or "curve"


def curves_of(options, found: dict) -> list:
    """The curves to draw from the runs found ({folder: runs}), in legend order, labeled and colored."""
    experiments = sorted({run.exp_name for runs in found.values() for run in runs})
    if options.exp_names:
        missing = [name for name in options.exp_names if name not in experiments]
        if missing:
            sys.exit(f"plot.py: error: no runs of experiment(s) {missing} in {list(found)}; found {experiments}")
        experiments = list(dict.fromkeys(options.exp_names))
    curves = []
    for folder, runs in found.items():
        for env_id, exp_name in sorted({(run.env_id, run.exp_name) for run in runs}):
            kept = sorted((run for run in runs if (run.env_id, run.exp_name) == (env_id, exp_name)
                           and (not options.scripts or run.script in options.scripts) and len(run.steps)),
                          key=lambda run: run.seed)
            if kept and exp_name in experiments:
                curves.append(Curve(env_id, exp_name, folder, kept))
    if not curves:
        sys.exit(f"plot.py: error: no runs with finished episodes in {list(found)}"
                 + (f" of the scripts {options.scripts}" if options.scripts else ""))
    order = {(folder, name): i for i, (folder, name) in enumerate(
        (folder, name) for folder in found for name in experiments)}
    curves.sort(key=lambda curve: order[(curve.folder, curve.exp_name)])

    if options.labels:
        if options.exp_names:
            keys, fix = options.exp_names, "give one label per --exp-names name"
        else:
            keys, fix = list(found), "give one label per folder, or one per name of --exp-names"
        if len(options.labels) != len(keys):
            what = "--exp-names name" if options.exp_names else "folder of runs"
            what += "" if len(keys) == 1 else "s"
            sys.exit(f"plot.py: error: {len(options.labels)} labels for {len(keys)} {what} {keys}: {fix}")
        given = dict(zip(keys, options.labels))
    # one color per (folder, experiment), the same in every figure; matplotlib's ten default colors, black, gold
    # and navy give each of the thirteen scripts its own in the benchmark's figures
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"] + ["black", "gold", "navy"]
    keys = list(dict.fromkeys((curve.folder, curve.exp_name) for curve in curves))
    for curve in curves:
        from_several = len({c.folder for c in curves if c.exp_name == curve.exp_name}) > 1
        if options.labels and not options.exp_names:
            single = len({c.exp_name for c in curves if c.folder == curve.folder}) == 1
            curve.label = given[curve.folder] if single else f"{given[curve.folder]}: {curve.exp_name}"
        else:
            label = given[curve.exp_name] if options.labels else curve.exp_name
            curve.label = f"{curve.folder}: {label}" if from_several else label
        curve.color = colors[keys.index((curve.folder, curve.exp_name)) % len(colors)]
    return curves


def describe(curve: Curve) -> str:
    finished = [run.evaluation["mean"] for run in curve.runs if run.evaluation]
    text = (f"  {curve.label} ({seeds(len(curve.runs))}: {', '.join(str(run.seed) for run in curve.runs)}) "
            f"in {curve.folder}")
    if finished:
        text += f"; final evaluation {np.mean(finished):.1f} (mean of {seeds(len(finished))})"
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", metavar="FOLDER",
                        help="folders of run folders, or run folders (default: runs)")
    parser.add_argument("--run-dir", nargs="+", action="extend", default=[], metavar="FOLDER",
                        help="the same as FOLDER (more folders)")
    parser.add_argument("--exp-names", nargs="+", metavar="NAME", help="only these experiments, in this order")
    parser.add_argument("--labels", nargs="+", metavar="LABEL",
                        help="curve labels: one per --exp-names name, or else one per folder given")
    parser.add_argument("--scripts", nargs="+", help="only the runs of these scripts (default: all)")
    parser.add_argument("--out", help="folder for the PNG files (default: the first folder given)")
    options = parser.parse_args()
    options.folders = (options.folders + options.run_dir) or ["runs"]

    found = load(options.folders)
    curves = curves_of(options, found)
    out = options.out or next(iter(found))
    os.makedirs(out, exist_ok=True)
    written = set()
    for env_id in sorted({curve.env_id for curve in curves}):
        print(f"{env_id}:")
        here = [curve for curve in curves if curve.env_id == env_id]
        for curve in here:
            print(describe(curve))
        for curve in here:
            name = slug(curve.label)
            while f"{name}_{env_id}" in written:
                name += "_"
            written.add(f"{name}_{env_id}")
            fig, ax = plt.subplots(figsize=(7, 4.5))
            greedy = draw(ax, curve.runs, curve.label, curve.color, seeds_too=True)
            draw_thresholds(ax, curve.runs, env_id, greedy)
            finish(ax, env_id, f"{curve.label} on {env_id}: thin lines = seeds, dots = final evaluation",
                   os.path.join(out, f"{name}_{env_id}.png"))
        fig, ax = plt.subplots(figsize=(8, 5))
        greedy = [draw(ax, curve.runs, curve.label, curve.color, seeds_too=False) for curve in here]
        draw_thresholds(ax, [run for curve in here for run in curve.runs], env_id, any(greedy))
        finish(ax, env_id, f"{env_id}: training return, band = min..max over seeds, dots = final evaluation",
               os.path.join(out, f"{env_id}.png"))


if __name__ == "__main__":
    main()
