"""TRPO's math: conjugate gradient, the Fisher-vector product, the KL formulas, the step size and the line
search of one update on a fixed batch; the critic's update by hand; what train() hands the updates; a
two-armed bandit that training must solve."""

import csv
import os

import numpy as np
import pytest
import torch
from torch.func import functional_call

import trpo
from conftest import reference_gae, snapshot


def random_spd(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=g, dtype=torch.float64)
    return m @ m.T + 0.1 * torch.eye(n, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)


def test_conjugate_gradient_solves_a_small_spd_system():
    a, b = random_spd(6)
    x = trpo.conjugate_gradient(lambda v: a @ v, b, iters=6, tolerance=1e-20)
    assert torch.allclose(x, torch.linalg.solve(a, b), atol=1e-8)
    assert torch.allclose(a @ x, b, atol=1e-8)


def test_conjugate_gradient_only_multiplies():
    """It sees A only through products, one per iteration, and each iteration brings x closer to the
    solution in the A-norm ‖e‖_A = √(eᵀAe), the norm conjugate gradient minimizes over its growing subspace."""
    a, b = random_spd(30, seed=1)
    solution = torch.linalg.solve(a, b)
    calls = []
    trpo.conjugate_gradient(lambda v: calls.append(1) or a @ v, b, iters=3)
    assert len(calls) == 3
    errors = []
    for iters in range(1, 8):
        e = trpo.conjugate_gradient(lambda v: a @ v, b, iters=iters) - solution
        errors.append(float(e @ a @ e))
    assert float(solution @ a @ solution) > errors[0] and errors == sorted(errors, reverse=True)


def tiny_actor(kind, seed=0):
    torch.manual_seed(seed)
    if kind == "discrete":
        actor = trpo.CategoricalActor(obs_dim=3, n_actions=3, hidden_size=4, log_std_init=0.0)
        with torch.no_grad():  # a policy far from uniform, so the Hessian is not trivially structured
            actor.logits[-1].weight.mul_(100)
    else:
        actor = trpo.GaussianActor(obs_dim=3, action_dim=2, hidden_size=4, log_std_init=-0.3)
        with torch.no_grad():
            actor.mean[-1].weight.mul_(100)
    return actor.double()


class MeanKL(torch.nn.Module):
    """The actor's mean KL as a module, so that torch.func.functional_call can evaluate it at any θ."""

    def __init__(self, actor):
        super().__init__()
        self.actor = actor

    def forward(self, old, obs):
        return self.actor.kl(old, obs)


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_fisher_vector_product_is_hessian_of_the_mean_kl_times_v(kind):
    actor = tiny_actor(kind)
    obs = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        old = actor.distribution(obs)
    module = MeanKL(actor)
    names, shapes = zip(*[(name, p.shape) for name, p in module.named_parameters()])
    theta = torch.nn.utils.parameters_to_vector(actor.parameters()).detach()

    def mean_kl(flat):  # the same mean KL as a function of the flat parameter vector
        params = dict(zip(names, torch.split(flat, [shape.numel() for shape in shapes])))
        params = {name: value.reshape(shape) for (name, value), shape in zip(params.items(), shapes)}
        return functional_call(module, params, (old, obs))

    hessian = torch.autograd.functional.hessian(mean_kl, theta)  # the explicit n × n matrix
    assert hessian.shape == (len(theta), len(theta)) and hessian.abs().max() > 1e-3
    v = torch.randn(len(theta), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    damping = 0.1
    fvp = trpo.fisher_vector_product(actor, obs, old, damping)
    assert torch.allclose(fvp(v), hessian @ v + damping * v, atol=1e-8, rtol=1e-6)
    assert torch.allclose(fvp(2 * v), 2 * fvp(v), atol=1e-8)  # reusable: one product per call


def test_kl_formulas_match_torch_distributions():
    g = torch.Generator().manual_seed(3)
    old_logits, logits = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    expected = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=old_logits),
                                                 torch.distributions.Categorical(logits=logits))
    assert torch.allclose(trpo.categorical_kl(old_logits, logits), expected, atol=1e-6)
    old_mean, mean = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
    old_log_std, log_std = torch.tensor([0.1, -0.5]), torch.tensor([-0.2, 0.3])
    normal = lambda m, s: torch.distributions.Independent(torch.distributions.Normal(m, s.exp()), 1)
    expected = torch.distributions.kl_divergence(normal(old_mean, old_log_std), normal(mean, log_std))
    assert torch.allclose(trpo.gaussian_kl(old_mean, old_log_std, mean, log_std), expected, atol=1e-6)
    assert torch.allclose(trpo.gaussian_kl(mean, log_std, mean, log_std), torch.zeros(5), atol=1e-7)


def fixed_batch(kind, n=256, seed=0):
    """A batch collected by the tiny actor itself, with advantages that favour some actions."""
    actor = tiny_actor(kind, seed).float()
    g = torch.Generator().manual_seed(seed + 10)
    obs = torch.randn(n, 3, generator=g)
    torch.manual_seed(seed + 20)
    with torch.no_grad():
        actions, log_probs = actor.sample(obs)
    score = actions.float() if kind == "discrete" else actions.sum(-1)
    advantages = score - score.mean() + 0.3 * torch.randn(n, generator=g)
    return actor, obs, actions, log_probs, advantages


def surrogate_and_kl(actor, old, obs, actions, old_log_probs, advantages):
    with torch.no_grad():
        new_log_probs, _ = actor.log_prob_entropy(obs, actions)
        return ((new_log_probs - old_log_probs).exp() * advantages).mean().item(), actor.kl(old, obs).item()


UPDATE = dict(max_kl=0.01, cg_iters=10, cg_damping=0.1, backtrack_iters=10, backtrack_coef=0.8)


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_one_update_respects_the_trust_region_and_improves_the_surrogate(kind):
    actor, obs, actions, log_probs, advantages = fixed_batch(kind)
    with torch.no_grad():
        old = actor.distribution(obs)
    before, _ = surrogate_and_kl(actor, old, obs, actions, log_probs, advantages)
    theta_k = torch.nn.utils.parameters_to_vector(actor.parameters()).clone()
    stats = trpo.trpo_update(actor, obs, actions, log_probs, advantages, **UPDATE)
    after, kl = surrogate_and_kl(actor, old, obs, actions, log_probs, advantages)
    assert stats["step_accepted"] == 1.0
    assert not torch.equal(torch.nn.utils.parameters_to_vector(actor.parameters()), theta_k)
    assert 0 < kl <= UPDATE["max_kl"]
    assert after > before
    assert stats["kl"] == pytest.approx(kl, rel=1e-5)
    assert stats["surrogate_improvement"] == pytest.approx(after - before, rel=1e-4, abs=1e-7)


def test_the_full_step_has_the_natural_direction_and_the_size_of_the_trust_region():
    """s = √(2δ / xᵀHx) x with x = H⁻¹g: s points along H⁻¹g and ½ sᵀHs = δ exactly (a step size off by a
    factor, a missing square root or 2, fails this)."""
    h, g = random_spd(8, seed=4)
    step = trpo.natural_gradient_step(lambda v: h @ v, g, max_kl=0.01, cg_iters=8)
    direction = torch.linalg.solve(h, g)
    assert torch.allclose(step / step.norm(), direction / direction.norm(), atol=1e-8)
    assert 0.5 * step @ h @ step == pytest.approx(0.01, rel=1e-8)


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_the_full_step_reaches_the_border_of_the_trust_region(kind):
    """On a real policy: for a small δ the mean KL is close to its quadratic model, so the KL after the full
    step (no backtracking) is δ to within a few percent."""
    actor, obs, actions, log_probs, advantages = fixed_batch(kind)
    with torch.no_grad():
        old = actor.distribution(obs)
    new_log_probs, _ = actor.log_prob_entropy(obs, actions)
    parameters = list(actor.parameters())
    g = trpo.flat_grad(((new_log_probs - log_probs).exp() * advantages).mean(), parameters)
    fvp = trpo.fisher_vector_product(actor, obs, old, damping=1e-3)
    step = trpo.natural_gradient_step(fvp, g, max_kl=1e-4, cg_iters=10)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.nn.utils.parameters_to_vector(parameters) + step, parameters)
        kl = actor.kl(old, obs).item()
    assert kl == pytest.approx(1e-4, rel=0.1)


def test_a_too_large_step_is_rejected_and_the_policy_kept(monkeypatch):
    """Pretend the KL is 10⁴ times flatter than it is: the full step is then 100 times too long. The line
    search must see that the real KL is above δ, and with too few shrinks it keeps θ_k."""
    actor, obs, actions, log_probs, advantages = fixed_batch("discrete")
    real_fvp = trpo.fisher_vector_product
    monkeypatch.setattr(trpo, "fisher_vector_product",
                        lambda *a: (lambda v, f=real_fvp(*a): 1e-4 * f(v)))
    theta_k = torch.nn.utils.parameters_to_vector(actor.parameters()).clone()
    stats = trpo.trpo_update(actor, obs, actions, log_probs, advantages, **dict(UPDATE, backtrack_iters=3))
    assert stats["step_accepted"] == 0.0 and stats["line_search_steps"] == 3
    assert torch.equal(torch.nn.utils.parameters_to_vector(actor.parameters()), theta_k)
    # with enough shrinks (0.5^7 < 1/100) the line search finds a step inside the trust region
    stats = trpo.trpo_update(actor, obs, actions, log_probs, advantages,
                             **dict(UPDATE, backtrack_iters=20, backtrack_coef=0.5))
    assert stats["step_accepted"] == 1.0 and stats["line_search_steps"] >= 6
    assert 0 < stats["kl"] <= UPDATE["max_kl"]


def test_a_rejected_update_is_recorded_in_metrics(monkeypatch, tmp_path):
    real_fvp = trpo.fisher_vector_product
    monkeypatch.setattr(trpo, "fisher_vector_product",
                        lambda *a: (lambda v, f=real_fvp(*a): 1e-6 * f(v)))
    summary = trpo.train(trpo.Args(total_timesteps=512, num_envs=2, num_steps=64, backtrack_iters=2,
                                   log_frequency=128, eval_episodes=1, run_dir=str(tmp_path), cuda=False,
                                   save_model=False))
    with open(f"{summary['run_dir']}/metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert all(float(row["step_accepted"]) == 0.0 and int(row["rejected_updates"]) == 1 for row in rows)


# ---------------------------------------------------------------------------------------------------
# The critic's update by hand
# ---------------------------------------------------------------------------------------------------
def test_update_critic_is_plain_gradient_steps_on_the_squared_error():
    """V(s) = w · s (the script's Critic with a linear network) and plain SGD, 3 epochs of one mini-batch:
    w ← w − lr · (2/n) Σ_j (w · s_j − R̂_j) s_j, three times, and the returned loss is the last step's
    mean (w · s − R̂)². A flipped sign of the critic's loss moves w the other way."""
    critic = trpo.Critic(obs_dim=2, hidden_size=1)
    critic.net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        critic.net.weight.copy_(torch.tensor([[0.4, -0.1]]))
    obs = torch.tensor([[1.0, 0.5], [0.2, 1.0], [0.6, -0.4], [-0.3, 0.8]])
    returns = torch.tensor([0.7, -0.2, 1.1, 0.4])
    lr, w = 0.1, critic.net.weight.detach().clone().squeeze(0)
    for _ in range(3):
        errors = obs @ w - returns
        expected_loss = (errors ** 2).mean()
        w = w - lr * 2 / 4 * (errors[:, None] * obs).sum(0)
    loss = trpo.update_critic(critic, torch.optim.SGD(critic.parameters(), lr=lr), obs, returns, update_epochs=3,
                              num_minibatches=1)
    assert torch.allclose(critic.net.weight.squeeze(0), w, atol=1e-6)
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------------
# What train() hands the updates
# ---------------------------------------------------------------------------------------------------

def spy_on(monkeypatch, name, also=None):
    """Replace trpo.name by a function that records, for every call, a snapshot of its arguments, also(*args)
    if given (computed before the call) and what the original returned. Returns the list of the records."""
    calls, original = [], getattr(trpo, name)

    def spy(*args, **kwargs):
        record = dict(args=snapshot(args), kwargs=snapshot(kwargs), also=also(*args) if also else None)
        record["result"] = original(*args, **kwargs)
        calls.append(record)
        return record["result"]

    monkeypatch.setattr(trpo, name, spy)
    return calls


def policy_log_probs(actor, obs, actions, *rest):
    """log π(a|s) of the batch by the actor as it is when trpo_update starts: π_θk, which collected it."""
    with torch.no_grad():
        return actor.log_prob_entropy(obs, actions)[0]


def test_train_gives_the_updates_the_gae_of_its_rollout_with_args_gamma(monkeypatch, tmp_path):
    """Spy on a short run with an unusual γ = 0.77: trpo_update must get GAE(γ = 0.77, λ) of the rollout
    (computed here by a plain loop), normalized to mean 0 and std 1, the log-probabilities of the policy that
    collected it and the trust region δ of Args, shrunk by anneal_max_kl to δ·(1 − steps before the rollout /
    total_timesteps); update_critic the λ-returns Â + V; the reward normalization must discount by the same γ;
    metrics.csv must log the critic's loss update_critic returned. Catches γ ignored or replaced at the call
    sites, the returns swapped with the advantages, a δ not from Args or not shrunk."""
    gaes, policy_updates = spy_on(monkeypatch, "compute_gae"), spy_on(monkeypatch, "trpo_update", policy_log_probs)
    critic_updates, normalizers = spy_on(monkeypatch, "update_critic"), spy_on(monkeypatch, "Normalizer")
    summary = trpo.train(trpo.Args(total_timesteps=96, num_envs=2, num_steps=16, gamma=0.77, gae_lambda=0.9,
                                   max_kl=0.023, anneal_max_kl=True, norm_reward=True, update_epochs=2,
                                   num_minibatches=2, log_frequency=32, eval_episodes=0, save_model=False,
                                   run_dir=str(tmp_path), cuda=False))
    assert len(gaes) == len(policy_updates) == len(critic_updates) == 3
    assert [call["args"][2] for call in normalizers] == [0.77], "the reward normalization's γ is not Args'"
    for k, (gae, policy_update, critic_update) in enumerate(zip(gaes, policy_updates, critic_updates)):
        rewards, values, next_values, terminated, dones = gae["args"][:5]
        expected = reference_gae(rewards, values, next_values, terminated, dones, gamma=0.77, lam=0.9).reshape(-1)
        _, obs, actions, old_log_probs, advantages = policy_update["args"]
        max_kl = policy_update["kwargs"]["max_kl"]
        normalized = (expected - expected.mean()) / (expected.std(ddof=1) + 1e-8)
        np.testing.assert_allclose(advantages.numpy(), normalized, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(old_log_probs, policy_update["also"])
        assert max_kl == pytest.approx(0.023 * (1 - 32 * k / 96)), "δ is not Args' δ shrunk linearly to 0"
        np.testing.assert_allclose(critic_update["args"][3].numpy(), expected + values.reshape(-1), rtol=1e-5,
                                   atol=1e-5)
        assert torch.equal(critic_update["args"][2], obs)
    with open(os.path.join(summary["run_dir"], "metrics.csv"), newline="") as f:
        logged = [float(row["value_loss"]) for row in csv.DictReader(f)]
    assert logged == [call["result"].item() for call in critic_updates]


# ---------------------------------------------------------------------------------------------------
# Behaviour on a task whose answer is known: a two-armed bandit
# ---------------------------------------------------------------------------------------------------
def test_training_on_a_two_armed_bandit_learns_to_pull_the_paying_arm(monkeypatch, tmp_path):
    """A short train() on the bandit, from a nearly uniform policy: π(1) must end above 0.9 and the critic V(s),
    regressed on the rewards of the policy's own actions, near the expected reward π(1). A step taken along
    −H⁻¹g lowers the surrogate: the line search then rejects every step and π(1) stays near ½ (or, with the
    line search also broken, falls); a flipped critic loss sends V away from the rewards."""
    policy_updates, critic_updates = spy_on(monkeypatch, "trpo_update"), spy_on(monkeypatch, "update_critic")
    trpo.train(trpo.Args(env_id="TwoArmedBandit-v0", total_timesteps=640, num_envs=4, num_steps=8,
                         learning_rate=1e-2, eval_episodes=1, save_model=False, run_dir=str(tmp_path), cuda=False))
    actor, critic = policy_updates[-1]["args"][0], critic_updates[-1]["args"][0]
    with torch.no_grad():
        p_pull = actor.logits(torch.ones(1, 1)).softmax(-1)[0, 1].item()
        value = critic(torch.ones(1, 1)).item()
    assert p_pull > 0.9
    assert value == pytest.approx(p_pull, abs=0.1)


# ---------------------------------------------------------------------------------------------------
# A rollout of a single sample
# ---------------------------------------------------------------------------------------------------
def test_a_single_sample_rollout_gives_finite_advantages_and_accepted_steps(monkeypatch, tmp_path):
    """Normalizing the advantages of one sample divides by its std(), NaN; the settings allow such rollouts
    (num_envs = num_steps = 1). The NaN gradient then made the line search reject every step, silently: the
    policy never learned. The advantages must be finite, steps accepted, and the saved weights finite."""
    policy_updates = spy_on(monkeypatch, "trpo_update")
    summary = trpo.train(trpo.Args(total_timesteps=20, num_envs=1, num_steps=1, num_minibatches=1, update_epochs=1,
                                   norm_adv=True, eval_episodes=0, run_dir=str(tmp_path), cuda=False))
    assert all(torch.isfinite(call["args"][4]).all() for call in policy_updates)
    assert any(call["result"]["step_accepted"] == 1.0 for call in policy_updates)
    checkpoint = torch.load(os.path.join(summary["run_dir"], "model.pt"), weights_only=True)
    for part in ("actor", "critic"):
        for name, weights in checkpoint[part].items():
            assert torch.isfinite(weights).all(), f"{part}.{name} is not finite"
