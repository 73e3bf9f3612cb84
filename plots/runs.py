"""Reading run folders: shared by plot.py and benchmark.py.

A run folder is `{run_dir}/{env_id}__{script}__{seed}__{unix_time}/` with episodes.csv, metrics.csv,
args.json and, once training finished, eval.json (see the README's section on the layout of a script).
"""

import csv
import json
import os
from dataclasses import dataclass

import numpy as np

# Return that counts as solving an env (CartPole-v1's official threshold; -200 for Pendulum-v1, which has
# none, is the level commonly called solved; Acrobot-v1's official threshold).
THRESHOLDS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0, "Acrobot-v1": -100.0}


@dataclass
class Run:
    path: str
    env_id: str
    script: str
    seed: int
    steps: np.ndarray
    """global_step at the end of each training episode"""
    returns: np.ndarray
    """episodic return of each training episode"""
    wall_times: np.ndarray
    """seconds since the start of training at the end of each training episode"""
    evaluation: dict | None
    """eval.json, or None for a run that did not finish"""

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


def read_columns(path: str) -> dict:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    return {name: np.array([float(row[i]) for row in body]) for i, name in enumerate(header)}


def load_runs(run_dir: str) -> list:
    """The run folders under run_dir, one per (env, script, seed): the newest."""
    runs = {}
    for name in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []:
        path = os.path.join(run_dir, name)
        parts = name.split("__")
        if len(parts) != 4 or not os.path.exists(os.path.join(path, "episodes.csv")):
            continue
        env_id, script, seed, stamp = parts
        episodes = read_columns(os.path.join(path, "episodes.csv"))
        eval_path = os.path.join(path, "eval.json")
        evaluation = json.load(open(eval_path)) if os.path.exists(eval_path) else None
        run = Run(path, env_id, script, int(seed), episodes["global_step"], episodes["episodic_return"],
                  episodes["wall_time"], evaluation)
        key = (env_id, script, int(seed))
        if key not in runs or stamp_of(runs[key]) < stamp_of(run):
            runs[key] = run
    return list(runs.values())


def stamp_of(run: Run):
    """Unix time of a run folder's name, with the suffix of a second run in the same second."""
    stamp = os.path.basename(run.path).split("__")[-1]
    seconds, _, suffix = stamp.partition("-")
    return int(seconds), int(suffix or 1)


def group(runs: list) -> dict:
    """{(env_id, script): [runs sorted by seed]}"""
    groups = {}
    for run in runs:
        groups.setdefault((run.env_id, run.script), []).append(run)
    return {key: sorted(value, key=lambda r: r.seed) for key, value in sorted(groups.items())}
