"""A3C: the returns of a rollout, the gradients of its losses, the shared optimizer across processes, two
workers writing one log, a crashing worker, Ctrl-C, and no process left behind. A3C's workers run asynchronously, so these tests check
what holds whatever the interleaving, never exact returns."""

import os
import subprocess
import sys
import time
import uuid

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import a3c
from conftest import ROOT, interrupt_once_logging, read_csv

TESTS = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------------------
# An env that raises in the middle of training, registered when this file is imported: in-process, and by
# the command-line test below, which imports this file before it runs a3c.py as __main__. The workers,
# forked, find it registered.
# ---------------------------------------------------------------------------------------------------
class RaisingCartPole(gym.Wrapper):
    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == 50:
            raise ValueError("the env broke on purpose")
        return self.env.step(action)


if "RaisingCartPole-v0" not in gym.envs.registry:
    gym.register("RaisingCartPole-v0", entry_point=RaisingCartPole)


# ---------------------------------------------------------------------------------------------------
# A3C-4: the returns of one rollout
# ---------------------------------------------------------------------------------------------------
def reference_returns(rewards, last_value, terminated, gamma):
    """The paper's loop: R = 0 if terminal else V(s_t); for i = t−1 … t_start: R ← r_i + γR."""
    R = 0.0 if terminated else last_value
    returns = []
    for r in reversed(rewards):
        R = r + gamma * R
        returns.append(R)
    return returns[::-1]


@pytest.mark.parametrize("terminated", [True, False])
def test_rollout_returns_are_the_n_step_returns(terminated):
    rewards = np.array([1.0, 0.5, -2.0, 3.0], dtype=np.float32)
    values = np.array([0.3, -0.1, 0.7, 1.2], dtype=np.float32)
    advantages, returns = a3c.rollout_returns(rewards, values, last_value=5.0, terminated=terminated, gamma=0.9,
                                              gae_lambda=1.0)
    expected = reference_returns(rewards, 5.0, terminated, 0.9)
    assert returns == pytest.approx(expected, abs=1e-5)
    assert advantages == pytest.approx(np.array(expected) - values, abs=1e-5)


def test_truncation_bootstraps_and_termination_does_not():
    """Same rollout, same final value: only the termination drops V(s_n) = 10 from the returns."""
    rewards, values = np.ones(3, dtype=np.float32), np.zeros(3, dtype=np.float32)
    _, cut = a3c.rollout_returns(rewards, values, 10.0, terminated=False, gamma=0.5, gae_lambda=1.0)
    _, ended = a3c.rollout_returns(rewards, values, 10.0, terminated=True, gamma=0.5, gae_lambda=1.0)
    assert cut.tolist() == pytest.approx([1 + 0.5 + 0.25 + 0.125 * 10, 1 + 0.5 + 0.25 * 10, 1 + 0.5 * 10])
    assert ended.tolist() == pytest.approx([1.75, 1.5, 1.0])


# ---------------------------------------------------------------------------------------------------
# A3C-5: the gradients of one rollout's losses, on the local networks
# ---------------------------------------------------------------------------------------------------
def test_compute_gradients_leaves_the_clipped_gradients_of_the_a3c_loss_on_the_local_networks():
    torch.manual_seed(0)
    actor, critic = a3c.CategoricalActor(3, 2, 8, 0.0), a3c.Critic(3, 8)
    parameters = list(actor.parameters()) + list(critic.parameters())
    batch = (torch.randn(6, 3), torch.tensor([0, 1, 1, 0, 1, 0]), torch.randn(6), torch.randn(6))
    obs, actions, advantages, returns = batch
    policy_loss, value_loss, entropy = a3c.compute_gradients(actor, critic, batch, ent_coef=0.01, vf_coef=0.5,
                                                             max_grad_norm=1e9)
    # The losses of the slides, written with torch.distributions, and their gradients by autograd
    policy = torch.distributions.Categorical(logits=actor.logits(obs))
    expected_policy_loss = -(policy.log_prob(actions) * advantages).mean()
    expected_value_loss = ((returns - critic(obs)) ** 2).mean()
    assert policy_loss.item() == pytest.approx(expected_policy_loss.item(), rel=1e-5)
    assert value_loss.item() == pytest.approx(expected_value_loss.item(), rel=1e-5)
    assert entropy.item() == pytest.approx(policy.entropy().mean().item(), rel=1e-5)
    loss = expected_policy_loss - 0.01 * policy.entropy().mean() + 0.5 * expected_value_loss
    for p, expected in zip(parameters, torch.autograd.grad(loss, parameters)):
        assert torch.allclose(p.grad, expected, atol=1e-6)
    # A small max_grad_norm scales the gradients down to that global norm
    a3c.compute_gradients(actor, critic, batch, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.1)
    assert torch.stack([p.grad.norm() for p in parameters]).norm().item() == pytest.approx(0.1, rel=1e-4)


# ---------------------------------------------------------------------------------------------------
# A3C-1 and A3C-6: a shared optimizer stepped by another process changes the parent's numbers
# ---------------------------------------------------------------------------------------------------
def step_from_child(net, optimizer):
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()


def test_shared_adam_steps_the_shared_parameters_from_another_process():
    net = torch.nn.Linear(3, 2)
    net.share_memory()
    optimizer = a3c.SharedAdam(net.parameters(), lr=0.1)
    state = optimizer.state[net.weight]
    assert all(tensor.is_shared() for tensor in state.values())
    before = net.weight.detach().clone()
    child = mp.get_context(a3c.START_METHOD).Process(target=step_from_child, args=(net, optimizer))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    # Adam's first step moves every weight by lr against the sign of its gradient, in the parent's memory
    assert torch.allclose(net.weight, before - 0.1, atol=1e-4)
    assert state["step"].item() == 1 and torch.allclose(state["exp_avg"], 0.1 * torch.ones(2, 3))


# ---------------------------------------------------------------------------------------------------
# Processes: two workers, one log; a crash; Ctrl-C; nothing left behind
# ---------------------------------------------------------------------------------------------------
def children_of(pid):
    """Processes whose parent is pid, read from /proc (psutil is not available), except Python's
    multiprocessing resource tracker: one helper per interpreter that 'spawn' starts once, which lives as
    long as the interpreter (it is not a worker, and it exits with its parent)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if ppid == pid and "resource_tracker" not in cmdline:
            found.append((int(entry), cmdline))
    return found


def processes_with_marker(marker):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
            continue
    return found


def test_two_workers_write_one_log_and_leave_no_process(tmp_path):
    args = a3c.Args(total_timesteps=1_500, num_workers=2, num_steps=5, log_frequency=200, eval_episodes=1,
                    run_dir=str(tmp_path), cuda=False)
    summary = a3c.train(args)
    assert summary["global_step"] == 1_500  # the shared counter stopped both workers exactly at the budget
    episodes = read_csv(os.path.join(summary["run_dir"], "episodes.csv"))
    metrics = read_csv(os.path.join(summary["run_dir"], "metrics.csv"))
    # Each worker's last metrics row counts the episodes it finished; the main process logged them all
    last_count = {row["worker"]: int(row["worker_episodes"]) for row in metrics}
    assert set(last_count) == {"0", "1"}
    assert all(count > 0 for count in last_count.values())
    assert sum(last_count.values()) == len(episodes)
    assert sum(int(row["episodic_length"]) for row in episodes) <= 1_500
    assert not mp.active_children()
    assert children_of(os.getpid()) == []


def test_a_crashing_worker_stops_the_run_with_its_error(tmp_path):
    args = a3c.Args(env_id="RaisingCartPole-v0", total_timesteps=100_000, num_workers=2, num_steps=5,
                    eval_episodes=1, run_dir=str(tmp_path), cuda=False)
    start = time.time()
    with pytest.raises(RuntimeError, match="the env broke on purpose"):
        a3c.train(args)
    assert time.time() - start < 120
    assert not mp.active_children()
    assert children_of(os.getpid()) == []


def test_a_crashing_worker_makes_the_script_exit_nonzero(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, ROOT]))
    script = os.path.join(ROOT, "a3c.py")
    # python -c: import this file (which registers the env), then run a3c.py as the command line would
    run_script = ("import runpy, sys, test_a3c; sys.argv = sys.argv[1:]; "
                  "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", run_script, script, "--env-id", "RaisingCartPole-v0",
                             "--num-workers", "2", "--no-cuda"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode != 0
    assert "the env broke on purpose" in result.stderr


def test_ctrl_c_stops_every_worker(tmp_path):
    marker = f"A3C_TEST_{uuid.uuid4().hex}"
    command = [sys.executable, os.path.join(ROOT, "a3c.py"), "--total-timesteps", "100000000", "--num-workers", "2",
               "--no-cuda"]

    def all_running():
        assert len(processes_with_marker(marker)) >= 3, "the main process and its 2 workers should be running"

    returncode, _, err, _ = interrupt_once_logging(command, cwd=tmp_path, env=dict(os.environ, **{marker: "1"}),
                                                   timeout=120, before_interrupt=all_running)
    assert returncode == 130, err
    assert "Traceback" not in err
    deadline = time.time() + 10  # the resource tracker notices its parent's exit and leaves
    while processes_with_marker(marker) and time.time() < deadline:
        time.sleep(0.2)
    assert processes_with_marker(marker) == [], "a worker outlived the interrupted run"
