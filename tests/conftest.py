"""The shared test harness: every algorithm script joins it by adding one entry to SCRIPTS.

Each entry says how to train the script on a tiny budget (`tiny`: Args overrides), which env it learns by
default, an env whose action space it rejects and the scripts its error message must name.
"""

import concurrent.futures
import csv
import glob
import importlib
import inspect
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@dataclass
class Script:
    name: str
    """file name without .py"""
    tiny: dict
    """Args overrides for a training run of a few seconds that still finishes episodes and logs metrics"""
    wrong_env: str
    """an env whose action space the script rejects"""
    suggested: list
    """scripts the wrong-action-space error must name"""
    smoke_envs: list = field(default_factory=lambda: ["CartPole-v1"])
    """envs of the in-process smoke train"""
    deterministic: bool = True
    """same seed, same episode returns on CPU (A3C's asynchronous workers are not)"""

    def module(self):
        return importlib.import_module(self.name)


DQN_TINY = dict(total_timesteps=800, learning_starts=200, batch_size=32, buffer_size=1_000,
                log_frequency=100, target_network_frequency=100, eval_episodes=2)
CONTINUOUS_ONLY = ["ddpg.py", "td3.py", "sac.py"]

SCRIPTS = [
    Script("dqn", DQN_TINY, wrong_env="Pendulum-v1", suggested=CONTINUOUS_ONLY),
    *(Script(name, DQN_TINY, wrong_env="Pendulum-v1", suggested=CONTINUOUS_ONLY)
      for name in ("double_dqn", "dueling_dqn", "per_dqn")),
    Script("rainbow", DQN_TINY, wrong_env="Pendulum-v1", suggested=CONTINUOUS_ONLY),
    # a2c.py and ppo.py take Discrete and Box actions, every action space of the default gymnasium registry,
    # so they are shown a MultiDiscrete env registered below (in-process: importing this file registers it)
    Script("a2c", dict(total_timesteps=512, num_envs=2, num_steps=8, log_frequency=128, eval_episodes=2, eval_every=128),
           wrong_env="CountMultiDiscrete-v0", suggested=[], smoke_envs=["CartPole-v1", "Pendulum-v1"]),
    Script("ppo", dict(total_timesteps=512, num_envs=2, num_steps=64, update_epochs=2, num_minibatches=2,
                       log_frequency=128, eval_episodes=2, eval_every=128),
           wrong_env="CountMultiDiscrete-v0", suggested=[], smoke_envs=["CartPole-v1", "Pendulum-v1"]),
    # trpo.py and a3c.py take Discrete and Box actions too; a3c.py's 2 worker processes are not bit-reproducible
    Script("trpo", dict(total_timesteps=512, num_envs=2, num_steps=64, update_epochs=2, num_minibatches=2,
                        log_frequency=128, eval_episodes=2, eval_every=128),
           wrong_env="CountMultiDiscrete-v0", suggested=[], smoke_envs=["CartPole-v1", "Pendulum-v1"]),
    Script("a3c", dict(total_timesteps=600, num_workers=2, num_steps=5, log_frequency=100, eval_episodes=2, eval_every=150),
           wrong_env="CountMultiDiscrete-v0", suggested=[], smoke_envs=["CartPole-v1", "Pendulum-v1"],
           deterministic=False),
    # reinforce.py takes Discrete and Box actions too; 2 whole episodes a batch: Pendulum's 800 steps are 2 updates
    Script("reinforce", dict(total_timesteps=800, num_episodes=2, log_frequency=100, eval_episodes=2, eval_every=200),
           wrong_env="CountMultiDiscrete-v0", suggested=[], smoke_envs=["CartPole-v1", "Pendulum-v1"]),
    # ddpg.py, td3.py, sac.py: 600 Pendulum steps are 3 episodes, the last 150 with a gradient step each
    *(Script(name, dict(total_timesteps=600, learning_starts=450, batch_size=16, buffer_size=1_000, hidden_size=16,
                        log_frequency=100, eval_episodes=2, eval_every=150),
             wrong_env="CartPole-v1", suggested=["dqn.py", "ppo.py"], smoke_envs=["Pendulum-v1"])
      for name in ("ddpg", "td3", "sac")),
]


def script_ids():
    return [s.name for s in SCRIPTS]


@pytest.fixture(params=SCRIPTS, ids=script_ids())
def script(request) -> Script:
    return request.param


def tiny_args(script: Script, tmp_path, **overrides):
    """Args for a tiny CPU run of `script` writing under tmp_path."""
    settings = dict(script.tiny, run_dir=str(tmp_path), cuda=False)
    settings.update(overrides)
    return script.module().Args(**settings)


def read_csv(path) -> list:
    """The rows of a CSV file as dicts keyed by its header."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def interrupt_once_logging(command: list, cwd, env=None, episodes=4, timeout=600, before_interrupt=None):
    """Start `command` in cwd, wait until its run folder's episodes.csv has `episodes` rows, call
    before_interrupt() if given, send SIGINT (Ctrl-C) and wait for the exit. Returns (exit status, stdout,
    stderr, episode rows logged before the interrupt). The process is killed whatever happens."""
    # The child starts with Ctrl-C's default action: started from the background thread of cli_results while an
    # in-process a3c.py test starts its workers (with SIGINT ignored meanwhile), it would inherit an ignored SIGINT
    # and train on through the interrupt. Python installs its KeyboardInterrupt handler only over the default.
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", reset, *command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline, logged = time.time() + timeout, []
        while len(logged) < episodes and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            logs = glob.glob(os.path.join(cwd, "runs", "*", "episodes.csv"))
            logged = read_csv(logs[0]) if logs else []
        assert len(logged) >= episodes, "training never logged episodes"
        if before_interrupt:
            before_interrupt()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    return proc.returncode, out, err, logged


# ---------------------------------------------------------------------------------------------------
# A tiny env whose ends we control, to test termination against truncation
# ---------------------------------------------------------------------------------------------------
import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


class CountEnv(gym.Env):
    """Observation [t, 1]: t counts the steps of the episode. Reward 1 a step. The episode terminates when t
    reaches `terminate_at` (never if None); the TimeLimit wrapper of its registration truncates it."""

    def __init__(self, terminate_at=None, continuous=False):
        self.terminate_at = terminate_at
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = (gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32) if continuous
                             else gym.spaces.Discrete(2))
        self.t = 0

    def obs(self):
        return np.array([self.t, 1.0], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.obs(), {}

    def step(self, action):
        self.t += 1
        return self.obs(), 1.0, self.t == self.terminate_at, False, {}


TIME_LIMIT = 5
for _continuous in (False, True):
    _kind = "Continuous" if _continuous else "Discrete"
    # never terminates: every episode is cut by the time limit after TIME_LIMIT steps
    gym.register(f"CountTruncated{_kind}-v0", entry_point=CountEnv, max_episode_steps=TIME_LIMIT,
                 kwargs={"terminate_at": None, "continuous": _continuous})
    # terminates after 3 steps, long before the time limit
    gym.register(f"CountTerminated{_kind}-v0", entry_point=CountEnv, max_episode_steps=100,
                 kwargs={"terminate_at": 3, "continuous": _continuous})
    # terminates after 3 steps, on the very step the time limit also cuts it: terminated and truncated both
    # true, and the transition must still be stored as terminated
    gym.register(f"CountTerminatedAtLimit{_kind}-v0", entry_point=CountEnv, max_episode_steps=3,
                 kwargs={"terminate_at": 3, "continuous": _continuous})


class CountValue(torch.nn.Module):
    """V(s) = t, the step counter of CountEnv's observation [t, 1], in place of a script's value network: the
    values a loop hands on show which observation it used."""

    def __init__(self, obs_dim, hidden_size):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, obs):
        return obs[..., 0] + 0.0 * self.bias


def observations(network_class, obs_dim: int):
    """The first argument of a script's actor or value class for flat observations of obs_dim numbers: the
    observation space for the classes that take it (ppo.py's, which read images too), else obs_dim."""
    takes_space = "observation_space" in inspect.signature(network_class).parameters
    return gym.spaces.Box(-np.inf, np.inf, (obs_dim,)) if takes_space else obs_dim


def linear_actor_and_value(actor_class, value_class):
    """A script's own Categorical actor and value classes with their networks swapped for linear maps without
    bias, logits = W s and V(s) = w · s, whose losses a test can write out in a line each."""
    actor = actor_class(observations(actor_class, 2), n_actions=2, hidden_size=1, log_std_init=0.0)
    value = value_class(observations(value_class, 2), hidden_size=1)
    actor.logits, value.net = torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        actor.logits.weight.copy_(torch.tensor([[0.5, -0.2], [-0.3, 0.8]]))
        value.net.weight.copy_(torch.tensor([[0.4, -0.1]]))
    return actor, value


class CountMultiDiscreteEnv(CountEnv):
    """CountEnv with MultiDiscrete actions, which no script here handles. Scripts that take both Discrete and
    Box actions (a2c.py, ppo.py, trpo.py, a3c.py, reinforce.py) reject it; test_wrong_action_space trains
    in-process, where importing this file has registered the env."""

    def __init__(self):
        super().__init__()
        self.action_space = gym.spaces.MultiDiscrete([2, 2])


gym.register("CountMultiDiscrete-v0", entry_point=CountMultiDiscreteEnv, max_episode_steps=TIME_LIMIT)


# ---------------------------------------------------------------------------------------------------
# Shared by the policy-gradient tests: GAE by a plain loop, and a bandit whose answer is known
# ---------------------------------------------------------------------------------------------------
def reference_gae(rewards, values, next_values, terminated, dones, gamma, lam):
    """Â_t = Σ_k (γλ)^k δ_{t+k}, δ_k = r_k + γ (1 − terminated_k) V(s_{k+1}) − V(s_k), summed forward until
    the episode's last step inside the rollout."""
    steps, envs = rewards.shape
    advantages = np.zeros((steps, envs))
    for env in range(envs):
        for t in range(steps):
            total, weight = 0.0, 1.0
            for k in range(t, steps):
                bootstrap = 0.0 if terminated[k, env] else gamma * next_values[k, env]
                total += weight * (rewards[k, env] + bootstrap - values[k, env])
                if dones[k, env]:
                    break
                weight *= gamma * lam
            advantages[t, env] = total
    return advantages


class TwoArmedBandit(gym.Env):
    """One step per episode, observation [1]: action 1 pays 1, action 0 pays 0."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.ones(1, dtype=np.float32), {}

    def step(self, action):
        return np.ones(1, dtype=np.float32), float(action == 1), True, False, {}


gym.register("TwoArmedBandit-v0", entry_point=TwoArmedBandit)


# ---------------------------------------------------------------------------------------------------
# The command line, through subprocesses. Starting Python and torch takes seconds, so every script's
# command-line checks and its Ctrl-C run start with the session, one subprocess at a time in a
# background thread: they use the second core while the in-process tests use the first.
# tests/test_harness.py reads their results.
# ---------------------------------------------------------------------------------------------------
def run_cli(name, *flags, cwd, timeout=600):
    return subprocess.run([sys.executable, os.path.join(ROOT, f"{name}.py"), *flags], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def cli_checks(script):
    checks = {"help": ["--help"], "unknown_env_id": ["--env-id", "CartPol-v1"]}
    if script.name == "dqn":  # the command line adds nothing to train()'s check: one script shows it
        checks["negative_seed"] = ["--seed", "-3"]
    return checks


@pytest.fixture(scope="session", autouse=True)
def cli_results(request, tmp_path_factory):
    """{(script name, check): (future of the check's result, the folder it ran in)}, for the scripts
    whose tests of tests/test_harness.py (the module that reads them) the session runs."""
    results = {}
    params = [getattr(getattr(item, "callspec", None), "params", {}) for item in request.session.items
              if item.path.name == "test_harness.py"]
    wanted = {p["script"].name for p in params if "script" in p}
    scripts = [script for script in SCRIPTS if script.name in wanted]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    for script in scripts:
        for check, flags in cli_checks(script).items():
            cwd = tmp_path_factory.mktemp(f"cli_{script.name}_{check}")
            results[script.name, check] = (pool.submit(run_cli, script.name, *flags, cwd=cwd), cwd)
    for script in scripts:  # after the quick checks: a run each, interrupted once it logged episodes
        cwd = tmp_path_factory.mktemp(f"cli_{script.name}_ctrl_c")
        command = [sys.executable, os.path.join(ROOT, f"{script.name}.py"), "--total-timesteps",
                   "100000000", "--no-cuda"]
        results[script.name, "ctrl_c"] = (pool.submit(interrupt_once_logging, command, cwd=cwd), cwd)
    yield results
    pool.shutdown(cancel_futures=True)


def pytest_collection_modifyitems(items):
    """The tests that read cli_results' subprocesses run last: the background thread then has the whole
    session to finish them while the in-process tests run, and the first core never waits for the second."""
    def reads_subprocesses(item):
        function = getattr(item, "function", None)
        return function is not None and "cli_results" in inspect.signature(function).parameters
    items.sort(key=reads_subprocesses)  # stable: every other test keeps its order


def cli_result(cli_results, script, check):
    future, cwd = cli_results[script.name, check]
    return future.result(), cwd


def record_training_resets(module, monkeypatch) -> list:
    """The seed= of every reset of the first env module.make_env builds (the training env), in order: a spy on
    make_env that wraps that env's reset."""
    seeds, make_env = [], module.make_env

    def recording(*args, **kwargs):
        env = make_env(*args, **kwargs)
        if not seeds:  # the training env, the first one made
            reset = env.reset
            env.reset = lambda **options: (seeds.append(options.get("seed")), reset(**options))[1]
        return env

    monkeypatch.setattr(module, "make_env", recording)
    return seeds


def snapshot(value):
    """A copy of an argument as it is at the call: the rollout's arrays (and the tensors that share their memory)
    are overwritten by the next rollout. Networks, optimizers and numbers are kept as they are."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if torch.is_tensor(value):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(snapshot(v) for v in value)
    return value

