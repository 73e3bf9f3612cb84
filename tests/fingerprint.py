"""Fingerprints of short training runs: proof that a refactor changed nothing a script computes.

    python tests/fingerprint.py --save /tmp/before.json     # before the refactor
    python tests/fingerprint.py --check /tmp/before.json    # after it: the same runs must give the same bytes
    python tests/fingerprint.py --check /tmp/before.json --scripts dqn ppo

Every script trains from the command line on each of its default envs, seeds 1 and 2, for a short budget that
still takes gradient steps, syncs targets and logs metrics. A run's fingerprint is the SHA-256 of its
episodes.csv (less the wall_time column, the one thing that depends on the clock), of its metrics.csv and of the
returns in its eval.json. a3c runs one worker, the only way its runs repeat exactly.

The hashes hold for one machine and one build: another CPU rounds floating point differently and gives other,
equally valid runs. So the file of hashes belongs to the machine that made it, not to the repository.
"""

import argparse
import concurrent.futures
import csv
import glob
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DQN = ["--total-timesteps", "3000"]
OFF_POLICY = ["--total-timesteps", "6000"]  # learning starts at 5,000 steps
RUNS = {  # script: {env: flags of a short run}
    "dqn": {"CartPole-v1": DQN},
    "double_dqn": {"CartPole-v1": DQN},
    "dueling_dqn": {"CartPole-v1": DQN},
    "per_dqn": {"CartPole-v1": DQN},
    "rainbow": {"CartPole-v1": DQN},
    "a2c": {"CartPole-v1": ["--total-timesteps", "6000"], "Pendulum-v1": ["--total-timesteps", "6000"]},
    "a3c": {"CartPole-v1": ["--total-timesteps", "4000", "--num-workers", "1"],
            "Pendulum-v1": ["--total-timesteps", "4000", "--num-workers", "1"]},
    "ppo": {"CartPole-v1": ["--total-timesteps", "5120"], "Pendulum-v1": ["--total-timesteps", "8192"]},
    "trpo": {"CartPole-v1": ["--total-timesteps", "4096"], "Pendulum-v1": ["--total-timesteps", "4096"]},
    "ddpg": {"Pendulum-v1": OFF_POLICY},
    "td3": {"Pendulum-v1": OFF_POLICY},
    "sac": {"Pendulum-v1": OFF_POLICY},
    "reinforce": {"CartPole-v1": ["--total-timesteps", "4000"], "Pendulum-v1": ["--total-timesteps", "4000"]},
}
SEEDS = (1, 2)


def digest(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "episodes.csv"), newline="") as f:
        rows = list(csv.reader(f))
    drop = rows[0].index("wall_time")
    text = io.StringIO()
    csv.writer(text).writerows([value for i, value in enumerate(row) if i != drop] for row in rows)
    with open(os.path.join(run_dir, "metrics.csv"), "rb") as f:
        metrics = f.read()
    with open(os.path.join(run_dir, "eval.json")) as f:
        returns = json.load(f)["returns"]
    return {"episodes.csv": hashlib.sha256(text.getvalue().encode()).hexdigest(),
            "metrics.csv": hashlib.sha256(metrics).hexdigest(),
            "eval returns": hashlib.sha256(repr(returns).encode()).hexdigest(),
            "episodes": len(rows) - 1}


def run(script: str, env_id: str, seed: int, flags: list) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, os.path.join(ROOT, f"{script}.py"), "--env-id", env_id, "--seed", str(seed),
                   "--eval-episodes", "3", "--run-dir", tmp, "--no-cuda", *flags]
        result = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
        return digest(glob.glob(os.path.join(tmp, "*", ""))[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", metavar="FILE", help="write the fingerprints to FILE")
    action.add_argument("--check", metavar="FILE", help="compare with the fingerprints in FILE")
    parser.add_argument("--scripts", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--procs", type=int, default=2, help="runs at a time (the hashes do not depend on it)")
    options = parser.parse_args()

    keys = [(script, env_id, seed) for script in options.scripts for env_id in RUNS[script] for seed in SEEDS]
    with concurrent.futures.ThreadPoolExecutor(options.procs) as pool:
        results = pool.map(lambda key: run(*key, RUNS[key[0]][key[1]]), keys)
        found = {f"{script} {env_id} seed {seed}": result for (script, env_id, seed), result in zip(keys, results)}

    if options.save:
        with open(options.save, "w") as f:
            json.dump(found, f, indent=1)
        print(f"{len(found)} fingerprints written to {options.save}")
        return
    with open(options.check) as f:
        expected = json.load(f)
    differ = [key for key in found if found[key] != expected.get(key)]
    for key in found:
        print(f"{'DIFFERS ' if key in differ else 'same    '} {key}")
    print(f"{len(found) - len(differ)} of {len(found)} runs byte-identical")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
