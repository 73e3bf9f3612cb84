"""Benchmark: train scripts x envs x seeds with default flags, then print a table of the results.

    python plots/benchmark.py                          # every script on its default task(s), seeds 1-10,
                                                       # then the held-out seeds (see below)
    python plots/benchmark.py --scripts dqn ppo --seeds 1 2 3
    python plots/benchmark.py --quick                  # one seed, short budgets: a check that all runs
    python plots/benchmark.py --summarize-only         # only the table, from the runs already there

The defaults were tuned on seeds 1-10 (and fewer); the held-out seeds, 101-110 (dqn.py, trpo.py and per_dqn.py: others,
see HELD_OUT_SEEDS_OF), were never used for tuning, so their table is the honest estimate of how often a
new seed (or the same seed on another CPU) solves. Runs go to `--run-dir` (default runs/benchmark; the
held-out seeds to its subfolder held-out/), at most one training process per core, each with one torch
thread; a3c.py's runs (one worker process per core) go one at a time, after the others. The table (also
written to `--out`, default plots/results.md) gives per script and env: the final deterministic evaluation
(mean ± std over seeds of each seed's eval mean), how many seeds reached the env's threshold in that
evaluation, the median step and second at which the mean of the last 10 training returns first reached it,
the wall time of a run (training and evaluation, from eval.json) and training steps per second. Then
`python plots/plot.py --run-dir runs/benchmark --out plots` draws the curves (the figures in plots/).
"""

import argparse
import concurrent.futures
import os
import platform
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runs import THRESHOLDS, group, load_runs  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The default task(s) of each script: the discrete ones on CartPole-v1; the continuous-control ones on
# Pendulum-v1; the scripts for both action spaces on both.
TASKS = {
    "dqn": ["CartPole-v1"], "double_dqn": ["CartPole-v1"], "dueling_dqn": ["CartPole-v1"],
    "per_dqn": ["CartPole-v1"], "rainbow": ["CartPole-v1"],
    "a2c": ["CartPole-v1", "Pendulum-v1"], "a3c": ["CartPole-v1", "Pendulum-v1"],
    "trpo": ["CartPole-v1", "Pendulum-v1"], "ppo": ["CartPole-v1", "Pendulum-v1"],
    "ddpg": ["Pendulum-v1"], "td3": ["Pendulum-v1"], "sac": ["Pendulum-v1"],
    "reinforce": ["CartPole-v1", "Pendulum-v1"],
}
ALL_CORES = {"a3c"}  # its 2 worker processes take 2 cores: its runs go one at a time, after the others
HELD_OUT_SEEDS = list(range(101, 111))
# seeds that served to compare settings: dqn.py 102, 104, 106, 112, 120 (and later 121-135);
# trpo.py 104, 107, 108; per_dqn.py 108, 110 (all on CartPole-v1)
HELD_OUT_SEEDS_OF = {"dqn": list(range(141, 151)), "trpo": list(range(111, 121)), "per_dqn": list(range(111, 121))}
QUICK_STEPS = 10_000  # at least one rollout of every script on its default tasks (and on Acrobot-v1)


def train_one(script: str, env_id: str, seed: int, run_dir: str, options) -> int:
    """Train one run in its own process; print a line when it ends; return its exit status."""
    command = [sys.executable, os.path.join(ROOT, f"{script}.py"), "--env-id", env_id, "--seed", str(seed),
               "--run-dir", run_dir, "--no-cuda"]
    if options.quick:
        command += ["--total-timesteps", str(QUICK_STEPS)]
    start = time.time()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.time() - start
    lines = result.stdout.strip().splitlines()
    tail = lines[-2] if len(lines) >= 2 else "(no evaluation printed)"  # the last line names the run folder
    status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode}): {result.stderr.strip()[-300:]}"
    print(f"  {script:12s} {env_id:12s} seed {seed}: {wall:6.1f} s  {status}  {tail}", flush=True)
    return result.returncode


def versions() -> str:
    import gymnasium
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, torch {torch.__version__}, "
            f"gymnasium {gymnasium.__version__}, numpy {np.__version__}")


def mean_of(runs: list, key: str, form: str) -> str:
    """Mean of an eval.json field over runs, or "n/a" when a run's eval.json lacks it."""
    values = [run.evaluation.get(key) for run in runs]
    return "n/a" if None in values else format(float(np.mean(values)), form)


def table(run_dir: str, scripts: list) -> str:
    rows = ["| script | env | seeds | final eval, mean ± std over seeds | per-seed eval | seeds ≥ threshold "
            "| median first reach (training avg10): steps / seconds | steps | wall s per run | steps/s |",
            "|---|---|---:|---|---|---:|---|---:|---:|---:|"]
    for (env_id, script), runs in group(load_runs(run_dir)).items():
        runs = [run for run in runs if run.evaluation and script in scripts]
        if not runs:
            continue
        threshold = THRESHOLDS.get(env_id, float("nan"))
        evals = np.array([run.evaluation["mean"] for run in runs])
        reached = [r for r in (run.first_reaching(threshold) for run in runs) if r is not None]
        first = (f"{np.median([s for s, _ in reached]):,.0f} / {np.median([t for _, t in reached]):.1f} "
                 f"({len(reached)}/{len(runs)} seeds)" if reached else "never")
        rows.append(
            f"| {script} | {env_id} | {len(runs)} | {evals.mean():.1f} ± {evals.std():.1f} "
            f"| {' / '.join(f'{e:.0f}' for e in evals)} | {int((evals >= threshold).sum())}/{len(runs)} "
            f"| {first} | {int(np.median([r.evaluation['global_step'] for r in runs])):,} "
            f"| {mean_of(runs, 'wall_time', '.1f')} | {mean_of(runs, 'sps', ',.0f')} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scripts", nargs="*", default=[s for s in TASKS if os.path.exists(f"{ROOT}/{s}.py")],
                        help="scripts to train (default: every algorithm script present)")
    parser.add_argument("--envs", nargs="*", help="envs to train on (default: each script's default tasks)")
    parser.add_argument("--seeds", nargs="*", type=int, default=list(range(1, 11)), help="tuning seeds")
    parser.add_argument("--held-out-seeds", nargs="*", type=int,
                        help="seeds never used for tuning, run into RUN_DIR/held-out and given their own table "
                             "(default: 101-110; dqn: 141-150; trpo and per_dqn: 111-120)")
    parser.add_argument("--run-dir", default=os.path.join("runs", "benchmark"))
    parser.add_argument("--procs", type=int, default=os.cpu_count(), help="training processes at once")
    parser.add_argument("--quick", action="store_true", help="one seed, short budgets: a few minutes in all")
    parser.add_argument("--summarize-only", action="store_true", help="no training: the table of existing runs")
    parser.add_argument("--out", default=os.path.join("plots", "results.md"), help="file for the table")
    options = parser.parse_args()
    unknown = [s for s in options.scripts if s not in TASKS]
    if unknown:
        sys.exit(f"benchmark.py: error: unknown scripts {unknown}; choose from {list(TASKS)}")
    if options.quick:
        options.seeds, options.held_out_seeds = options.seeds[:1], []
        options.run_dir = os.path.join(options.run_dir, "quick")
    held_out_dir = os.path.join(options.run_dir, "held-out")

    if not options.summarize_only:
        jobs = []
        for script in options.scripts:
            held_out = options.held_out_seeds
            if held_out is None:
                held_out = HELD_OUT_SEEDS_OF.get(script, HELD_OUT_SEEDS)
            envs = options.envs or TASKS[script]
            for run_dir, seeds in [(options.run_dir, options.seeds), (held_out_dir, held_out)]:
                jobs += [(script, env_id, seed, run_dir) for env_id in envs for seed in seeds]
        pooled = [job for job in jobs if job[0] not in ALL_CORES]
        alone = [job for job in jobs if job[0] in ALL_CORES]
        print(f"training {len(jobs)} runs into {options.run_dir}: {len(pooled)} runs {options.procs} "
              f"at a time, then {len(alone)} runs one at a time", flush=True)
        with concurrent.futures.ThreadPoolExecutor(max_workers=options.procs) as pool:
            results = list(pool.map(lambda job: train_one(*job, options), pooled))
        results += [train_one(*job, options) for job in alone]
        if any(code != 0 for code in results):
            print("some runs failed: see above", file=sys.stderr)

    text = f"Machine: {versions()}\n\nTuning seeds:\n\n{table(options.run_dir, options.scripts)}\n"
    if os.path.isdir(held_out_dir):
        text += f"\nHeld-out seeds (never used for tuning):\n\n{table(held_out_dir, options.scripts)}\n"
    print("\n" + text)
    os.makedirs(os.path.dirname(options.out) or ".", exist_ok=True)
    with open(options.out, "w") as f:
        f.write(text)
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
