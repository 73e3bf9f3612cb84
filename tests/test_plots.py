"""plots/: reading run folders, smoothing, first reach of a threshold, the benchmark table and the figures."""

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

from conftest import DQN_TINY, ROOT

sys.path.insert(0, os.path.join(ROOT, "plots"))
import benchmark  # noqa: E402
import plot  # noqa: E402
from runs import group, load_runs, threshold  # noqa: E402


def fake_run(run_dir, env_id, script, seed, stamp, returns, eval_mean=None, exp_name=None, curve=None):
    """A run folder written by hand. With exp_name, args.json holds "exp_name" and "script" as the scripts
    write them now, and the folder is named after exp_name; without, args.json has only settings, as before.
    With curve, a list of (global_step, eval_mean, eval_std, wall_time, eval_time) rows, it has eval_curve.csv
    (the greedy curve); without, none, as runs written before it."""
    path = os.path.join(run_dir, f"{env_id.replace('/', '-')}__{exp_name or script}__{seed}__{stamp}")
    os.makedirs(path)
    args = {"env_id": env_id, "seed": seed} | ({"exp_name": exp_name, "script": script} if exp_name else {})
    json.dump(args, open(os.path.join(path, "args.json"), "w"))
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
    if curve is not None:
        with open(os.path.join(path, "eval_curve.csv"), "w") as f:
            f.write("global_step,eval_mean,eval_std,wall_time,eval_time\n")
            f.writelines(",".join(str(value) for value in row) + "\n" for row in curve)
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


def test_load_runs_keeps_the_newest_finished_run_per_seed(run_dir, capsys):
    runs = group(load_runs(run_dir))[("CartPole-v1", "dqn")]
    assert [run.seed for run in runs] == [1, 2, 3]
    assert runs[0].path.endswith("__2000") and len(runs[0].returns) == 21
    assert runs[2].evaluation is None  # seed 3 has no finished run: its newest, still training, is drawn
    assert capsys.readouterr().out == (f"skipped {run_dir}/CartPole-v1__dqn__1__1000: older; seed 1 of dqn on "
                                       f"CartPole-v1 uses {run_dir}/CartPole-v1__dqn__1__2000\n")


def test_a_finished_run_wins_over_a_newer_unfinished_one_and_each_skipped_run_is_named(tmp_path, capsys):
    folder = str(tmp_path / "runs")
    finished = fake_run(folder, "CartPole-v1", "ppo", 1, 1000, [100] * 40, eval_mean=500)  # the 100k-step run
    interrupted = fake_run(folder, "CartPole-v1", "ppo", 1, 2000, [20] * 8)  # newer, no eval.json
    older = fake_run(folder, "CartPole-v1", "ppo", 2, 1000, [50] * 10, eval_mean=100)
    newer = fake_run(folder, "CartPole-v1", "ppo", 2, 3000, [60] * 10, eval_mean=200)
    only_unfinished = fake_run(folder, "CartPole-v1", "ppo", 3, 1000, [30] * 5)  # a seed still training
    runs = {run.seed: run.path for run in load_runs(folder)}
    assert runs == {1: finished, 2: newer, 3: only_unfinished}
    skipped = [line for line in capsys.readouterr().out.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 2
    assert interrupted in skipped[0] and "unfinished" in skipped[0] and finished in skipped[0]
    assert older in skipped[1] and "older" in skipped[1] and newer in skipped[1]


def test_plot_draws_the_finished_run_and_says_which_it_skipped(tmp_path, monkeypatch):
    folder = str(tmp_path / "runs")
    fake_run(folder, "CartPole-v1", "dqn", 1, 1000, [100] * 40, eval_mean=500)
    interrupted = fake_run(folder, "CartPole-v1", "dqn", 1, 2000, [20] * 8)
    legends, printed = run_plot(monkeypatch, folder)
    assert f"skipped {interrupted}: unfinished" in printed
    assert "final evaluation 500.0 (mean of 1 seed)" in printed


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


def test_greedy_curve_and_its_first_reach(tmp_path, run_dir):
    folder = str(tmp_path / "curves")
    # the greedy curve reaches 475 at its third point (exactly 475), later than the first one above 400
    fake_run(folder, "CartPole-v1", "dqn", 1, 1000, [100] * 30, eval_mean=500,
             curve=[(1000, 120.0, 5.0, 3.5, 0.25), (2000, 430.5, 40.0, 7.0, 0.5), (3000, 475, 0.0, 11.0, 0.75)])
    fake_run(folder, "CartPole-v1", "dqn", 2, 1000, [100] * 30, eval_mean=500, curve=[])  # a header, no rows
    with_curve, header_only = load_runs(folder)
    assert with_curve.has_curve and with_curve.curve_steps.tolist() == [1000, 2000, 3000]
    assert with_curve.curve_means.tolist() == [120, 430.5, 475] and with_curve.curve_stds.tolist() == [5, 40, 0]
    assert with_curve.curve_wall_times.tolist() == [3.5, 7, 11] and with_curve.curve_eval_times.tolist() == [
        0.25, 0.5, 0.75]
    assert with_curve.first_greedy_reaching(475) == (3000, 11.0)
    assert with_curve.first_greedy_reaching(400) == (2000, 7.0)
    assert with_curve.first_greedy_reaching(476) is None
    assert header_only.has_curve and len(header_only.curve_steps) == 0
    assert header_only.first_greedy_reaching(0) is None
    old = load_runs(run_dir)[0]  # a folder written before eval_curve.csv: empty arrays, no first reach
    assert not old.has_curve and old.curve_means.shape == old.curve_eval_times.shape == (0,)
    assert old.first_greedy_reaching(-1e9) is None


def test_threshold_per_script_and_env():
    assert [threshold(script, "Pendulum-v1") for script in ("ddpg", "td3", "sac")] == [-170] * 3
    assert [threshold(script, "Pendulum-v1") for script in ("a2c", "ppo", "trpo", "reinforce")] == [-200] * 4
    assert threshold("sac", "CartPole-v1") == 475 and threshold("dqn", "Acrobot-v1") == -100
    assert np.isnan(threshold("ppo", "MountainCar-v0"))


def table_cells(run_dir, scripts, **options):
    """{column name: cell} of each row of benchmark's table of the runs in run_dir."""
    rows = benchmark.table(run_dir, scripts, **options).splitlines()
    assert [cell.strip() for cell in rows[0].split("|")[1:-1]] == benchmark.COLUMNS
    return [dict(zip(benchmark.COLUMNS, (cell.strip() for cell in row.split("|")[1:-1]))) for row in rows[2:]]


def test_benchmark_table_counts_seeds_over_the_threshold(run_dir):
    [cells] = table_cells(run_dir, ["dqn"])  # one row for (CartPole-v1, dqn)
    assert list(cells.values())[:6] == ["dqn", "CartPole-v1", "2", "350.0 ± 150.0", "500 / 200", "1/2"]
    assert cells["median first reach (training avg10): steps / seconds"] == "1,900 / 9.5 (1/2 seeds)"
    assert cells["steps"] == "2,550" and cells["wall s per run"] == "2.0" and cells["steps/s"] == "1,000"
    # runs written before the greedy curve and without model.pt: n/a where their data is missing
    assert cells["median first reach of the greedy curve: steps / seconds"] == "n/a"
    assert cells["greedy-curve cost, % of wall time"] == "n/a"
    assert cells["seeds whose verdict differs on the old test"] == "n/a"


def old_test(path, mean):
    """An old_test.json written by hand, as benchmark.py caches it."""
    json.dump({"mean": mean, "std": 0.0, "returns": [mean] * 10, "episodes": 10, "first_seed": 10_000},
              open(os.path.join(path, "old_test.json"), "w"))


def test_benchmark_greedy_curve_columns_and_old_test_verdicts(tmp_path):
    folder = str(tmp_path / "runs")
    # ddpg on Pendulum-v1 is judged at -170: seed 2's -180 fails it (it would pass -200)
    old_test(fake_run(folder, "Pendulum-v1", "ddpg", 1, 1000, [-300] * 10, eval_mean=-160, curve=[
        (1000, -900, 50, 2.0, 0.1), (2000, -165, 9, 4.0, 0.1), (3000, -150, 9, 6.0, 0.1)]), -175)
    old_test(fake_run(folder, "Pendulum-v1", "ddpg", 2, 1000, [-300] * 10, eval_mean=-180, curve=[
        (1000, -800, 50, 2.0, 0.1), (2000, -185, 9, 4.0, 0.1)]), -165)
    fake_run(folder, "Pendulum-v1", "ddpg", 3, 1000, [-300] * 10, eval_mean=-140, curve=[
        (1000, -169, 9, 1.6, 0.5)])  # no old_test.json and no model.pt: n/a
    old_test(fake_run(folder, "Pendulum-v1", "ddpg", 4, 1000, [-300] * 10, eval_mean=-150), -170)  # no curve
    fake_run(folder, "Pendulum-v1", "ddpg", 5, 1000, [-300] * 10, eval_mean=-190, curve=[])  # eval_every 0
    [cells] = table_cells(folder, ["ddpg"])
    assert cells["seeds"] == "5" and cells["seeds ≥ threshold"] == "3/5"
    # seeds 1 and 3 reach -170 at (2000 steps, 4.0 s) and (1000, 1.6): the median of each; seeds 4 and 5 have
    # no point on a greedy curve
    assert cells["median first reach of the greedy curve: steps / seconds"] == "1,500 / 2.8 (2/3 seeds)"
    assert cells["median first reach (training avg10): steps / seconds"] == "never"
    # the tests took 0.3, 0.2, 0.5 and 0 s of runs of 2.0 s (eval.json): 15 %, 10 %, 25 % and 0 %; seed 4 has
    # no eval_curve.csv
    assert cells["greedy-curve cost, % of wall time"] == "12.5 % (4/5 seeds)"
    # seed 1: solved, but not on the old test (-175); seed 2 the other way round (-165); seed 4 solved on both
    # (-170 on the old test: exactly the threshold)
    assert cells["seeds whose verdict differs on the old test"] == "2/3: seeds 1, 2 (2 n/a)"
    old_test(os.path.join(folder, "Pendulum-v1__ddpg__1__1000"), -160)
    old_test(os.path.join(folder, "Pendulum-v1__ddpg__3__1000"), -140)
    assert table_cells(folder, ["ddpg"])[0]["seeds whose verdict differs on the old test"] == "1/4: seed 2 (1 n/a)"


class FakeScript:
    """Stands for a script's module as evaluate.py's load() gives it: records each evaluate() call and returns
    the return this test wants for the seeds it was given."""

    def __init__(self, returns_from):
        self.returns_from, self.calls = returns_from, []

    def make_env(self, env_id, training=True, **options):
        return gym.make(env_id, **options)

    def saved_policy(self, saved, args, env, device):
        return lambda obs: 0

    def evaluate(self, policy, make_env, episodes, first_seed):
        self.calls.append((episodes, first_seed))
        return [self.returns_from(first_seed + e) for e in range(episodes)]


def test_benchmark_plays_the_old_test_once_and_caches_it(tmp_path, monkeypatch):
    folder = str(tmp_path / "runs")
    paths = [fake_run(folder, "CartPole-v1", "dqn", seed, 1000, [100] * 10, eval_mean=500) for seed in (3, 4)]
    for path in paths:
        open(os.path.join(path, "model.pt"), "w").close()
    # the old test of seed 3 starts from env seeds 10_003 ... 10_012, the first of which returns 300: it fails;
    # seed 4's (10_004 ... 10_013) passes
    script = FakeScript(lambda env_seed: 300.0 if env_seed == 10_003 else 490.0)
    loaded = []
    monkeypatch.setattr(benchmark.evaluate, "load", lambda path: loaded.append(path) or (
        script, SimpleNamespace(env_id="CartPole-v1"), {}))
    # --check only reads old_test.json: no model loaded, n/a
    assert table_cells(folder, ["dqn"], compute_old_test=False)[0][
        "seeds whose verdict differs on the old test"] == "n/a"
    status, _ = run_benchmark(monkeypatch, "--check", "--run-dir", folder, "--out", results_files(tmp_path)[0])
    assert status not in (0, None)  # the file has no rows yet
    assert loaded == [] and not any(os.path.exists(os.path.join(p, "old_test.json")) for p in paths)
    replaced = []
    monkeypatch.setattr(os, "replace", lambda source, target: replaced.append((source, target)) or
                        os.rename(source, target))
    [cells] = table_cells(folder, ["dqn"])
    # each old_test.json was written whole to a .tmp file first, then renamed
    assert replaced == [(os.path.join(path, "old_test.json.tmp"), os.path.join(path, "old_test.json"))
                        for path in paths]
    assert loaded == [os.path.join(path, "model.pt") for path in paths]
    assert script.calls == [(10, 10_003), (10, 10_004)]  # 10 episodes from env seed seed + 10_000
    assert cells["seeds whose verdict differs on the old test"] == "1/2: seed 3"  # 471 < 475
    with open(os.path.join(paths[0], "old_test.json")) as f:
        cached = json.load(f)
    assert cached["returns"] == [300.0] + [490.0] * 9 and cached["mean"] == pytest.approx(471)
    assert cached["first_seed"] == 10_003 and cached["episodes"] == 10
    assert sorted(os.listdir(paths[0])) == ["args.json", "episodes.csv", "eval.json", "metrics.csv", "model.pt",
                                            "old_test.json"]  # no .tmp left
    # read again (as --summarize-only and --check do): from old_test.json, nothing played
    assert table_cells(folder, ["dqn"])[0] == table_cells(folder, ["dqn"], compute_old_test=False)[0] == cells
    assert len(script.calls) == 2 and len(loaded) == 2


def test_a_real_run_gives_its_greedy_curve_and_its_model_plays_the_old_test(tmp_path, monkeypatch):
    """A tiny dqn.py run: runs.py reads its eval_curve.csv, and benchmark.py loads its model.pt with evaluate.py's
    load() for the old test. Pointed at the seeds of the run's own final evaluation, that test replays it."""
    dqn = importlib.import_module("dqn")
    folder = str(tmp_path / "runs")
    dqn.train(dqn.Args(**dict(DQN_TINY, seed=7, eval_every=200, run_dir=folder, cuda=False)))
    [run] = load_runs(folder)
    assert run.has_curve and run.curve_steps.tolist() == [200, 400, 600, 800]
    assert np.all(np.diff(run.curve_wall_times) > 0) and np.all(run.curve_eval_times >= 0)
    assert np.all(run.curve_wall_times <= run.evaluation["wall_time"])
    assert np.all((run.curve_means >= 8) & (run.curve_means <= 500))  # CartPole-v1's returns
    # the final evaluation played episode e from env seed TEST_SEED + e: the old test, moved there, replays it
    monkeypatch.setattr(benchmark, "OLD_TEST_OFFSET", dqn.TEST_SEED - run.seed)
    monkeypatch.setattr(benchmark, "OLD_TEST_EPISODES", run.evaluation["episodes"])
    assert benchmark.old_test_mean(run, compute=True) == pytest.approx(run.evaluation["mean"])
    with open(os.path.join(run.path, "old_test.json")) as f:
        replayed = json.load(f)
    assert replayed["returns"] == run.evaluation["returns"] and replayed["first_seed"] == dqn.TEST_SEED


PROSE = "# Results\n\nProse before, kept as it is.\n\n"


def results_files(tmp_path, tuning_rows=""):
    """A RESULTS-like file with prose around the machine, tuning and held-out regions, and a README-like one
    with the summary region; returns their paths."""
    results, readme = str(tmp_path / "RESULTS.md"), str(tmp_path / "README.md")
    with open(results, "w") as f:
        f.write(PROSE + "<!-- benchmark:machine -->\nMachine: old\n<!-- /benchmark -->\n\nTuning:\n\n"
                "<!-- benchmark:tuning -->\n" + tuning_rows + "<!-- /benchmark -->\n\nMiddle prose.\n\n"
                "<!-- benchmark:held-out -->\n<!-- /benchmark -->\n\nProse after.\n")
    with open(readme, "w") as f:
        f.write("# A README\n\n<!-- benchmark:summary -->\n<!-- /benchmark -->\n\n## Next section\n")
    return results, readme


def run_benchmark(monkeypatch, *arguments):
    """benchmark.py's main() in this process (with --summarize-only or --check: no training); returns its exit
    status (0, or sys.exit's argument) and what it printed."""
    monkeypatch.setattr(sys, "argv", ["benchmark.py", "--scripts", "dqn", *arguments])
    output, status = io.StringIO(), 0
    with contextlib.redirect_stdout(output):
        try:
            benchmark.main()
        except SystemExit as end:
            status = end.code
    return status, output.getvalue()


def mujoco_run(folder, env_id, script, seed, eval_mean, std, wall_time, curve=None):
    """A finished MuJoCo run written by hand: fake_run with its eval.json's std, steps and wall time set."""
    path = fake_run(folder, env_id, script, seed, 1000, [100] * 5, eval_mean=eval_mean, curve=curve)
    evaluation = json.load(open(os.path.join(path, "eval.json")))
    evaluation |= {"std": std, "global_step": 200_000, "wall_time": wall_time, "sps": 200_000 / wall_time,
                   "episodes": 10, "first_seed": 1_000_000}  # the whole test set of a MuJoCo task
    json.dump(evaluation, open(os.path.join(path, "eval.json"), "w"))


def test_mujoco_table_gives_each_seed_its_spread_and_the_greedy_curve_after_an_hour(tmp_path, monkeypatch):
    folder = str(tmp_path / "mujoco")
    mujoco_run(folder, "Hopper-v5", "sac", 1, 2500.0, 40.0, 7200.0,
               curve=[(50_000, 300.0, 1.0, 1800.0, 2.0), (100_000, 900.0, 5.0, 3599.0, 2.0),
                      (150_000, 1500.0, 5.0, 5400.0, 2.0)])
    mujoco_run(folder, "Hopper-v5", "sac", 2, 1500.0, 0.0, 3000.0)  # done within the hour
    mujoco_run(folder, "HalfCheetah-v5", "ppo", 1, 1900.0, 30.0, 600.0)
    mujoco_run(folder, "Pendulum-v1", "sac", 1, -150.0, 1.0, 60.0)  # not a MuJoCo task
    mujoco_run(folder, "HalfCheetah-v5", "a2c", 1, 500.0, 1.0, 600.0)  # a2c is measured on Hopper-v5 only
    rows = benchmark.mujoco_rows(folder, ["sac", "ppo", "a2c"])
    assert set(rows) == {("sac", "Hopper-v5"), ("ppo", "HalfCheetah-v5")}
    sac = dict(zip(benchmark.MUJOCO_COLUMNS, rows[("sac", "Hopper-v5")]))
    assert sac["seeds"] == "2" and sac["steps"] == "200,000"
    assert sac["final eval, mean ± std over seeds"] == "2000.0 ± 500.0"
    assert sac["per-seed eval (± std over its episodes)"] == "2500 ± 40 / 1500 ± 0"
    assert sac["greedy curve after 1 hour"] == "900 at 100,000 / done: 1500"  # the last test before 3600 s
    assert sac["wall s per run"] == "5,100" and sac["steps/s"] == f"{(200_000 / 7200 + 200_000 / 3000) / 2:,.0f}"
    ppo = dict(zip(benchmark.MUJOCO_COLUMNS, rows[("ppo", "HalfCheetah-v5")]))
    assert ppo["greedy curve after 1 hour"] == "the runs end within it"

    results = str(tmp_path / "RESULTS.md")
    with open(results, "w") as f:
        f.write("Prose.\n\n<!-- benchmark:mujoco -->\n| script | env | seeds |\n|---|---|---:|\n"
                "| td3 | Hopper-v5 | 3 |\n<!-- /benchmark -->\n\nMore prose.\n")
    status, _ = run_benchmark(monkeypatch, "--mujoco", "--scripts", "sac", "--check", "--run-dir", folder,
                              "--out", results)
    assert "1 MuJoCo row differs" in str(status)
    status, _ = run_benchmark(monkeypatch, "--mujoco", "--scripts", "sac", "ppo", "--summarize-only",
                              "--run-dir", folder, "--out", results)
    text = open(results).read()
    assert status == 0 and text.startswith("Prose.") and text.endswith("More prose.\n")
    table = benchmark.parse_rows(benchmark.regions(text)["mujoco"], benchmark.MUJOCO_COLUMNS)
    assert set(table) == {("sac", "Hopper-v5"), ("ppo", "HalfCheetah-v5"), ("td3", "Hopper-v5")}  # td3's row kept
    assert table[("sac", "Hopper-v5")] == rows[("sac", "Hopper-v5")]
    status, printed = run_benchmark(monkeypatch, "--mujoco", "--scripts", "sac", "--check", "--run-dir", folder,
                                    "--out", results)
    assert status == 0


def test_minatar_suite_trains_its_games_with_its_seeds_and_writes_its_own_region(tmp_path, monkeypatch):
    """--minatar: dqn, rainbow and ppo on seeds 1-3, the other DQN variants on seed 1, each on the games of
    MINATAR_TASKS, one torch thread a run; the table goes into the region minatar, not mujoco."""
    folder, jobs = str(tmp_path / "minatar"), []
    monkeypatch.setattr(benchmark, "train_one", lambda *job: (jobs.append(job[:3]),
                                                              mujoco_run(folder, job[1], job[0], job[2], 5.0, 1.0, 60.0),
                                                              0)[-1])
    results = str(tmp_path / "RESULTS.md")
    with open(results, "w") as f:
        f.write("<!-- benchmark:minatar -->\n<!-- /benchmark -->\n<!-- benchmark:mujoco -->\n<!-- /benchmark -->\n")
    status, _ = run_benchmark(monkeypatch, "--minatar", "--scripts", "dqn", "per_dqn", "ppo", "--run-dir", folder,
                              "--procs", "1", "--out", results)
    assert status in (0, None)
    assert sorted(jobs) == sorted([("dqn", game, seed) for game in ("MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1")
                                   for seed in (1, 2, 3)] + [("ppo", "MinAtar/Breakout-v1", seed) for seed in (1, 2, 3)]
                                  + [("per_dqn", "MinAtar/Breakout-v1", 1)])
    regions = benchmark.regions(open(results).read())
    table = benchmark.parse_rows(regions["minatar"], benchmark.MUJOCO_COLUMNS)
    assert set(table) == {("dqn", "MinAtar/Breakout-v1"), ("dqn", "MinAtar/SpaceInvaders-v1"),
                          ("ppo", "MinAtar/Breakout-v1"), ("per_dqn", "MinAtar/Breakout-v1")}
    assert table[("dqn", "MinAtar/Breakout-v1")][2] == "3" and not regions["mujoco"].strip()


def test_a_minatar_run_judged_on_10_episodes_is_replayed_on_the_whole_test_set_of_100(tmp_path, monkeypatch):
    """A run made before MinAtar's test set grew to 100 episodes (eval.json: 10) is judged on all 100: its model
    played once from env seed TEST_SEED (test_set.json, written whole), then read; --check plays nothing, and a
    run without model.pt keeps its 10 episodes, which its cell says."""
    folder = str(tmp_path / "minatar")
    paths = [fake_run(folder, "MinAtar/Breakout-v1", "dqn", seed, 1000, [5] * 5, eval_mean=9.0) for seed in (1, 2, 3)]
    for path in paths:
        evaluation = json.load(open(os.path.join(path, "eval.json")))
        evaluation |= {"std": 2.0, "episodes": 10, "first_seed": 1_000_000}
        json.dump(evaluation, open(os.path.join(path, "eval.json"), "w"))
    for path in paths[:2]:
        open(os.path.join(path, "model.pt"), "w").close()
    script, trainings = FakeScript(lambda env_seed: float(env_seed % 3)), []  # 1, 2, 0, ... from env seed 10^6
    script.make_env = lambda env_id, training=True: (trainings.append(training), gym.make("CartPole-v1"))[1]
    loaded = []
    monkeypatch.setattr(benchmark.evaluate, "load", lambda path: loaded.append(path) or (
        script, SimpleNamespace(env_id="MinAtar/Breakout-v1"), {}))
    assert benchmark.test_set_episodes("dqn", "MinAtar/Breakout-v1") == 100
    assert benchmark.test_set_episodes("dqn", "ALE/Pong-v5") == 10
    tasks = {"dqn": ["MinAtar/Breakout-v1"]}
    unplayed = benchmark.mujoco_rows(folder, ["dqn"], tasks, compute=False)[("dqn", "MinAtar/Breakout-v1")]
    assert unplayed[5] == " / ".join(["9 ± 2 (10 episodes)"] * 3) and loaded == []
    results = str(tmp_path / "RESULTS.md")
    with open(results, "w") as f:
        f.write("<!-- benchmark:minatar -->\n<!-- /benchmark -->\n")
    status, _ = run_benchmark(monkeypatch, "--minatar", "--check", "--run-dir", folder, "--out", results)
    assert "1 MinAtar row differs" in str(status) and loaded == []  # --check plays nothing
    cells = benchmark.mujoco_rows(folder, ["dqn"], tasks)[("dqn", "MinAtar/Breakout-v1")]
    row = dict(zip(benchmark.MUJOCO_COLUMNS, cells))
    returns = [e % 3 for e in range(1_000_000, 1_000_100)]
    mean, std = np.mean(returns), np.std(returns)
    assert script.calls == [(100, 1_000_000)] * 2 and loaded == [os.path.join(p, "model.pt") for p in paths[:2]]
    assert trainings and not any(trainings), "the test set is played on envs made for testing"
    assert row["per-seed eval (± std over its episodes)"] == f"{mean:.0f} ± {std:.0f} / " * 2 + "9 ± 2 (10 episodes)"
    means = [mean, mean, 9.0]
    assert row["final eval, mean ± std over seeds"] == f"{np.mean(means):.1f} ± {np.std(means):.1f}"
    evaluation = json.load(open(os.path.join(paths[0], "eval.json")))
    json.dump(evaluation | {"wall_time": 4000.0}, open(os.path.join(paths[0], "eval.json"), "w"))  # over an hour
    cells = benchmark.mujoco_rows(folder, ["dqn"], tasks, compute=False)[("dqn", "MinAtar/Breakout-v1")]
    assert cells[6] == f"n/a / done: {mean:.0f} / done: 9"  # (no greedy curve) / the whole test set / eval.json
    json.dump(evaluation, open(os.path.join(paths[0], "eval.json"), "w"))
    with open(os.path.join(paths[0], "test_set.json")) as f:
        kept = json.load(f)
    assert kept["episodes"] == 100 and kept["first_seed"] == 1_000_000 and kept["mean"] == pytest.approx(mean)
    assert "test_set.json.tmp" not in os.listdir(paths[0]) and "test_set.json" not in os.listdir(paths[2])
    again = benchmark.mujoco_rows(folder, ["dqn"], tasks, compute=False)[("dqn", "MinAtar/Breakout-v1")]
    assert again == list(row.values()) and len(script.calls) == 2  # read from test_set.json, nothing played


def test_a_real_run_replayed_on_a_larger_test_set_plays_its_own_episodes_first(tmp_path):
    """A tiny dqn.py run evaluated on 5 episodes of CartPole-v1's 20: on_test_set() loads its model.pt and plays
    all 20 from TEST_SEED, the first 5 being the run's own."""
    dqn = importlib.import_module("dqn")
    folder = str(tmp_path / "runs")
    dqn.train(dqn.Args(**dict(DQN_TINY, seed=5, eval_episodes=5, eval_every=0, run_dir=folder, cuda=False)))
    [run] = load_runs(folder)
    assert run.evaluation["episodes"] == 5
    test = benchmark.on_test_set(run, compute=True)
    assert test["episodes"] == 20 == dqn.TEST_EPISODES["CartPole-v1"] and test["first_seed"] == dqn.TEST_SEED
    assert test["returns"][:5] == run.evaluation["returns"]


def outside_regions(text):
    return benchmark.REGION.sub("<region>", text)


@pytest.fixture
def with_held_out(run_dir):
    held_out = os.path.join(run_dir, "held-out")
    fake_run(held_out, "CartPole-v1", "dqn", 101, 3000, [500] * 10, eval_mean=500)
    fake_run(held_out, "CartPole-v1", "dqn", 102, 3000, [500] * 10, eval_mean=480)
    return run_dir


def test_benchmark_writes_the_tables_between_the_markers_and_leaves_the_prose(with_held_out, tmp_path,
                                                                              monkeypatch):
    # a table of a benchmark before the greedy curve (its columns, as RESULTS.md had them), with a row of sac
    stale_sac = ("| script | env | seeds | final eval, mean ± std over seeds | per-seed eval | seeds ≥ threshold | "
                 "median first reach (training avg10): steps / seconds | steps | wall s per run | steps/s |\n"
                 "|---|---|---:|---|---|---:|---|---:|---:|---:|\n"
                 "| sac | Pendulum-v1 | 10 | -127.4 ± 6.0 | -134 | 10/10 | 9,400 / 38.4 (7/10 seeds) | 10,000 | 44.2 "
                 "| 235 |\n")
    results, readme = results_files(tmp_path, tuning_rows=stale_sac)
    before = {path: open(path).read() for path in (results, readme)}
    run_benchmark(monkeypatch, "--summarize-only", "--run-dir", with_held_out, "--out", results, readme)
    after = {path: open(path).read() for path in (results, readme)}
    for path in (results, readme):
        assert outside_regions(after[path]) == outside_regions(before[path])
    regions = benchmark.regions(after[results])
    assert regions["machine"].strip() == f"Machine: {benchmark.versions()}"
    tuning = benchmark.parse_rows(regions["tuning"])
    assert tuning[("dqn", "CartPole-v1")] == benchmark.parse_rows(benchmark.table(with_held_out, ["dqn"]))[
        ("dqn", "CartPole-v1")]
    # a row of a script not benchmarked stays; written before the newer columns, it has n/a in them
    kept = dict(zip(benchmark.COLUMNS, tuning[("sac", "Pendulum-v1")]))
    assert (kept["per-seed eval"], kept["median first reach (training avg10): steps / seconds"],
            kept["wall s per run"], kept["steps/s"]) == ("-134", "9,400 / 38.4 (7/10 seeds)", "44.2", "235")
    assert kept["median first reach of the greedy curve: steps / seconds"] == "n/a"
    assert kept["seeds whose verdict differs on the old test"] == "n/a"
    held_out = benchmark.parse_rows(regions["held-out"])
    assert list(held_out) == [("dqn", "CartPole-v1")] and held_out[("dqn", "CartPole-v1")][4] == "500 / 480"
    summary = benchmark.parse_rows(benchmark.regions(after[readme])["summary"])
    # dqn: seeds 1 and 2 evaluate 500 and 200 (1 solved), seeds 101 and 102 500 and 480 (2 solved); 2,550 steps
    # in the tuning runs (the median of 2,100 and 3,000); 2.0 s a run
    assert summary[("dqn", "CartPole-v1")] == ["dqn", "CartPole-v1", "3/4", "490", "2,550", "2 s"]
    assert summary[("sac", "Pendulum-v1")][2:] == ["10/10", "-134", "10,000", "44 s"]  # from the row kept
    # written again from the same runs: the same bytes
    run_benchmark(monkeypatch, "--summarize-only", "--run-dir", with_held_out, "--out", results, readme)
    assert {path: open(path).read() for path in (results, readme)} == after


def test_benchmark_check_passes_on_a_fresh_write_and_names_each_edited_row(with_held_out, tmp_path, monkeypatch):
    results, readme = results_files(tmp_path)
    files = ["--run-dir", with_held_out, "--out", results, readme]
    assert run_benchmark(monkeypatch, "--summarize-only", *files)[0] == 0
    written = {path: open(path).read() for path in (results, readme)}
    status, printed = run_benchmark(monkeypatch, "--check", *files)
    assert status == 0 and "every row of ['dqn'] matches the runs" in printed
    assert {path: open(path).read() for path in (results, readme)} == written  # --check writes nothing

    def check_with(path, old, new):
        assert written[path].count(old) == 1
        with open(path, "w") as f:
            f.write(written[path].replace(old, new))
        status, printed = run_benchmark(monkeypatch, "--check", *files)
        with open(path, "w") as f:
            f.write(written[path])
        assert status not in (0, None)
        return [line for line in printed.splitlines() if not line.startswith("skipped")], str(status)

    lines, status = check_with(results, "350.0 ± 150.0", "351.0 ± 150.0")  # a number of the tuning table
    assert lines == [f"{results}, tuning seeds, dqn on CartPole-v1: final eval, mean ± std over seeds: "
                     "'351.0 ± 150.0' in the file, '350.0 ± 150.0' from the runs"]
    assert status.startswith("1 row differs from the runs in")
    lines, _ = check_with(results, "500 / 480", "500 / 481")  # a per-seed number of the held-out table
    assert lines == [f"{results}, held-out seeds, dqn on CartPole-v1: per-seed eval: '500 / 481' in the file, "
                     "'500 / 480' from the runs"]
    lines, _ = check_with(readme, "| 3/4 |", "| 4/4 |")  # the summary
    assert lines == [f"{readme}, summary, dqn on CartPole-v1: seeds solved: '4/4' in the file, '3/4' from the tables"]
    row = next(line for line in written[results].splitlines() if line.startswith("| dqn | CartPole-v1 | 2 |"))
    lines, _ = check_with(results, row + "\n", "")  # a row deleted
    assert lines == [f"{results}, tuning seeds, dqn on CartPole-v1: in the runs, not in the file"]
    lines, _ = check_with(results, row, row + "\n" + row.replace("CartPole-v1", "Acrobot-v1"))  # a row made up
    assert lines == [f"{results}, tuning seeds, dqn on Acrobot-v1: no finished runs",
                     f"{readme}, summary, dqn on Acrobot-v1: in the tables, not in the file"]
    # a tuning table written before the greedy curve's columns existed: the header is named, and its cells are
    # compared by their column's name (all the same here: these runs have no greedy curve either)
    def without_new_columns(line):
        cells = line.split("|")
        return "|".join(cells[:7] + cells[8:12] + cells[14:])
    header = next(line for line in written[results].splitlines() if line.startswith("| script |"))
    align = next(line for line in written[results].splitlines() if line.startswith("|---|"))
    tuning = f"{header}\n{align}\n{row}"  # the tuning table: the first one, with the one row
    assert written[results].count(tuning) == 1
    old = written[results].replace(tuning, "\n".join(without_new_columns(line) for line in (header, align, row)))
    assert [len(without_new_columns(line).split("|")) for line in (header, row)] == [12, 12]  # 10 columns
    assert "greedy" not in without_new_columns(header) and "old test" not in without_new_columns(header)
    with open(results, "w") as f:
        f.write(old)
    status, printed = run_benchmark(monkeypatch, "--check", *files)
    with open(results, "w") as f:
        f.write(written[results])
    assert status not in (0, None)
    assert [line for line in printed.splitlines() if not line.startswith("skipped")] == [
        f"{results}, tuning seeds: the columns differ from today's {benchmark.COLUMNS}"]


def test_benchmark_check_without_runs_is_one_line(tmp_path, monkeypatch):
    results, readme = results_files(tmp_path)
    status, _ = run_benchmark(monkeypatch, "--check", "--run-dir", str(tmp_path / "nothing"), "--out", results)
    assert status.startswith(f"benchmark.py: error: no finished runs of ['dqn'] in {tmp_path / 'nothing'} ")


def test_the_readme_summary_agrees_with_the_tables_of_results_md():
    results, readme = (open(os.path.join(ROOT, name)).read() for name in ("RESULTS.md", "README.md"))
    tables = benchmark.regions(results)
    expected = benchmark.expected_regions({"RESULTS.md": results}, {"tuning": {}, "held-out": {}})
    assert benchmark.regions(readme)["summary"].strip() == expected["summary"]
    assert benchmark.parse_rows(expected["tuning"]) == benchmark.parse_rows(tables["tuning"], benchmark.COLUMNS)


def test_plot_writes_one_figure_per_env_and_per_algorithm(run_dir, tmp_path):
    out = tmp_path / "png"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "plots", "plot.py"), "--run-dir", run_dir,
                             "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["CartPole-v1.png", "dqn_CartPole-v1.png"]
    assert all(os.path.getsize(out / name) > 10_000 for name in os.listdir(out))


def run_plot(monkeypatch, *arguments, axes=None):
    """plot.py's main() in this process with these arguments: returns {figure file name: its legend's labels}
    and what it printed. With a dict `axes`, each figure's axes go into it too, by file name."""
    legends = {}
    finish = plot.finish

    def recording_finish(ax, env_id, title, path):
        finish(ax, env_id, title, path)
        legends[os.path.basename(path)] = [text.get_text() for text in ax.get_legend().get_texts()]
        if axes is not None:
            axes[os.path.basename(path)] = ax

    monkeypatch.setattr(plot, "finish", recording_finish)
    monkeypatch.setattr(sys, "argv", ["plot.py", *arguments])
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        plot.main()
    return legends, output.getvalue()


def test_plot_draws_the_greedy_curve_beside_the_training_curve(tmp_path, monkeypatch):
    folder = str(tmp_path / "runs")
    # seeds 1 and 2 have greedy curves (the same test steps); seed 3, written before them, has none
    fake_run(folder, "CartPole-v1", "dqn", 1, 1000, [100] * 20, eval_mean=500,
             curve=[(1000, 100, 0, 1.0, 0.1), (2000, 300, 0, 2.0, 0.1)])
    fake_run(folder, "CartPole-v1", "dqn", 2, 1000, [100] * 20, eval_mean=500,
             curve=[(1000, 200, 0, 1.0, 0.1), (2000, 500, 0, 2.0, 0.1)])
    fake_run(folder, "CartPole-v1", "dqn", 3, 1000, [100] * 20, eval_mean=500)
    axes = {}
    legends, _ = run_plot(monkeypatch, folder, axes=axes)
    assert legends["CartPole-v1.png"] == ["dqn (3 seeds)", "solved", plot.GREEDY_LABEL]
    assert legends["dqn_CartPole-v1.png"] == ["dqn (3 seeds)", "solved", plot.GREEDY_LABEL]
    for ax in axes.values():
        training = next(line for line in ax.get_lines() if line.get_label() == "dqn (3 seeds)")
        [greedy] = [line for line in ax.get_lines() if line.get_linestyle() == "--" and len(line.get_xdata())]
        assert greedy.get_color() == training.get_color()  # the same color, dashed
        x, y = np.asarray(greedy.get_xdata()), np.asarray(greedy.get_ydata())
        assert x[-1] == 2000 and np.all(np.isnan(y[x < 1000]))  # nothing before the first test
        # the mean over the two seeds with a curve: (100 + 200)/2 at step 1000 rising to (300 + 500)/2
        assert y[-1] == pytest.approx(400) and np.interp(1000, x[x >= 1000], y[x >= 1000]) == pytest.approx(
            150, abs=2)
        band = ax.collections[-1].get_paths()[0].vertices  # min..max over those seeds, lighter than training's
        assert band[:, 1].min() == pytest.approx(100, abs=3) and band[:, 1].max() == pytest.approx(500)
        assert ax.collections[-1].get_alpha() < ax.collections[0].get_alpha()
    # runs without a greedy curve: as before, no dashed line and no legend entry for it
    old = str(tmp_path / "old")
    fake_run(old, "CartPole-v1", "dqn", 1, 1000, [100] * 20, eval_mean=500)
    axes = {}
    legends, _ = run_plot(monkeypatch, old, axes=axes)
    assert legends["CartPole-v1.png"] == ["dqn (1 seed)", "solved"]
    assert not [line for ax in axes.values() for line in ax.get_lines() if line.get_linestyle() == "--"]


def test_plot_draws_each_scripts_threshold(tmp_path, monkeypatch):
    folder = str(tmp_path / "runs")
    fake_run(folder, "Pendulum-v1", "ddpg", 1, 1000, [-300] * 20, eval_mean=-150, exp_name="ddpg")
    fake_run(folder, "Pendulum-v1", "ppo", 1, 1000, [-300] * 20, eval_mean=-150, exp_name="ppo")
    axes = {}
    legends, _ = run_plot(monkeypatch, folder, axes=axes)

    def solved(name):
        return {line.get_label(): line.get_ydata()[0] for line in axes[name].get_lines()
                if line.get_label().startswith("solved")}
    assert solved("Pendulum-v1.png") == {"solved by ddpg": -170, "solved by ppo": -200}
    assert solved("ddpg_Pendulum-v1.png") == {"solved": -170} and solved("ppo_Pendulum-v1.png") == {"solved": -200}


@pytest.fixture
def two_experiments(tmp_path):
    """dqn and dqn_lr3e-4 on CartPole-v1, seed 1 each (and seed 2 of dqn_lr3e-4), in one folder."""
    folder = str(tmp_path / "experiments")
    fake_run(folder, "CartPole-v1", "dqn", 1, 1000, [100] * 20, eval_mean=500, exp_name="dqn")
    fake_run(folder, "CartPole-v1", "dqn", 1, 1001, [50] * 20, eval_mean=100, exp_name="dqn_lr3e-4")
    fake_run(folder, "CartPole-v1", "dqn", 2, 1001, [60] * 20, exp_name="dqn_lr3e-4")
    return folder


def committed_figures():
    folder = os.path.join(ROOT, "plots")
    return {name: os.path.getmtime(os.path.join(folder, name)) for name in os.listdir(folder)}


def test_runs_group_by_experiment_name_and_old_folders_fall_back_to_the_folder_name(two_experiments, run_dir):
    groups = group(load_runs(two_experiments))
    assert list(groups) == [("CartPole-v1", "dqn"), ("CartPole-v1", "dqn_lr3e-4")]  # not one curve "dqn"
    assert [run.seed for run in groups[("CartPole-v1", "dqn_lr3e-4")]] == [1, 2]
    assert {run.script for runs in groups.values() for run in runs} == {"dqn"}
    old = load_runs(run_dir)  # args.json without exp_name and script: both from the folder's name
    assert {(run.exp_name, run.script) for run in old} == {("dqn", "dqn")}


def test_plot_compares_experiments_into_the_run_folder(two_experiments, monkeypatch):
    before = committed_figures()
    legends, printed = run_plot(monkeypatch, two_experiments)
    assert legends["CartPole-v1.png"] == ["dqn (1 seed)", "dqn_lr3e-4 (2 seeds)", "solved"]
    assert legends["dqn_lr3e-4_CartPole-v1.png"] == ["dqn_lr3e-4 (2 seeds)", "solved"]
    assert "dqn (1 seed: 1) in" in printed and "dqn_lr3e-4 (2 seeds: 1, 2) in" in printed
    written = sorted(name for name in os.listdir(two_experiments) if name.endswith(".png"))
    assert written == ["CartPole-v1.png", "dqn_CartPole-v1.png", "dqn_lr3e-4_CartPole-v1.png"]
    assert committed_figures() == before  # plots/ untouched: no new file, none rewritten

    legends, _ = run_plot(monkeypatch, "--run-dir", two_experiments, "--exp-names", "dqn_lr3e-4", "dqn")
    assert legends["CartPole-v1.png"][:2] == ["dqn_lr3e-4 (2 seeds)", "dqn (1 seed)"]  # in the order given


def test_plot_uses_the_labels_given(tmp_path, two_experiments, monkeypatch):
    # one label per --exp-names name
    out = tmp_path / "png"
    legends, _ = run_plot(monkeypatch, two_experiments, "--exp-names", "dqn", "dqn_lr3e-4",
                          "--labels", "lr 1e-3", "lr 3e-4", "--out", str(out))
    assert legends["CartPole-v1.png"] == ["lr 1e-3 (1 seed)", "lr 3e-4 (2 seeds)", "solved"]
    assert sorted(os.listdir(out)) == ["CartPole-v1.png", "lr_1e-3_CartPole-v1.png", "lr_3e-4_CartPole-v1.png"]
    # one label per folder: the same experiment name in two folders gives two curves
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fake_run(a, "CartPole-v1", "dqn", 1, 1000, [100] * 20, exp_name="dqn")
    fake_run(b, "CartPole-v1", "dqn", 1, 1000, [50] * 20, exp_name="dqn")
    legends, _ = run_plot(monkeypatch, "--run-dir", a, b, "--labels", "lr 1e-3", "lr 3e-4")
    assert legends["CartPole-v1.png"] == ["lr 1e-3 (1 seed)", "lr 3e-4 (1 seed)", "solved"]
    assert "CartPole-v1.png" in os.listdir(a) and "CartPole-v1.png" not in os.listdir(b)  # the first folder
    legends, _ = run_plot(monkeypatch, a, b)  # without labels: the folder names the curve
    assert legends["CartPole-v1.png"][:2] == [f"{a}: dqn (1 seed)", f"{b}: dqn (1 seed)"]
    with pytest.raises(SystemExit, match="2 labels for 1 folder of runs"):
        run_plot(monkeypatch, two_experiments, "--labels", "lr 1e-3", "lr 3e-4")


# ---------------------------------------------------------------------------------------------------
# teaching.py's over-estimation figure: the maximization-bias MDP, Monte-Carlo returns, the figure
# ---------------------------------------------------------------------------------------------------
import copy  # noqa: E402

import teaching  # noqa: E402


def test_maximization_bias_env_dynamics_and_true_values():
    env = gym.make(teaching.TOY_ID)
    assert env.action_space.n == 10 and env.observation_space.shape == (2,)
    obs, _ = env.reset(seed=0)
    assert obs.tolist() == [1.0, 0.0]  # A
    obs, reward, terminated, truncated, _ = env.step(0)  # right: the end, reward 0
    assert (obs.tolist(), reward, terminated, truncated) == ([0.0, 0.0], 0.0, True, False)
    rewards = []
    for episode in range(3000):
        env.reset()
        obs, reward, terminated, _, _ = env.step(1 + episode % 9)  # every other action of A is left: to B
        assert (obs.tolist(), reward, terminated) == ([0.0, 1.0], 0.0, False)
        obs, reward, terminated, _, _ = env.step(episode % 10)  # every action of B ends, reward ~ N(-0.1, 1)
        assert obs.tolist() == [0.0, 0.0] and terminated
        rewards.append(reward)
    assert np.mean(rewards) == pytest.approx(-0.1, abs=0.06) and np.std(rewards) == pytest.approx(1.0, abs=0.05)
    # by hand: Q(B, a) = E[r] = -0.1 for every a; Q(A, left) = 0 + γ max_a Q(B, a) = -0.1 γ; Q(A, right) = 0
    assert teaching.toy_true_values(0.99) == pytest.approx(
        {"max_a Q(B, a)": -0.1, "Q(A, left)": -0.099, "Q(A, right)": 0.0})


def test_monte_carlo_return_ignores_the_time_limit():
    always_0 = lambda obs: np.zeros(len(obs), dtype=np.int64)  # noqa: E731
    # CountTruncatedDiscrete-v0 (conftest): reward 1 a step, never terminates, time limit of 5 steps: the
    # return rolls on past the limit to 1/(1 − γ) = 2 (less the tail under the tolerance), not 1.9375
    snapshots, observations = teaching.visited_states(always_0, "CountTruncatedDiscrete-v0", episodes=1, stride=2)
    assert observations[:, 0].tolist() == [0, 2, 4]  # the time limit ends the episode after 5 steps
    returns = teaching.discounted_returns(always_0, snapshots, observations, gamma=0.5, tolerance=1e-6)
    assert returns == pytest.approx([2.0] * 3, abs=1e-5)
    # CountTerminatedDiscrete-v0 terminates after 3 steps: 1 + γ + γ²
    env = gym.make("CountTerminatedDiscrete-v0")
    obs, _ = env.reset(seed=0)
    assert teaching.discounted_returns(always_0, [copy.deepcopy(env.unwrapped)], obs[None], 0.5) == \
        pytest.approx([1.75])
    # CartPole-v1 with a controller that never fails: every state, also the one at step 400 of the time-limited
    # episode, is worth ≈ 1/(1 − γ) = 100, not (1 − γ^(500 − t)) / (1 − γ) (99.3 at t = 0, 63.4 at t = 400)
    controller = lambda obs: (obs @ np.array([0.1, 0.5, 5.0, 1.0]) > 0).astype(np.int64)  # noqa: E731
    snapshots, observations = teaching.visited_states(controller, "CartPole-v1", episodes=1, stride=100)
    assert len(snapshots) == 5  # steps 0, 100, ..., 400 of a 500-step episode
    returns = teaching.discounted_returns(controller, snapshots, observations, gamma=0.99)
    assert np.all(returns > 99.98) and np.all(returns <= 100.0)


def test_overestimation_figure_from_a_tiny_run_folder(tmp_path, monkeypatch):
    run_dir, out = tmp_path / "runs", tmp_path / "png"
    for script in teaching.DQN_SCRIPTS:
        module = importlib.import_module(script)
        module.train(module.Args(**dict(DQN_TINY, run_dir=str(run_dir), cuda=False)))
    command = ["teaching.py", "--run-dir", str(run_dir), "--out", str(out), "--toy-budgets", "300",
               "--toy-seeds", "1", "--value-episodes", "1", "--value-stride", "5"]
    monkeypatch.setattr(sys, "argv", command)
    teaching.main()
    assert os.path.getsize(out / "teaching_overestimation.png") > 10_000
    toy_runs = sorted(os.listdir(run_dir / "maximization_bias" / "steps_300"))
    assert [name.split("__")[1:3] for name in toy_runs] == [["double_dqn", "1"], ["dqn", "1"]]
    measure = teaching.toy_measure(str(run_dir / "maximization_bias" / "steps_300" / toy_runs[1]))
    assert measure["greedy left"] in (0.0, 1.0) and measure["gamma"] == 0.99
    teaching.toy_experiment(str(run_dir / "maximization_bias"), budgets=(300,), seeds=(1,))  # reused: no new runs
    assert sorted(os.listdir(run_dir / "maximization_bias" / "steps_300")) == toy_runs


def test_the_overestimation_on_minatar_rolls_the_greedy_policy_on_from_exact_copies_of_the_visited_states(
        tmp_path, capsys):
    pytest.importorskip("minatar", reason="the optional package minatar is not installed: pip install minatar")
    run_dir, out = tmp_path / "minatar", tmp_path / "png"
    out.mkdir()
    for script in teaching.DQN_SCRIPTS:
        module = importlib.import_module(script)
        module.train(module.Args(env_id="MinAtar/Breakout-v1", run_dir=str(run_dir), cuda=False, total_timesteps=300,
                                 learning_starts=100, batch_size=8, buffer_size=300, eval_every=0, eval_episodes=1))
    teaching.overestimation_pixels(group(load_runs(str(run_dir))), str(out), episodes=2, stride=5)
    assert os.path.getsize(out / "teaching_overestimation_minatar.png") > 10_000
    printed = capsys.readouterr().out
    assert "MinAtar/Breakout-v1 dqn seed 1:" in printed and "MinAtar/Breakout-v1 double_dqn seed 1:" in printed
    # MinAtar is random (sticky actions, the ball's start): a copy of the unwrapped env carries its random state,
    # so a policy rolled on from the copy of step k earns what the episode earned after step k. The policy: a
    # controller that moves the paddle (channel 0, bottom row) under the ball (channel 1): a long episode that scores
    def controller(observations):
        actions = []
        for obs in observations:
            paddle, ball = np.argwhere(obs[..., 0])[0][1], np.argwhere(obs[..., 1])
            ball = ball[0][1] if len(ball) else paddle
            actions.append(0 if ball == paddle else 1 if ball < paddle else 2)  # no-op, left, right
        return np.array(actions)

    make = lambda env_id: importlib.import_module("dqn").make_env(env_id, training=False)  # noqa: E731
    snapshots, observations = teaching.visited_states(controller, "MinAtar/Breakout-v1", 1, 1, make=make)
    env, rewards = make("MinAtar/Breakout-v1"), []
    obs, _ = env.reset(seed=100_000)
    done = False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(int(controller(obs[None])[0]))
        rewards.append(float(reward))
        done = terminated or truncated
    assert len(snapshots) == len(rewards) and 100 < len(rewards) < 900 and sum(rewards) >= 10
    gamma = 0.99
    returns = teaching.discounted_returns(controller, snapshots, observations, gamma)
    expected = [sum(gamma ** i * r for i, r in enumerate(rewards[k:])) for k in range(len(rewards))]
    assert returns == pytest.approx(expected, abs=1e-9)
