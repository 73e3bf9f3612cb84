"""Benchmark: train scripts x envs x seeds at their defaults, then write RESULTS.md's tables from the runs.

    python plots/benchmark.py                          # every script on its default task(s), seeds 1-10,
                                                       # then the held-out seeds (see below)
    python plots/benchmark.py --scripts dqn ppo --seeds 1 2 3
    python plots/benchmark.py --quick                  # one seed, short budgets: a check that all runs
    python plots/benchmark.py --summarize-only         # no training: the tables, from the runs already there
    python plots/benchmark.py --check                  # do RESULTS.md and README.md still match the runs?

The defaults were tuned on seeds 1-10 (and fewer); the held-out seeds, 101-110 (trpo.py: 111-120; a2c.py on
CartPole-v1 and trpo.py on Pendulum-v1: 121-130; see HELD_OUT_SEEDS_OF), were never used for tuning the present
defaults, so their table is the honest estimate of how often a new seed (or the same seed on another CPU) solves.
Runs go to `--run-dir` (default runs/benchmark; the held-out seeds to its subfolder held-out/), at most one
training process per core, each with one torch thread; a3c.py's runs (one worker process per core) go one at a
time, after the others.

The final evaluation of every run plays the same test set: the deterministic policy, episode e from env seed
1_000_000 + e, whatever the training seed (20 episodes on CartPole-v1, 30 on Acrobot-v1, 100 on Pendulum-v1,
10 elsewhere). Before issue 27 it played 10 episodes from env seeds seed + 10_000 + e, so that neighbouring
seeds shared 9 of their 10 start states: the "old test", played again here to show what the change changes.
A run is solved when its final evaluation reaches runs.threshold(script, env): CartPole-v1 475, Acrobot-v1
-100, Pendulum-v1 -200, but -170 for ddpg, td3 and sac.

A table gives per script and env, over its seeds:
- final eval, mean ± std over seeds: of each seed's final evaluation mean; per-seed eval: each of them;
- seeds ≥ threshold: the seeds solved;
- median first reach of the greedy curve: the step and second of the first test during training (the
  deterministic policy every `eval_every` steps, 5 episodes from env seeds 2_000_000 + e: eval_curve.csv)
  whose mean reached the threshold, the median over the seeds that reached it (k/n: of the n seeds whose
  greedy curve has a point);
- median first reach (training avg10): the same for the mean of the last 10 training returns;
- steps: the median training steps; wall s per run: training and evaluation (eval.json); steps/s: training;
- greedy-curve cost: the seconds the greedy curve's tests took over the run's wall time, the median over seeds;
- seeds whose verdict differs on the old test: how many seeds (and which) the old test would call solved when
  the final evaluation does not, or the other way round. The old test is played once per run (after
  training, or by --summarize-only) on its model.pt, loaded by evaluate.py's load() and played by the script's
  own evaluate(); the result stays in the run folder as old_test.json. --check only reads those files.
A run folder written before a column's data existed (no eval_curve.csv, no model.pt) shows n/a there, and so
does a row kept from a table written before the column existed.
The summary gives per script and env, over the seeds of both tables: the seeds solved, the median final
evaluation, the steps and the wall time of a run.

The tables go into the files of `--out` (default RESULTS.md and README.md, at the top of the repository),
each between its marker comments, everything else of the file left as it is:
    <!-- benchmark:machine --> ... <!-- /benchmark -->    the machine the tables were written on
    <!-- benchmark:tuning --> ... <!-- /benchmark -->     seeds 1-10, the runs in RUN_DIR
    <!-- benchmark:held-out --> ... <!-- /benchmark -->   the held-out seeds, the runs in RUN_DIR/held-out
    <!-- benchmark:summary --> ... <!-- /benchmark -->    the summary, from the two tables
A file holds any of these regions (RESULTS.md the first three, README.md the summary). Only the rows of the
scripts (and --envs) benchmarked are rewritten; the other rows stay. A file of --out that does not exist yet
is created with the first three regions. --quick writes no file unless --out is given. --check trains and
writes nothing: it compares every row of the scripts (and --envs) chosen with the runs, names each row that
differs (and the columns), and exits with status 1 if any does.

--mujoco trains the lecture's MuJoCo tasks instead (MUJOCO_TASKS: HalfCheetah-v5 and Hopper-v5 at each script's
MuJoCo row, the off-policy scripts at 200k of its 1M steps; seeds 1-3 into runs/mujoco) and writes their table into
the region <!-- benchmark:mujoco --> of RESULTS.md and README.md: per seed the final evaluation (10 episodes of the
fixed test set) and its spread, and the greedy curve's last point within the first hour of the run, what a
student would see after an hour. --minatar does the same for the MinAtar games of MINATAR_TASKS (each script's
MinAtar row, 1M steps; seeds 1-3, one seed for double_dqn, dueling_dqn and per_dqn; into runs/minatar and the
region <!-- benchmark:minatar -->; 100 test episodes). A run whose eval.json has fewer episodes than its env's test
set has today (MinAtar's runs made when it had 10) is judged on the whole set: its model.pt is played over it once,
kept in the run folder as test_set.json (as the old test above; a cell says "(10 episodes)" where it could not be).
--summarize-only and --check work as above.

After a benchmark, `python plots/plot.py --run-dir runs/benchmark --out plots` draws the curves (the figures
in plots/).
"""

import argparse
import concurrent.futures
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runs import group, load_runs, threshold  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, ROOT)
import evaluate  # noqa: E402  (evaluate.py at the top of the repository: it loads a model.pt)
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
# trpo.py's settings were compared on seeds 104, 107 and 108 (CartPole-v1): its held-out seeds are 111-120.
# dqn.py and per_dqn.py once compared settings on seeds of 101-150 too, but they got new settings in issue 27,
# which those comparisons never saw: 101-110 are held out for them again.
# In issue 27, a2c.py's learning rate on CartPole-v1 and trpo.py's budget on Pendulum-v1 were chosen on seeds 1-10
# and on their held-out seeds of then (101-110, 111-120), and reinforce.py's batch on Pendulum-v1 after runs of seeds
# 1-10 and 101-110, and a3c.py's learning rate on CartPole-v1 after runs of seeds 1-20: their held-out seeds there
# are 121-130.
HELD_OUT_SEEDS_OF = {"trpo": list(range(111, 121)), ("a2c", "CartPole-v1"): list(range(121, 131)),
                     ("trpo", "Pendulum-v1"): list(range(121, 131)), ("reinforce", "Pendulum-v1"): list(range(121, 131)),
                     ("a3c", "CartPole-v1"): list(range(121, 131))}
# The old test, the final evaluation before issue 27: 10 episodes, episode e from env seed seed + 10_000 + e
OLD_TEST_EPISODES, OLD_TEST_OFFSET = 10, 10_000
QUICK_STEPS = 10_000  # at least one rollout of every script on its default tasks (and on Acrobot-v1)
# Issue 28, the lecture's MuJoCo tasks (--mujoco): each script's MuJoCo row at its own budget, but the off-policy
# scripts (tens of steps per second on a laptop CPU) at 200k of their 1M steps; 3 seeds, no held-out seeds (nothing
# was tuned on these tasks), no threshold: the table gives the returns, the greedy curve after an hour, the time.
MUJOCO_TASKS = {"a2c": ["Hopper-v5"], "trpo": ["HalfCheetah-v5", "Hopper-v5"],
                "ppo": ["HalfCheetah-v5", "Hopper-v5"], "ddpg": ["HalfCheetah-v5"],
                "td3": ["HalfCheetah-v5", "Hopper-v5"], "sac": ["HalfCheetah-v5", "Hopper-v5"]}
MUJOCO_STEPS = {"ddpg": 200_000, "td3": 200_000, "sac": 200_000}
MUJOCO_SEEDS = [1, 2, 3]
MUJOCO_COLUMNS = ["script", "env", "seeds", "steps", "final eval, mean ± std over seeds",
                  "per-seed eval (± std over its episodes)", "greedy curve after 1 hour", "wall s per run", "steps/s"]
MUJOCO_ALIGN = ["---", "---", "---:", "---:", "---", "---", "---:", "---:", "---:"]
# Issue 29, pixels (--minatar): two MinAtar games at each script's MinAtar row (1M steps), 3 seeds of dqn, rainbow
# and ppo, one of the other DQN variants; no held-out seeds and no threshold (nothing was tuned there). The table
# has the MuJoCo table's columns, in the region <!-- benchmark:minatar -->.
MINATAR_TASKS = {"dqn": ["MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1"],
                 "rainbow": ["MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1"], "ppo": ["MinAtar/Breakout-v1"],
                 "double_dqn": ["MinAtar/Breakout-v1"], "dueling_dqn": ["MinAtar/Breakout-v1"],
                 "per_dqn": ["MinAtar/Breakout-v1"]}
MINATAR_SEEDS_OF = {"double_dqn": [1], "dueling_dqn": [1], "per_dqn": [1]}  # the others: MUJOCO_SEEDS
SUITES = {"mujoco": (MUJOCO_TASKS, MUJOCO_STEPS), "minatar": (MINATAR_TASKS, {})}  # tasks, budgets not the row's


def train_one(script: str, env_id: str, seed: int, run_dir: str, options) -> int:
    """Train one run in its own process; print a line when it ends; return its exit status."""
    command = [sys.executable, os.path.join(ROOT, f"{script}.py"), "--env-id", env_id, "--seed", str(seed),
               "--run-dir", run_dir, "--no-cuda"]
    if options.quick:
        command += ["--total-timesteps", str(QUICK_STEPS)]
    elif options.suite:  # one torch thread a run, as the classic tasks' runs: --procs of them share the cores
        steps = SUITES[options.suite][1]
        command += ["--torch-threads", "1"] + (["--total-timesteps", str(steps[script])] if script in steps else [])
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


COLUMNS = ["script", "env", "seeds", "final eval, mean ± std over seeds", "per-seed eval",
           "seeds ≥ threshold", "median first reach of the greedy curve: steps / seconds",
           "median first reach (training avg10): steps / seconds", "steps", "wall s per run", "steps/s",
           "greedy-curve cost, % of wall time", "seeds whose verdict differs on the old test"]
ALIGN = ["---", "---", "---:", "---", "---", "---:", "---", "---", "---:", "---:", "---:", "---:", "---:"]
SUMMARY_COLUMNS = ["script", "env", "seeds solved", "median final eval", "steps", "wall time per run"]
SUMMARY_ALIGN = ["---", "---", "---:", "---:", "---:", "---:"]
REGION = re.compile(r"(<!-- benchmark:([\w-]+) -->\n)(.*?)(<!-- /benchmark -->)", re.DOTALL)
TITLES = {"tuning": "tuning seeds", "held-out": "held-out seeds", "summary": "summary", "machine": "machine"}


def markdown(header: list, align: list, rows) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|",
                      *("| " + " | ".join(cells) + " |" for cells in rows)])


def first_reach(reached: list, seeds: int) -> str:
    """The median step and second of the (step, second) pairs of the seeds that reached a threshold."""
    if not reached:
        return "never"
    return (f"{np.median([s for s, _ in reached]):,.0f} / {np.median([t for _, t in reached]):.1f} "
            f"({len(reached)}/{seeds} seeds)")


def greedy_first_reach(runs: list, bar: float) -> str:
    """first_reach() of the greedy curves, over the runs whose greedy curve has a point (not so a run written
    before it existed, or one with eval_every 0); n/a if none has."""
    with_curve = [run for run in runs if len(run.curve_steps)]
    if not with_curve:
        return "n/a"
    reached = [r for r in (run.first_greedy_reaching(bar) for run in with_curve) if r is not None]
    return first_reach(reached, len(with_curve))


def curve_cost(runs: list) -> str:
    """What the greedy curve cost: the seconds of its tests over the run's wall time (eval.json), in percent,
    the median over the runs with eval_curve.csv (0 for one with eval_every 0); n/a if none has it."""
    costs = [100 * run.curve_eval_times.sum() / run.evaluation["wall_time"] for run in runs
             if run.has_curve and run.evaluation.get("wall_time")]
    if not costs:
        return "n/a"
    return f"{np.median(costs):.1f} %" + (f" ({len(costs)}/{len(runs)} seeds)" if len(costs) < len(runs) else "")


def replayed(run, name: str, episodes: int, first_seed: int, compute: bool):
    """A run's model.pt played again by the script's own evaluate() on envs made for testing, episode e from env
    seed first_seed + e: {mean, std, returns, episodes, first_seed}, kept in the run folder as `name`. With
    compute=False only that file is read. None without model.pt, or when not computed."""
    path = os.path.join(run.path, name)
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    model = os.path.join(run.path, "model.pt")
    if not compute or not os.path.exists(model):
        return None
    try:
        module, args, saved = evaluate.load(model)
        env = module.make_env(args.env_id, training=False)
        policy = module.saved_policy(saved, args, env, torch.device("cpu"))
        returns = module.evaluate(policy, lambda: module.make_env(args.env_id, training=False), episodes, first_seed)
        env.close()
    except (Exception, SystemExit) as e:  # evaluate.load() exits on a model.pt it cannot read
        print(f"  {name} of {run.path}: failed ({type(e).__name__}: {e}); not used", flush=True)
        return None
    result = {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "returns": returns,
              "episodes": episodes, "first_seed": first_seed}
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(path + ".tmp", path)  # a run folder never holds half a file
    print(f"  {name} of {run.path}: {result['mean']:.1f} over {episodes} episodes", flush=True)
    return result


def old_test_mean(run, compute: bool):
    """The mean return of a run's model.pt on the old test (OLD_TEST_EPISODES episodes, episode e from env
    seed run.seed + OLD_TEST_OFFSET + e), replayed(): kept as old_test.json; None without model.pt, or when not
    computed."""
    result = replayed(run, "old_test.json", OLD_TEST_EPISODES, run.seed + OLD_TEST_OFFSET, compute)
    return None if result is None else result["mean"]


def test_set_episodes(script: str, env_id: str) -> int:
    """The number of episodes of the env's fixed test set, as the script gives it today."""
    args = importlib.import_module(script).Args(env_id=env_id)
    importlib.import_module(script).evaluation_settings(args, 1)
    return args.eval_episodes


def on_test_set(run, compute: bool) -> dict:
    """The run's final evaluation on its env's whole fixed test set: eval.json, or, when eval.json has fewer
    episodes than the script gives that test set today (a run made before the set grew, as MinAtar's from 10 to
    100 episodes), the model replayed() over the whole set, kept as test_set.json; eval.json as it is when that
    cannot be played (no model.pt) or is not computed (--check without test_set.json)."""
    episodes = test_set_episodes(run.script, run.env_id)
    if run.evaluation.get("episodes", 0) >= episodes:
        return run.evaluation
    first_seed = importlib.import_module(run.script).TEST_SEED
    return replayed(run, "test_set.json", episodes, first_seed, compute) or run.evaluation


def old_test_verdicts(runs: list, bar: float, compute: bool) -> str:
    """How many seeds the old test would judge otherwise than the final evaluation (solved or not), and which;
    over the runs with an old-test result, the others counted as n/a."""
    olds = {run.seed: (old_test_mean(run, compute), run.evaluation["mean"]) for run in runs}
    known = {seed: pair for seed, pair in olds.items() if pair[0] is not None}
    if not known:
        return "n/a"
    differ = [seed for seed, (old, new) in known.items() if (old >= bar) != (new >= bar)]
    cell = f"{len(differ)}/{len(known)}"
    if differ:
        cell += f": seed{'s' * (len(differ) > 1)} {', '.join(str(seed) for seed in differ)}"
    if len(known) < len(runs):
        cell += f" ({len(runs) - len(known)} n/a)"
    return cell


def table_rows(run_dir: str, scripts: list, envs=None, compute_old_test: bool = True) -> dict:
    """{(script, env): the cells of its row} of the finished runs in run_dir, in the order of runs.group.
    The old test is played for runs without old_test.json only with compute_old_test."""
    rows = {}
    for (env_id, script), runs in group(load_runs(run_dir)).items():
        runs = [run for run in runs if run.evaluation and script in scripts and (not envs or env_id in envs)]
        if not runs:
            continue
        bar = threshold(script, env_id)
        evals = np.array([run.evaluation["mean"] for run in runs])
        reached = [r for r in (run.first_reaching(bar) for run in runs) if r is not None]
        rows[(script, env_id)] = [
            script, env_id, str(len(runs)), f"{evals.mean():.1f} ± {evals.std():.1f}",
            " / ".join(f"{e:.0f}" for e in evals), f"{int((evals >= bar).sum())}/{len(runs)}",
            greedy_first_reach(runs, bar), first_reach(reached, len(runs)),
            f"{int(np.median([r.evaluation['global_step'] for r in runs])):,}",
            mean_of(runs, "wall_time", ".1f"), mean_of(runs, "sps", ",.0f"), curve_cost(runs),
            old_test_verdicts(runs, bar, compute_old_test)]
    return rows


def table(run_dir: str, scripts: list, envs=None, compute_old_test: bool = True) -> str:
    return markdown(COLUMNS, ALIGN, table_rows(run_dir, scripts, envs, compute_old_test).values())


def parse_rows(text: str, columns=None) -> dict:
    """{(script, env): cells} of a markdown table's body rows (the first two cells name the row). With
    `columns`, the cells are put in that order by the names of the table's header, "n/a" for a column the
    table lacks: a row written before a column existed reads as a row of today's table."""
    rows, header = {}, columns
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) <= 2 or cells[0].startswith("-"):
            continue
        if cells[0] == "script":
            header = cells
        elif columns and header != columns:
            by_name = dict(zip(header, cells))
            rows[(cells[0], cells[1])] = [by_name.get(column, "n/a") for column in columns]
        else:
            rows[(cells[0], cells[1])] = cells
    return rows


def header_of(text: str):
    """The cells of the first header row (starting with "script") of a markdown table, or None."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == "script":
            return cells
    return None


def ordered(rows: dict) -> list:
    """Rows sorted by env, then script: the order of the tables written from the runs."""
    return [rows[key] for key in sorted(rows, key=lambda key: (key[1], key[0]))]


def summary_rows(tuning: dict, held_out: dict) -> dict:
    """{(script, env): cells of the summary} from the rows of the two tables, over the seeds of both."""
    rows = {}
    for key, cells in tuning.items():
        both = [dict(zip(COLUMNS, row)) for row in [cells] + ([held_out[key]] if key in held_out else [])]
        solved = [tuple(int(n) for n in row["seeds ≥ threshold"].split("/")) for row in both]
        evals = [float(value) for row in both for value in row["per-seed eval"].split(" / ")]
        median = f"{np.median(evals):.1f}".removesuffix(".0")
        walls = [(float(row["wall s per run"]), int(row["seeds"])) for row in both if row["wall s per run"] != "n/a"]
        wall = (f"{sum(w * n for w, n in walls) / sum(n for _, n in walls):,.0f} s"
                if len(walls) == len(both) else "n/a")
        rows[key] = [*key, f"{sum(s for s, _ in solved)}/{sum(n for _, n in solved)}", median, both[0]["steps"],
                     wall]
    return rows


def regions(text: str) -> dict:
    """{region name: its text} of the benchmark's marked regions in a file's text."""
    return {match.group(2): match.group(3) for match in REGION.finditer(text)}


def replace_regions(text: str, contents: dict) -> str:
    """The text with each region named in contents holding that content; the rest of the text unchanged."""
    def fill(match):
        name = match.group(2)
        content = f"\n{contents[name].strip()}\n\n" if name in contents else match.group(3)
        return match.group(1) + content + match.group(4)
    return REGION.sub(fill, text)


def new_file_text() -> str:
    return "".join(f"{TITLES[name].capitalize()}:\n\n<!-- benchmark:{name} -->\n<!-- /benchmark -->\n\n"
                   for name in ("machine", "tuning", "held-out"))


def merged(old: str, new: dict) -> dict:
    """The rows of a table region's text (in today's COLUMNS), those of `new` put in (replacing rows of the
    same script and env)."""
    return parse_rows(old, COLUMNS) | new


def expected_regions(files: dict, fresh: dict) -> dict:
    """{region name: what it should hold}: the table regions of the files (first one found) with the rows
    freshly computed from the runs put in, and the summary from those tables."""
    found = {}
    for text in files.values():
        for name, content in regions(text).items():
            found.setdefault(name, content)
    tables = {name: merged(found.get(name, ""), fresh[name]) for name in ("tuning", "held-out")}
    return {"tuning": markdown(COLUMNS, ALIGN, ordered(tables["tuning"])),
            "held-out": markdown(COLUMNS, ALIGN, ordered(tables["held-out"])),
            "summary": markdown(SUMMARY_COLUMNS, SUMMARY_ALIGN,
                                ordered(summary_rows(tables["tuning"], tables["held-out"])))}


def differences(files: dict, fresh: dict, chosen) -> list:
    """One line per row of a file's region that does not match the runs: its numbers differ (naming the
    columns), it has no runs, or the runs have a row the file lacks. `chosen(script, env)` picks the rows
    to check; the summary is compared with the one the tables of the runs give."""
    expected = expected_regions(files, fresh)
    lines = []
    for path, text in files.items():
        for name, content in regions(text).items():
            if name == "machine":
                continue
            header = SUMMARY_COLUMNS if name == "summary" else COLUMNS
            if header_of(content) not in (None, header):
                lines.append(f"{path}, {TITLES[name]}: the columns differ from today's {header}")
            have, want = parse_rows(content, header), parse_rows(expected[name])
            if name != "summary":
                want = {key: row for key, row in want.items() if key in fresh[name]}
            for key in sorted(set(have) | set(want), key=lambda key: (key[1], key[0])):
                if not chosen(*key):
                    continue
                where = f"{path}, {TITLES[name]}, {key[0]} on {key[1]}"
                source = "the tables" if name == "summary" else "the runs"
                if key not in want:
                    lines.append(f"{where}: " + ("not in the tables" if name == "summary" else "no finished runs"))
                elif key not in have:
                    lines.append(f"{where}: in {source}, not in the file")
                elif have[key] != want[key]:
                    changed = [f"{column}: {a!r} in the file, {b!r} from {source}"
                               for column, a, b in zip(header, have[key], want[key]) if a != b]
                    lines.append(f"{where}: " + "; ".join(changed))
    return lines


def after_an_hour(run, test: dict) -> str:
    """The greedy curve's mean at its last test within the first hour of the run (wall time), and that test's
    step; the final evaluation (`test`, on the whole test set) when the run took less than an hour."""
    if run.evaluation["wall_time"] <= 3600:
        return f"done: {test['mean']:.0f}"
    within = np.flatnonzero(run.curve_wall_times <= 3600)
    if not len(within):
        return "n/a"
    return f"{run.curve_means[within[-1]]:.0f} at {int(run.curve_steps[within[-1]]):,}"


def seed_cell(test: dict, episodes: int) -> str:
    """One seed's final evaluation, mean ± std over its episodes, and how many when fewer than the test set has."""
    short = f" ({test['episodes']} episodes)" if test.get("episodes", 0) < episodes else ""
    return f"{test['mean']:.0f} ± {test['std']:.0f}{short}"


def mujoco_rows(run_dir: str, scripts: list, tasks: dict = MUJOCO_TASKS, compute: bool = True) -> dict:
    """{(script, env): the cells of its row of the MuJoCo table (or of another suite's `tasks`)} of the finished
    runs in run_dir, each run judged on_test_set() (played for a run made on fewer episodes only with compute)."""
    rows = {}
    for (env_id, script), runs in group(load_runs(run_dir)).items():
        runs = [run for run in runs if run.evaluation and script in scripts and env_id in tasks.get(script, [])]
        if not runs:
            continue
        tests = [on_test_set(run, compute) for run in runs]
        episodes = test_set_episodes(script, env_id)
        evals = np.array([test["mean"] for test in tests])
        rows[(script, env_id)] = [
            script, env_id, str(len(runs)), f"{int(np.median([r.evaluation['global_step'] for r in runs])):,}",
            f"{evals.mean():.1f} ± {evals.std():.1f}", " / ".join(seed_cell(test, episodes) for test in tests),
            "the runs end within it" if all(run.evaluation["wall_time"] <= 3600 for run in runs)
            else " / ".join(after_an_hour(run, test) for run, test in zip(runs, tests)),
            mean_of(runs, "wall_time", ",.0f"), mean_of(runs, "sps", ",.0f")]
    return rows


def suite_main(options):
    """--mujoco or --minatar: train the suite's tasks (MUJOCO_TASKS or MINATAR_TASKS; seeds MUJOCO_SEEDS, or
    MINATAR_SEEDS_OF's, unless --seeds), then write or check its region (<!-- benchmark:mujoco --> or
    <!-- benchmark:minatar -->) of the --out files, the other rows of that table kept."""
    suite, (tasks, _) = options.suite, SUITES[options.suite]
    name = {"mujoco": "MuJoCo", "minatar": "MinAtar"}[suite]
    scripts = [s for s in options.scripts if tasks.get(s)]
    if not (options.summarize_only or options.check):
        seeds_of = (lambda script: options.seeds) if options.seeds else (
            lambda script: MINATAR_SEEDS_OF.get(script, MUJOCO_SEEDS) if suite == "minatar" else MUJOCO_SEEDS)
        jobs = [(script, env_id, seed, options.run_dir) for script in scripts for env_id in tasks[script]
                for seed in seeds_of(script)]
        print(f"training {len(jobs)} runs into {options.run_dir}, {options.procs} at a time", flush=True)
        with concurrent.futures.ThreadPoolExecutor(max_workers=options.procs) as pool:
            if any(code != 0 for code in pool.map(lambda job: train_one(*job, options), jobs)):
                print("some runs failed: see above", file=sys.stderr)
    fresh = mujoco_rows(options.run_dir, scripts, tasks, not options.check) if os.path.isdir(options.run_dir) else {}
    if not fresh:
        sys.exit(f"benchmark.py: error: no finished {name} runs of {scripts} in {options.run_dir}")
    print(markdown(MUJOCO_COLUMNS, MUJOCO_ALIGN, ordered(fresh)))
    lines = []
    for path in options.out:
        if not os.path.exists(path) or suite not in regions(open(path).read()):
            sys.exit(f"benchmark.py: error: {path} has no region <!-- benchmark:{suite} --> ... <!-- /benchmark -->")
        text = open(path).read()
        have = parse_rows(regions(text)[suite], MUJOCO_COLUMNS)
        if options.check:
            lines += [f"{path}, {name}, {key[0]} on {key[1]}: " + ("not in the file" if key not in have else "; ".join(
                f"{column}: {a!r} in the file, {b!r} from the runs"
                for column, a, b in zip(MUJOCO_COLUMNS, have[key], row) if a != b))
                for key, row in fresh.items() if have.get(key) != row]
            continue
        with open(path, "w") as f:
            f.write(replace_regions(text, {suite: markdown(MUJOCO_COLUMNS, MUJOCO_ALIGN, ordered(have | fresh))}))
        print(f"wrote {path}: the region {suite}")
    for line in lines:
        print(line)
    if lines:
        sys.exit(f"{len(lines)} {name} row{' differs' if len(lines) == 1 else 's differ'} from the runs in "
                 f"{options.run_dir}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scripts", nargs="*", default=[s for s in TASKS if os.path.exists(f"{ROOT}/{s}.py")],
                        help="scripts to train, write or check (default: every algorithm script present)")
    parser.add_argument("--envs", nargs="*", help="envs to train on (default: each script's default tasks)")
    parser.add_argument("--seeds", nargs="*", type=int,
                        help="tuning seeds (default: 1-10; --mujoco and --minatar: their own, see above)")
    parser.add_argument("--held-out-seeds", nargs="*", type=int,
                        help="seeds never used for tuning, run into RUN_DIR/held-out and given their own table "
                             "(default: 101-110; trpo: 111-120)")
    parser.add_argument("--run-dir", default=os.path.join("runs", "benchmark"))
    parser.add_argument("--procs", type=int, default=os.cpu_count(), help="training processes at once")
    parser.add_argument("--quick", action="store_true", help="one seed, short budgets: a few minutes in all")
    parser.add_argument("--mujoco", action="store_const", const="mujoco", dest="suite",
                        help="the MuJoCo tasks of MUJOCO_TASKS, seeds 1-3, into runs/mujoco and the region mujoco")
    parser.add_argument("--minatar", action="store_const", const="minatar", dest="suite",
                        help="the MinAtar games of MINATAR_TASKS, into runs/minatar and the region minatar")
    parser.add_argument("--summarize-only", action="store_true", help="no training: the tables of existing runs")
    parser.add_argument("--check", action="store_true",
                        help="no training, no writing: exit 1 naming each row of --out that differs from the runs")
    parser.add_argument("--out", nargs="+", metavar="FILE",
                        help="files whose marked regions get the tables (default: RESULTS.md and README.md; "
                             "with --quick: none)")
    options = parser.parse_args()
    unknown = [s for s in options.scripts if s not in TASKS]
    if unknown:
        sys.exit(f"benchmark.py: error: unknown scripts {unknown}; choose from {list(TASKS)}")
    if options.suite:
        if options.run_dir == os.path.join("runs", "benchmark"):
            options.run_dir = os.path.join("runs", options.suite)
        options.out = options.out or [os.path.join(ROOT, "RESULTS.md"), os.path.join(ROOT, "README.md")]
        return suite_main(options)
    options.seeds = options.seeds or list(range(1, 11))
    if options.quick:
        options.seeds, options.held_out_seeds = options.seeds[:1], []
        options.run_dir = os.path.join(options.run_dir, "quick")
    if options.out is None:
        options.out = [] if options.quick else [os.path.join(ROOT, "RESULTS.md"), os.path.join(ROOT, "README.md")]
    held_out_dir = os.path.join(options.run_dir, "held-out")

    if not (options.summarize_only or options.check):
        jobs = []
        for script in options.scripts:
            for env_id in options.envs or TASKS[script]:
                held_out = options.held_out_seeds
                if held_out is None:
                    held_out = HELD_OUT_SEEDS_OF.get((script, env_id), HELD_OUT_SEEDS_OF.get(script, HELD_OUT_SEEDS))
                jobs += [(script, env_id, seed, options.run_dir) for seed in options.seeds]
                jobs += [(script, env_id, seed, held_out_dir) for seed in held_out]
        pooled = [job for job in jobs if job[0] not in ALL_CORES]
        alone = [job for job in jobs if job[0] in ALL_CORES]
        print(f"training {len(jobs)} runs into {options.run_dir}: {len(pooled)} runs {options.procs} "
              f"at a time, then {len(alone)} runs one at a time", flush=True)
        with concurrent.futures.ThreadPoolExecutor(max_workers=options.procs) as pool:
            results = list(pool.map(lambda job: train_one(*job, options), pooled))
        results += [train_one(*job, options) for job in alone]
        if any(code != 0 for code in results):
            print("some runs failed: see above", file=sys.stderr)

    tables = [("tuning", options.run_dir), ("held-out", held_out_dir)]
    fresh = {name: table_rows(folder, options.scripts, options.envs, compute_old_test=not options.check)
             if os.path.isdir(folder) else {} for name, folder in tables}
    if not fresh["tuning"] and not fresh["held-out"]:
        which = "" if set(options.scripts) == set(TASKS) else f" of {options.scripts}"
        sys.exit(f"benchmark.py: error: no finished runs{which} in {options.run_dir} (RESULTS.md says how to "
                 "make the benchmark's runs)")
    missing = [path for path in options.out if not os.path.exists(path)]
    if options.check and missing:
        sys.exit(f"benchmark.py: error: no such file: {missing[0]}")
    files = {path: open(path).read() if os.path.exists(path) else new_file_text() for path in options.out}
    unmarked = [path for path, text in files.items() if not regions(text)]
    if unmarked:
        sys.exit(f"benchmark.py: error: {unmarked[0]} has no region "
                 "<!-- benchmark:NAME --> ... <!-- /benchmark --> to write into")

    def chosen(script: str, env_id: str) -> bool:
        return script in options.scripts and (not options.envs or env_id in options.envs)

    if options.check:
        lines = differences(files, fresh, chosen)
        for line in lines:
            print(line)
        if lines:
            sys.exit(f"{len(lines)} row{' differs' if len(lines) == 1 else 's differ'} from the runs in "
                     f"{options.run_dir} (--summarize-only writes the runs' numbers)")
        print(f"{', '.join(files)}: every row of {options.scripts} matches the runs in {options.run_dir}")
        return

    for name, rows in fresh.items():
        if rows:
            folder = held_out_dir if name == "held-out" else options.run_dir
            print(f"\n{TITLES[name].capitalize()} ({folder}):\n")
            print(markdown(COLUMNS, ALIGN, rows.values()))
    contents = expected_regions(files, fresh) | {"machine": f"Machine: {versions()}"}
    for path, text in files.items():
        kept = [f"{TITLES[name]}: {' '.join(key)}" for name, content in regions(text).items() if name in fresh
                for key in parse_rows(content) if chosen(*key) and key not in fresh[name]]
        with open(path, "w") as f:
            f.write(replace_regions(text, contents))
        print(f"wrote {path}: the regions {', '.join(regions(text))}"
              + (f"; kept rows without runs ({'; '.join(kept)})" if kept else ""))


if __name__ == "__main__":
    main()
