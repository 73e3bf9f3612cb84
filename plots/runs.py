"""Reading run folders: shared by plot.py and benchmark.py.

A run folder is `{run_dir}/{env_id}__{exp_name}__{seed}__{unix_time}/` (a `/` in env_id written `-`) with args.json,
episodes.csv, metrics.csv, eval_curve.csv (the greedy curve: a test of the deterministic policy every `eval_every` steps;
folders written before it existed have none) and, once training finished, eval.json and model.pt (see the
README's section on the layout of a script). The experiment name is a script's `--exp-name` (default: the
script's name); args.json holds it as "exp_name" and the script as "script". Folders written before those keys
existed have neither: both are then the second part of the folder's name.
"""

import csv
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

# Return that counts as solving an env (CartPole-v1's official threshold; -200 for Pendulum-v1, which has
# none, is the level commonly called solved; Acrobot-v1's official threshold).
THRESHOLDS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0, "Acrobot-v1": -100.0}
# Stricter bars of some scripts: ddpg, td3 and sac are judged at -170 on Pendulum-v1 (issue 27's bar for them).
SCRIPT_THRESHOLDS = {("ddpg", "Pendulum-v1"): -170.0, ("td3", "Pendulum-v1"): -170.0,
                     ("sac", "Pendulum-v1"): -170.0}


def threshold(script: str, env_id: str) -> float:
    """The return at which a run of `script` counts as solving env_id: the script's own bar if it has one,
    else the env's; NaN for an env without a threshold (no return reaches NaN)."""
    return SCRIPT_THRESHOLDS.get((script, env_id), THRESHOLDS.get(env_id, float("nan")))


@dataclass
class Run:
    path: str
    env_id: str
    exp_name: str
    """the run's experiment name (--exp-name): the runs of one experiment are seeds of one curve"""
    script: str
    """the algorithm script that trained it, without .py"""
    seed: int
    steps: np.ndarray
    """global_step at the end of each training episode"""
    returns: np.ndarray
    """episodic return of each training episode"""
    wall_times: np.ndarray
    """seconds since the start of training at the end of each training episode"""
    evaluation: dict | None
    """eval.json, or None for a run that did not finish"""
    curve_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """the greedy curve (eval_curve.csv; empty arrays without one): global_step of each test of the
    deterministic policy during training"""
    curve_means: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """mean return of each such test (5 episodes from the same start states every time)"""
    curve_stds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """std of the returns of each such test"""
    curve_wall_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """seconds since the start of training at the end of each such test (the clock of wall_times)"""
    curve_eval_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """seconds each such test took"""
    has_curve: bool = False
    """whether the run folder has eval_curve.csv (older ones have not)"""

    def metrics(self) -> dict:
        """metrics.csv as a dict of column name -> float array."""
        return read_columns(os.path.join(self.path, "metrics.csv"))

    def smoothed(self, window: int = 10) -> np.ndarray:
        """Mean of the last `window` episode returns at each episode (fewer at the start)."""
        sums = np.cumsum(np.insert(self.returns, 0, 0.0))
        counts = np.minimum(np.arange(1, len(self.returns) + 1), window)
        ends = np.arange(1, len(self.returns) + 1)
        return (sums[ends] - sums[ends - counts]) / counts

    def first_reaching(self, threshold: float, window: int = 10):
        """(global step, seconds) when the mean of the last `window` training returns first reached
        threshold, or None."""
        reached = np.flatnonzero(self.smoothed(window) >= threshold)
        return (int(self.steps[reached[0]]), float(self.wall_times[reached[0]])) if len(reached) else None

    def first_greedy_reaching(self, threshold: float):
        """(global step, seconds) of the first point of the greedy curve whose mean reached threshold, or
        None (also for a run without a greedy curve)."""
        reached = np.flatnonzero(self.curve_means >= threshold)
        return (int(self.curve_steps[reached[0]]), float(self.curve_wall_times[reached[0]])) if len(reached) else None


def read_columns(path: str) -> dict:
    """A CSV file as a dict of column name -> float array (no columns for an empty file)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    return {name: np.array([float(row[i]) for row in body]) for i, name in enumerate(header)}


def parse_name(name: str):
    """(env_id, exp_name, seed, stamp) of a run folder's name, or None for another name."""
    parts = name.split("__")
    if len(parts) < 4 or not re.fullmatch(r"-?\d+", parts[-2]) or not re.fullmatch(r"\d+(-\d+)?", parts[-1]):
        return None
    return parts[0], "__".join(parts[1:-2]), int(parts[-2]), parts[-1]


def read_run(path: str):
    """The Run of one run folder, or None when `path` is no run folder (no such name or no episodes.csv)."""
    parsed = parse_name(os.path.basename(os.path.normpath(path)))
    if parsed is None or not os.path.exists(os.path.join(path, "episodes.csv")):
        return None
    env_id, name, seed, _ = parsed
    args = {}
    if os.path.exists(os.path.join(path, "args.json")):
        with open(os.path.join(path, "args.json")) as f:
            args = json.load(f)
    episodes = read_columns(os.path.join(path, "episodes.csv"))
    eval_path = os.path.join(path, "eval.json")
    evaluation = None
    if os.path.exists(eval_path):
        with open(eval_path) as f:
            evaluation = json.load(f)
    curve_path = os.path.join(path, "eval_curve.csv")
    curve = read_columns(curve_path) if os.path.exists(curve_path) else {}
    empty = np.zeros(0)
    return Run(path, args.get("env_id") or env_id, args.get("exp_name") or name, args.get("script") or name, seed,
               episodes["global_step"], episodes["episodic_return"], episodes["wall_time"], evaluation,
               *(curve.get(column, empty) for column in ("global_step", "eval_mean", "eval_std", "wall_time",
                                                          "eval_time")),
               has_curve=os.path.exists(curve_path))


def load_runs(run_dir: str, say=print) -> list:
    """The run folders directly under run_dir (or run_dir itself if it is one), one per (env, experiment name,
    seed): see pick(), which says with `say` which runs it skipped."""
    run = read_run(run_dir)
    if run is not None:
        return [run]
    names = sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []
    runs = [run for run in (read_run(os.path.join(run_dir, name)) for name in names) if run is not None]
    return pick(runs, say)


def pick(runs: list, say=print) -> list:
    """One run per (env, experiment name, seed), in the order of their first appearance: the newest finished
    one (with eval.json), or the newest of a seed none of whose runs finished (a run still training). Every
    other run is skipped, with one line each through `say`, so that an interrupted run never silently
    replaces a finished one."""
    by_seed = {}
    for run in runs:
        by_seed.setdefault((run.env_id, run.exp_name, run.seed), []).append(run)
    kept = []
    for candidates in by_seed.values():
        best = max(candidates, key=lambda run: (run.evaluation is not None, stamp_of(run)))
        kept.append(best)
        for run in sorted(candidates, key=stamp_of):
            if run is not best:
                why = "unfinished (no eval.json)" if run.evaluation is None else "older"
                say(f"skipped {run.path}: {why}; seed {run.seed} of {run.exp_name} on {run.env_id} "
                    f"uses {best.path}")
    return kept


def stamp_of(run: Run):
    """Unix time of a run folder's name, with the suffix of a second run in the same second."""
    stamp = os.path.basename(os.path.normpath(run.path)).split("__")[-1]
    seconds, _, suffix = stamp.partition("-")
    return int(seconds), int(suffix or 1)


def group(runs: list) -> dict:
    """{(env_id, exp_name): [runs sorted by seed]}, sorted by key. In the benchmark's folders (default
    --exp-name) the experiment name is the script's name."""
    groups = {}
    for run in runs:
        groups.setdefault((run.env_id, run.exp_name), []).append(run)
    return {key: sorted(value, key=lambda r: r.seed) for key, value in sorted(groups.items())}
