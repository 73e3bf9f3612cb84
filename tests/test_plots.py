"""plots/: reading run folders, smoothing, first reach of a threshold, the benchmark table and the figures."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "plots"))
import benchmark  # noqa: E402
from runs import group, load_runs  # noqa: E402


def fake_run(run_dir, env_id, script, seed, stamp, returns, eval_mean=None):
    path = os.path.join(run_dir, f"{env_id}__{script}__{seed}__{stamp}")
    os.makedirs(path)
    with open(os.path.join(path, "episodes.csv"), "w") as f:
        f.write("global_step,episodic_return,episodic_length,wall_time\n")
        for i, ret in enumerate(returns):
            f.write(f"{100 * (i + 1)},{ret},100,{0.5 * (i + 1)}\n")
    with open(os.path.join(path, "metrics.csv"), "w") as f:
        f.write("global_step,q_mean\n100,1.5\n200,2.5\n")
    if eval_mean is not None:
        json.dump({"mean": eval_mean, "std": 0.0, "returns": [eval_mean], "episodes": 1,
                   "global_step": 100 * len(returns), "sps": 1000.0, "wall_time": 2.0},
                  open(os.path.join(path, "eval.json"), "w"))
    return path


@pytest.fixture
def run_dir(tmp_path):
    folder = str(tmp_path / "runs")
    fake_run(folder, "CartPole-v1", "dqn", 1, 1000, [10, 20, 30], eval_mean=100)  # older: replaced below
    fake_run(folder, "CartPole-v1", "dqn", 1, 2000, [100] * 9 + [500] * 12, eval_mean=500)
    fake_run(folder, "CartPole-v1", "dqn", 2, 2000, [100] * 30, eval_mean=200)
    fake_run(folder, "CartPole-v1", "dqn", 3, 2001, [100] * 5)  # interrupted: no eval.json
    os.makedirs(os.path.join(folder, "not_a_run"))
    return folder


def test_load_runs_keeps_the_newest_run_per_seed(run_dir):
    runs = group(load_runs(run_dir))[("CartPole-v1", "dqn")]
    assert [run.seed for run in runs] == [1, 2, 3]
    assert runs[0].path.endswith("__2000") and len(runs[0].returns) == 21
    assert runs[2].evaluation is None


def test_smoothing_and_first_reach(run_dir):
    run = group(load_runs(run_dir))[("CartPole-v1", "dqn")][0]
    smoothed = run.smoothed(window=10)
    assert smoothed[0] == 100 and smoothed[9] == pytest.approx((9 * 100 + 500) / 10)
    manual = [np.mean(run.returns[max(0, i - 9): i + 1]) for i in range(len(run.returns))]
    assert np.allclose(smoothed, manual)
    # with 9 returns of 500 among the last 10 the mean is (100 + 9*500)/10 = 460 < 475, so it first reaches
    # 475 at the tenth 500: episode 19, step 1900, 9.5 s
    assert run.first_reaching(475) == (1900, 9.5)
    assert group(load_runs(run_dir))[("CartPole-v1", "dqn")][1].first_reaching(475) is None


def test_benchmark_table_counts_seeds_over_the_threshold(run_dir):
    rows = benchmark.table(run_dir, ["dqn"]).splitlines()
    assert len(rows) == 3  # header, separator, one row for (CartPole-v1, dqn)
    cells = [cell.strip() for cell in rows[2].split("|")[1:-1]]
    assert cells[:6] == ["dqn", "CartPole-v1", "2", "350.0 ± 150.0", "500 / 200", "1/2"]
    assert cells[6] == "1,900 / 9.5 (1/2 seeds)"


def test_plot_writes_one_figure_per_env_and_per_algorithm(run_dir, tmp_path):
    out = tmp_path / "png"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "plots", "plot.py"), "--run-dir", run_dir,
                             "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["CartPole-v1.png", "dqn_CartPole-v1.png"]
    assert all(os.path.getsize(out / name) > 10_000 for name in os.listdir(out))
