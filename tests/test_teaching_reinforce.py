"""plots/teaching.py's REINFORCE figure (teaching_reinforce_grad_variance.png): the policy gradient's variance
with and without the baseline. Apart from tests/test_plots.py so that only this file names reinforce.py there:
mutate.py runs every test file that names a script on each of its mutants."""

import json
import os
import sys

import numpy as np
import pytest
import torch

import reinforce
from conftest import ROOT
from test_plots import fake_run

sys.path.insert(0, os.path.join(ROOT, "plots"))
import teaching  # noqa: E402
from runs import group, load_runs, read_columns  # noqa: E402


def bandit_policy(p, hidden_size=16):
    """reinforce.py's own networks on TwoArmedBandit-v0 (conftest: one step, observation [1], action 1 pays
    1): the policy's last layer has zero weights and the biases log(1 − p), log p, so π(1) = p, and the
    baseline is V(s) = p, the expected reward. Returns them and h, the policy's last hidden layer at [1]."""
    torch.manual_seed(0)
    actor, baseline = reinforce.CategoricalActor(1, 2, hidden_size, 0.0), reinforce.Baseline(1, hidden_size)
    with torch.no_grad():
        actor.logits[4].weight.zero_()
        actor.logits[4].bias.copy_(torch.log(torch.tensor([1 - p, p])))
        baseline.net[4].weight.zero_()
        baseline.net[4].bias.fill_(p)
        h = actor.logits[:4](torch.ones(1, 1))[0]
    return actor, baseline, h


@pytest.fixture
def one_torch_thread():
    """Small networks, as teaching.py's main() and train() run them: more threads only spin on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("p", [0.5, 0.3, 0.8])
def test_the_gradient_variance_on_a_bandit_against_its_exact_value(p, one_torch_thread):
    """One step per episode, reward a, so G = a. With logits = W h + b, ∇_b log π(a) = e_a − π and
    ∇_W log π(a) = (e_a − π) hᵀ, and e_a − π = c [−1, 1] with c = q = 1 − p for a = 1, −p for a = 0. The
    loss's gradient on a batch of N episodes is −(1/N) Σ_i (e_ai − π)(G_i − b) (1, h): its total variance
    is 2 (1 + ‖h‖²) / N times the variance of the scalar c (G − b), which is p q³ without a baseline (b = 0)
    and p q (p − q)² with b = V = p: 0 at p = 0.5, a third at p = 0.3, and 9 times as much at p = 0.8 (the value
    is not the variance-minimizing baseline). Both have the mean p q [1, −1] (1, h)."""
    actor, baseline, h = bandit_policy(p)
    q, n, batches = 1 - p, 8, 300
    samples = teaching.gradient_samples(actor, baseline, reinforce.Normalizer(1, 0.99, False, False),
                                        "TwoArmedBandit-v0", gamma=0.99, num_episodes=n, batches=batches)
    assert samples["with"].shape == samples["without"].shape == (batches, sum(w.numel() for w in actor.parameters()))
    assert samples["returns"].mean() == pytest.approx(p, abs=0.05)
    summary = teaching.variance_summary(samples)
    scale = 2 * (1 + float(h @ h)) / n
    assert summary["var_without"] == pytest.approx(scale * p * q ** 3, rel=0.2)
    assert summary["var_with"] == pytest.approx(scale * p * q * (p - q) ** 2, rel=0.2, abs=1e-9)
    exact = np.zeros_like(samples["with"][0])  # the last layer's weights, then its biases, are the last entries
    exact[-2 - 2 * len(h):-2] = (p * q * torch.outer(torch.tensor([1.0, -1.0]), h)).flatten().numpy()
    exact[-2:] = p * q * np.array([1.0, -1.0])
    for estimate in ("with", "without"):
        noise = np.sqrt(samples[estimate].var(0).sum() / batches)
        assert np.linalg.norm(samples[estimate].mean(0) - exact) < 4 * noise + 1e-6
    if p == 0.5:  # c (G − b) = 0.5 × 0.5 for a = 1 and −0.5 × −0.5 for a = 0: every batch is exact
        np.testing.assert_allclose(samples["with"], np.tile(exact, (batches, 1)), atol=1e-6)
    assert summary["cosine"] > 0.99
    assert summary["term_mean"] < 4 * summary["term_noise"]


def test_reinforce_grad_variance_figure_from_a_tiny_run_folder(tmp_path, monkeypatch):
    """A reinforce run stands for the benchmark's: the figure is written from snapshots of a run with the
    script's defaults at steps 0 and 600, the first the untrained policy of seed 1, the second taken where a
    batch of episodes ended, its measures finite; a second call reuses the snapshots."""
    run_dir, out = tmp_path / "runs", tmp_path / "png"
    reinforce.train(reinforce.Args(total_timesteps=600, eval_episodes=1, run_dir=str(run_dir), cuda=False))
    monkeypatch.setattr(sys, "argv", ["teaching.py", "--run-dir", str(run_dir), "--out", str(out),
                                      "--variance-steps", "0", "600", "--variance-batches", "4",
                                      "--variance-models", "1"])
    teaching.main()
    assert os.path.getsize(out / "teaching_reinforce_grad_variance.png") > 10_000
    (snapshots,) = os.listdir(run_dir / "reinforce_grad_variance")
    folder = run_dir / "reinforce_grad_variance" / snapshots
    args = json.load(open(folder / "args.json"))
    assert args["total_timesteps"] == 500_000 and args["seed"] == 1, "not the defaults' learning-rate schedule"
    torch.manual_seed(1)  # train() seeds torch with args.seed, then builds the policy
    initial = reinforce.CategoricalActor(4, 2, args["hidden_size"], args["log_std_init"]).state_dict()
    first, later = (torch.load(folder / f"snapshot_{step}.pt", weights_only=True) for step in (0, 600))
    assert first["global_step"] == 0 and all(torch.equal(first["actor"][key], initial[key]) for key in initial)
    batch_ends = read_columns(os.path.join(folder, "episodes.csv"))["global_step"][args["num_episodes"] - 1::
                                                                                   args["num_episodes"]]
    assert 600 <= later["global_step"] < 1_500 and later["global_step"] in batch_ends
    assert not torch.equal(later["actor"]["logits.4.weight"], first["actor"]["logits.4.weight"])

    results = teaching.reinforce_grad_variance(group(load_runs(str(run_dir))), str(out),
                                               str(run_dir / "reinforce_grad_variance"), (0, 600), (1,), 4, 1)
    assert os.listdir(run_dir / "reinforce_grad_variance") == [snapshots], "the snapshots were not reused"
    measures = results["snapshots"][1] + results["models"]
    assert [m["global_step"] for m in measures] == [0, later["global_step"], 600]
    for m in measures:
        assert m["samples"]["with"].shape[0] == 4 and np.isfinite(m["samples"]["with"]).all()
        assert all(np.isfinite(m[key]) and m[key] > 0 for key in ("var_with", "var_without", "term_noise"))


def test_no_reinforce_runs_on_cartpole_no_figure(tmp_path, monkeypatch, capsys):
    """The figure is made only from reinforce runs on CartPole-v1: with another script's run there and a
    reinforce run on Pendulum-v1 only, main() trains no snapshots, writes no figure and says so in one line."""
    run_dir, out = tmp_path / "runs", tmp_path / "png"
    fake_run(run_dir, "CartPole-v1", "a2c", 1, 1, [10.0, 20.0], eval_mean=20.0, exp_name="a2c")
    fake_run(run_dir, "Pendulum-v1", "reinforce", 1, 1, [-900.0, -800.0], eval_mean=-800.0, exp_name="reinforce")
    monkeypatch.setattr(sys, "argv", ["teaching.py", "--run-dir", str(run_dir), "--out", str(out)])
    teaching.main()
    assert not os.path.exists(out / "teaching_reinforce_grad_variance.png"), "no reinforce runs: no such figure"
    assert not os.path.exists(run_dir / "reinforce_grad_variance")
    assert os.listdir(out) == []
    assert f"{out / 'teaching_reinforce_grad_variance.png'}: skipped, no reinforce runs on CartPole-v1 in the run " \
           "folder" in capsys.readouterr().out
