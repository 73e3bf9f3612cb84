"""Benchmark: train scripts x envs x seeds at their defaults, then write RESULTS.md's tables from the runs.

    python plots/benchmark.py                          # every script on its default task(s), seeds 1-10,
                                                       # then the held-out seeds (see below)
    python plots/benchmark.py --scripts dqn ppo --seeds 1 2 3
    python plots/benchmark.py --quick                  # one seed, short budgets: a check that all runs
    python plots/benchmark.py --summarize-only         # no training: the tables, from the runs already there
    python plots/benchmark.py --check                  # do RESULTS.md and README.md still match the runs?

The defaults were tuned on seeds 1-10 (and fewer); the held-out seeds, 101-110 (dqn.py, trpo.py and
per_dqn.py: others, see HELD_OUT_SEEDS_OF), were never used for tuning, so their table is the honest estimate
of how often a new seed (or the same seed on another CPU) solves. Runs go to `--run-dir` (default
runs/benchmark; the held-out seeds to its subfolder held-out/), at most one training process per core, each
with one torch thread; a3c.py's runs (one worker process per core) go one at a time, after the others.

A table gives per script and env: the final deterministic evaluation (mean ± std over seeds of each seed's
eval mean), how many seeds reached the env's threshold in that evaluation, the median step and second at
which the mean of the last 10 training returns first reached it, the wall time of a run (training and
evaluation, from eval.json) and training steps per second. The summary gives per script and env, over the
seeds of both tables: the seeds solved, the median final evaluation, the steps and the wall time of a run.

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

After a benchmark, `python plots/plot.py --run-dir runs/benchmark --out plots` draws the curves (the figures
in plots/).
"""

import argparse
import concurrent.futures
import os
import platform
import re
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


COLUMNS = ["script", "env", "seeds", "final eval, mean ± std over seeds", "per-seed eval",
           "seeds ≥ threshold", "median first reach (training avg10): steps / seconds", "steps",
           "wall s per run", "steps/s"]
ALIGN = ["---", "---", "---:", "---", "---", "---:", "---", "---:", "---:", "---:"]
SUMMARY_COLUMNS = ["script", "env", "seeds solved", "median final eval", "steps", "wall time per run"]
SUMMARY_ALIGN = ["---", "---", "---:", "---:", "---:", "---:"]
REGION = re.compile(r"(<!-- benchmark:([\w-]+) -->\n)(.*?)(<!-- /benchmark -->)", re.DOTALL)
TITLES = {"tuning": "tuning seeds", "held-out": "held-out seeds", "summary": "summary", "machine": "machine"}


def markdown(header: list, align: list, rows) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|",
                      *("| " + " | ".join(cells) + " |" for cells in rows)])


def table_rows(run_dir: str, scripts: list, envs=None) -> dict:
    """{(script, env): the cells of its row} of the finished runs in run_dir, in the order of runs.group."""
    rows = {}
    for (env_id, script), runs in group(load_runs(run_dir)).items():
        runs = [run for run in runs if run.evaluation and script in scripts and (not envs or env_id in envs)]
        if not runs:
            continue
        threshold = THRESHOLDS.get(env_id, float("nan"))
        evals = np.array([run.evaluation["mean"] for run in runs])
        reached = [r for r in (run.first_reaching(threshold) for run in runs) if r is not None]
        first = (f"{np.median([s for s, _ in reached]):,.0f} / {np.median([t for _, t in reached]):.1f} "
                 f"({len(reached)}/{len(runs)} seeds)" if reached else "never")
        rows[(script, env_id)] = [
            script, env_id, str(len(runs)), f"{evals.mean():.1f} ± {evals.std():.1f}",
            " / ".join(f"{e:.0f}" for e in evals), f"{int((evals >= threshold).sum())}/{len(runs)}", first,
            f"{int(np.median([r.evaluation['global_step'] for r in runs])):,}",
            mean_of(runs, "wall_time", ".1f"), mean_of(runs, "sps", ",.0f")]
    return rows


def table(run_dir: str, scripts: list, envs=None) -> str:
    return markdown(COLUMNS, ALIGN, table_rows(run_dir, scripts, envs).values())


def parse_rows(text: str) -> dict:
    """{(script, env): cells} of a markdown table's body rows (the first two cells name the row)."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 2 and cells[0] != "script" and not cells[0].startswith("-"):
            rows[(cells[0], cells[1])] = cells
    return rows


def ordered(rows: dict) -> list:
    """Rows sorted by env, then script: the order of the tables written from the runs."""
    return [rows[key] for key in sorted(rows, key=lambda key: (key[1], key[0]))]


def summary_rows(tuning: dict, held_out: dict) -> dict:
    """{(script, env): cells of the summary} from the rows of the two tables, over the seeds of both."""
    rows = {}
    for key, cells in tuning.items():
        both = [cells] + ([held_out[key]] if key in held_out else [])
        solved = [tuple(int(n) for n in row[5].split("/")) for row in both]
        evals = [float(value) for row in both for value in row[4].split(" / ")]
        median = f"{np.median(evals):.1f}".removesuffix(".0")
        walls = [(float(row[8]), int(row[2])) for row in both if row[8] != "n/a"]
        wall = (f"{sum(w * n for w, n in walls) / sum(n for _, n in walls):,.0f} s"
                if len(walls) == len(both) else "n/a")
        rows[key] = [*key, f"{sum(s for s, _ in solved)}/{sum(n for _, n in solved)}", median, cells[7], wall]
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
    """The rows of a table region's text, those of `new` put in (replacing rows of the same script and env)."""
    return parse_rows(old) | new


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
            have, want = parse_rows(content), parse_rows(expected[name])
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scripts", nargs="*", default=[s for s in TASKS if os.path.exists(f"{ROOT}/{s}.py")],
                        help="scripts to train, write or check (default: every algorithm script present)")
    parser.add_argument("--envs", nargs="*", help="envs to train on (default: each script's default tasks)")
    parser.add_argument("--seeds", nargs="*", type=int, default=list(range(1, 11)), help="tuning seeds")
    parser.add_argument("--held-out-seeds", nargs="*", type=int,
                        help="seeds never used for tuning, run into RUN_DIR/held-out and given their own table "
                             "(default: 101-110; dqn: 141-150; trpo and per_dqn: 111-120)")
    parser.add_argument("--run-dir", default=os.path.join("runs", "benchmark"))
    parser.add_argument("--procs", type=int, default=os.cpu_count(), help="training processes at once")
    parser.add_argument("--quick", action="store_true", help="one seed, short budgets: a few minutes in all")
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
    if options.quick:
        options.seeds, options.held_out_seeds = options.seeds[:1], []
        options.run_dir = os.path.join(options.run_dir, "quick")
    if options.out is None:
        options.out = [] if options.quick else [os.path.join(ROOT, "RESULTS.md"), os.path.join(ROOT, "README.md")]
    held_out_dir = os.path.join(options.run_dir, "held-out")

    if not (options.summarize_only or options.check):
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

    fresh = {"tuning": table_rows(options.run_dir, options.scripts, options.envs),
             "held-out": table_rows(held_out_dir, options.scripts, options.envs) if os.path.isdir(held_out_dir) else {}}
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
