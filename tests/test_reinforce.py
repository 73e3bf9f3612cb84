"""REINFORCE's math: the reward-to-go against a plain loop (a termination, a time limit's cut with and without
the baseline's bootstrap), the sign of the estimator, the baseline's subtraction and its regression, the update
against its loss written out with plain SGD; what train() hands reward_to_go and the update; a two-armed bandit
that training must solve, with and without the baseline; the Gaussian policy of Box actions (its density, its
samples, the unclipped sample in the batch) and the reward scaling that only scales."""

import os

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

import reinforce
from conftest import TIME_LIMIT, CountValue, linear_actor_and_value, read_csv


def plain_reward_to_go(rewards, terminated, truncated, final_values, gamma):
    """G_t = Σ_{k=t}^{e} γ^{k−t} r_k (+ γ^{e−t+1} final_values[e] when a time limit cut the episode at e), summed
    forward from t to e, the first end of an episode at or after t."""
    returns = np.zeros(len(rewards))
    for t in range(len(rewards)):
        total, weight = 0.0, 1.0
        for k in range(t, len(rewards)):
            total += weight * rewards[k]
            weight *= gamma
            if terminated[k] or truncated[k]:
                if truncated[k] and not terminated[k]:
                    total += weight * final_values[k]
                break
        returns[t] = total
    return returns


# ---------------------------------------------------------------------------------------------------
# REINF-3: the reward-to-go
# ---------------------------------------------------------------------------------------------------
def three_episodes():
    """10 steps of 3 episodes laid end to end: steps 0-2 end in a termination, 3-6 are cut by a time limit
    (bootstrap value 7), 7-9 are cut by a time limit too, with nothing to bootstrap from (no baseline)."""
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=10).astype(np.float32)
    terminated, truncated = np.zeros(10, bool), np.zeros(10, bool)
    terminated[2], truncated[6], truncated[9] = True, True, True
    final_values = np.zeros(10, np.float32)
    final_values[2] = 123.0  # a termination must ignore whatever value stands here
    final_values[6] = 7.0
    return rewards, terminated, truncated, final_values


def test_reward_to_go_against_a_plain_loop_with_a_termination_and_a_truncation():
    rewards, terminated, truncated, final_values = three_episodes()
    gamma = 0.9
    returns = reinforce.reward_to_go(rewards, terminated, truncated, final_values, gamma)
    expected = plain_reward_to_go(rewards, terminated, truncated, final_values, gamma)
    np.testing.assert_allclose(returns, expected, rtol=1e-5, atol=1e-5)
    r = rewards.astype(np.float64)
    # by hand: the sum stops at each episode's end, and only a cut adds γ × its final value
    assert returns[2] == pytest.approx(r[2], rel=1e-5)
    assert returns[0] == pytest.approx(r[0] + gamma * r[1] + gamma ** 2 * r[2], rel=1e-5)
    assert returns[6] == pytest.approx(r[6] + gamma * 7.0, rel=1e-5)
    assert returns[3] == pytest.approx(r[3] + gamma * r[4] + gamma ** 2 * r[5] + gamma ** 3 * (r[6] + gamma * 7.0),
                                       rel=1e-5)
    assert returns[9] == pytest.approx(r[9], rel=1e-5)
    assert returns[7] == pytest.approx(r[7] + gamma * r[8] + gamma ** 2 * r[9], rel=1e-5)


def test_the_baseline_bootstrap_adds_the_discounted_value_after_the_cut_and_nothing_elsewhere():
    """The same cut episode with V(final observation) = 7 (baseline on) and with 0 (baseline off: the cut
    return as it is): they differ by γ^{k+1} · 7 for the state k steps before the cut, only in that episode.
    With positive rewards, the return without the bootstrap is the smaller one."""
    rewards, terminated, truncated, with_value = three_episodes()
    without_value = with_value.copy()
    without_value[6] = 0.0
    gamma = 0.95
    with_bootstrap = reinforce.reward_to_go(rewards, terminated, truncated, with_value, gamma)
    as_it_is = reinforce.reward_to_go(rewards, terminated, truncated, without_value, gamma)
    difference = np.zeros(10)
    difference[3:7] = 7.0 * gamma ** np.array([4, 3, 2, 1])  # steps 3..6 lie 3..0 steps before the cut
    np.testing.assert_allclose(with_bootstrap - as_it_is, difference, rtol=1e-5, atol=1e-5)
    positive = np.ones(10, np.float32)
    assert (reinforce.reward_to_go(positive, terminated, truncated, without_value, gamma)[3:7]
            < reinforce.reward_to_go(positive, terminated, truncated, with_value, gamma)[3:7]).all()


# ---------------------------------------------------------------------------------------------------
# REINF-4 and REINF-5: the update on a fixed batch, against its loss written out
# ---------------------------------------------------------------------------------------------------
def linear_policy_and_baseline():
    return linear_actor_and_value(reinforce.CategoricalActor, reinforce.Baseline)


def fixed_batch(n=4):
    """(s, a, G) of n ≤ 4 steps."""
    obs = torch.tensor([[1.0, 0.5], [0.2, 1.0], [0.6, -0.4], [-0.3, 0.8]])
    actions = torch.tensor([0, 1, 1, 0])
    returns = torch.tensor([1.5, -0.5, 2.0, 0.3])
    return obs[:n], actions[:n], returns[:n]


def weights(actor, baseline):
    return actor.logits.weight.detach().clone(), baseline.net.weight.detach().clone().squeeze(0)


def loss_by_hand(W, w, batch, use_baseline, norm_adv):
    """−mean log π(a|s) Â + mean (V(s) − G)², Â = G − V(s) with V a constant (or Â = G without the baseline),
    normalized to mean 0, std 1 if norm_adv and there are several samples; logits = W s, V(s) = w · s."""
    obs, actions, returns = batch
    log_pi = (obs @ W.T).log_softmax(-1)[torch.arange(len(obs)), actions]
    values = obs @ w
    advantages = returns - values.detach() if use_baseline else returns
    if norm_adv and len(advantages) > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    policy_loss = -(log_pi * advantages).mean()
    value_loss = ((values - returns) ** 2).mean() if use_baseline else torch.zeros(())
    return policy_loss + value_loss, policy_loss, value_loss


@pytest.mark.parametrize("use_baseline", [True, False], ids=["baseline", "no_baseline"])
@pytest.mark.parametrize("norm_adv", [True, False], ids=["norm_adv", "raw_adv"])
@pytest.mark.parametrize("n", [4, 1], ids=["4_samples", "1_sample"])
def test_update_is_one_plain_gradient_step_on_the_loss_written_out(use_baseline, norm_adv, n):
    """With plain SGD, the update must move W (policy) and w (baseline) by −lr ∇ of loss_by_hand and return its
    parts. Catches a flipped sign on the policy loss or the value loss, the baseline added instead of
    subtracted, the policy loss's gradient flowing into the baseline (V not a constant in Â), the returns
    regressed on the advantages, and NaN from normalizing a single sample."""
    actor, baseline = linear_policy_and_baseline()
    batch = fixed_batch(n)
    lr = 0.1
    W, w = weights(actor, baseline)
    parameters = list(actor.parameters()) + (list(baseline.parameters()) if use_baseline else [])
    optimizer = torch.optim.SGD(parameters, lr=lr)
    policy_loss, value_loss, _ = reinforce.update(actor, baseline if use_baseline else None, optimizer, batch,
                                                  norm_adv)

    W0, w0 = W.clone().requires_grad_(), w.clone().requires_grad_()
    total, expected_policy_loss, expected_value_loss = loss_by_hand(W0, w0, batch, use_baseline, norm_adv)
    grad_W, grad_w = torch.autograd.grad(total, (W0, w0), allow_unused=True)
    new_W, new_w = weights(actor, baseline)
    assert torch.isfinite(new_W).all() and torch.isfinite(new_w).all()
    assert torch.allclose(new_W, W - lr * grad_W, atol=1e-6)
    assert not torch.allclose(new_W, W, atol=1e-3), "the policy did not move"
    if use_baseline:
        assert torch.allclose(new_w, w - lr * grad_w, atol=1e-6)
        assert not torch.allclose(new_w, w, atol=1e-3), "the baseline did not move"
    else:
        assert torch.equal(new_w, w), "a baseline that is off must not be trained"
    assert policy_loss.item() == pytest.approx(expected_policy_loss.item(), rel=1e-5, abs=1e-6)
    assert value_loss.item() == pytest.approx(expected_value_loss.item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("optimizer_class", [torch.optim.SGD, torch.optim.Adam], ids=["sgd", "adam"])
def test_one_update_makes_an_action_with_a_positive_advantage_more_probable(optimizer_class):
    """The estimator's sign: one step on a single (s, a, G) moves log π(a|s) up when G > 0 and down when
    G < 0 (no baseline); with the baseline, the sign is that of G − V(s): V(s) above a positive G lowers it."""
    obs, actions = torch.tensor([[1.0, 0.5]]), torch.tensor([1])

    def change_of_log_prob(returns, use_baseline):
        actor, baseline = linear_policy_and_baseline()
        with torch.no_grad():
            before = actor.log_prob_entropy(obs, actions)[0].item()
        parameters = list(actor.parameters()) + list(baseline.parameters())
        reinforce.update(actor, baseline if use_baseline else None, optimizer_class(parameters, lr=0.05),
                         (obs, actions, torch.tensor([returns])), norm_adv=False)
        with torch.no_grad():
            return actor.log_prob_entropy(obs, actions)[0].item() - before

    value = 0.4 * 1.0 - 0.1 * 0.5  # V(s) = w · s = 0.35
    assert change_of_log_prob(2.0, use_baseline=False) > 1e-3
    assert change_of_log_prob(-2.0, use_baseline=False) < -1e-3
    assert change_of_log_prob(value + 1.0, use_baseline=True) > 1e-3
    assert change_of_log_prob(0.1, use_baseline=True) < -1e-3, "G = 0.1 > 0 but below V(s) = 0.35: less probable"


def test_the_baseline_is_subtracted_from_the_returns_and_regressed_on_them():
    """Without normalization, the policy's step with the baseline and returns G equals its step without the
    baseline and returns G − V(s): the advantages are G − V(s). The baseline's own step is the plain regression
    step w ← w − lr ∇ mean (w · s − G)², the same whatever the actions (no gradient of the policy's loss
    reaches V). And where V(s) = G for every sample, neither network moves."""
    obs, actions, returns = fixed_batch()
    lr = 0.1

    def step(use_baseline, actions, returns):
        actor, baseline = linear_policy_and_baseline()
        optimizer = torch.optim.SGD(list(actor.parameters()) + list(baseline.parameters()), lr=lr)
        reinforce.update(actor, baseline if use_baseline else None, optimizer, (obs, actions, returns), False)
        return weights(actor, baseline)

    W, w = weights(*linear_policy_and_baseline())
    values = obs @ w
    W_with, w_with = step(True, actions, returns)
    W_without, _ = step(False, actions, returns - values)
    assert torch.allclose(W_with, W_without, atol=1e-6)
    regression_step = w - lr * 2 * ((values - returns)[:, None] * obs).mean(0)  # ∇ mean (w·s − G)²
    assert torch.allclose(w_with, regression_step, atol=1e-6)
    _, w_other_actions = step(True, 1 - actions, returns)
    assert torch.allclose(w_other_actions, w_with, atol=1e-7)
    W_fit, w_fit = step(True, actions, values)  # returns that the baseline predicts exactly
    assert torch.allclose(W_fit, W, atol=1e-7) and torch.allclose(w_fit, w, atol=1e-7)


# ---------------------------------------------------------------------------------------------------
# What train() hands reward_to_go and the update
# ---------------------------------------------------------------------------------------------------
def snapshot(value):
    if torch.is_tensor(value):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(snapshot(v) for v in value)
    return value


def spy_on(monkeypatch, name):
    """Replace reinforce.name by a function that records a snapshot of its arguments and of its result, then
    returns that result. Returns the list of the recordings (args, result)."""
    calls, original = [], getattr(reinforce, name)

    def spy(*args, **kwargs):
        recorded = snapshot(args)  # before the call: what the caller handed over
        result = original(*args, **kwargs)
        calls.append((recorded, snapshot(result)))
        return result

    monkeypatch.setattr(reinforce, name, spy)
    return calls


def test_train_gives_the_update_the_reward_to_go_of_whole_episodes_with_args_gamma(monkeypatch, tmp_path):
    """A short CartPole run with an unusual γ = 0.77 and 3 episodes a batch: every batch ends an episode and
    holds exactly 3 episode ends, its returns are the plain loop's reward-to-go with γ = 0.77 (catches γ
    ignored or replaced at the call site), the update gets those very returns with the batch's steps and the
    baseline, the reward normalization discounts by the same γ, one optimizer step per batch, the learning rate
    at each update is α (1 − t / T) with t the step that completed the batch, and the episodes of an unfinished
    batch at the end of the budget are never learned from."""
    rtgs, updates, normalizers = spy_on(monkeypatch, "reward_to_go"), spy_on(monkeypatch, "update"), []
    rates, spied_update = [], reinforce.update
    monkeypatch.setattr(reinforce, "update", lambda actor, baseline, optimizer, *rest: rates.append(
        optimizer.param_groups[0]["lr"]) or spied_update(actor, baseline, optimizer, *rest))
    original_normalizer = reinforce.Normalizer
    monkeypatch.setattr(reinforce, "Normalizer", lambda *a: normalizers.append(a) or original_normalizer(*a))
    steps = []
    hook = register_optimizer_step_post_hook(lambda *_: steps.append(1))
    try:
        summary = reinforce.train(reinforce.Args(total_timesteps=700, num_episodes=3, gamma=0.77, norm_reward=True,
                                                 learning_rate=0.004, anneal_lr=True, eval_episodes=0,
                                                 run_dir=str(tmp_path), cuda=False))
    finally:
        hook.remove()
    assert [a[1] for a in normalizers] == [0.77], "the reward normalization's γ is not Args'"
    assert len(rtgs) == len(updates) == len(steps) >= 2
    batch_steps = 0
    for (rtg_args, returns), (update_args, _) in zip(rtgs, updates):
        rewards, terminated, truncated, final_values, gamma = rtg_args
        assert gamma == 0.77
        ends = terminated | truncated
        assert ends.sum() == 3 and ends[-1], "a batch is not 3 whole episodes"
        np.testing.assert_allclose(returns, plain_reward_to_go(rewards, terminated, truncated, final_values, 0.77),
                                   rtol=1e-5, atol=1e-5)
        actor, baseline, optimizer, (obs, actions, update_returns), norm_adv = update_args
        assert isinstance(baseline, reinforce.Baseline) and norm_adv is True
        np.testing.assert_array_equal(update_returns.numpy(), returns)
        assert len(obs) == len(actions) == len(rewards)
        batch_steps += len(rewards)
    episodes = read_csv(os.path.join(summary["run_dir"], "episodes.csv"))
    assert 3 * len(updates) <= len(episodes) < 3 * (len(updates) + 1)
    assert batch_steps == int(episodes[3 * len(updates) - 1]["global_step"]), "steps of the batches ≠ steps played"
    batch_ends = [int(episodes[3 * k + 2]["global_step"]) for k in range(len(updates))]
    assert rates == pytest.approx([0.004 * (1 - step / 700) for step in batch_ends])


def recorded_batches(monkeypatch, tmp_path, env_id, use_baseline, gamma):
    """Train on a CountEnv, 2 episodes a batch, with V(s) = t; returns the arrays of every reward_to_go call
    laid end to end, and the update calls."""
    monkeypatch.setattr(reinforce, "Baseline", CountValue)
    rtgs, updates = spy_on(monkeypatch, "reward_to_go"), spy_on(monkeypatch, "update")
    reinforce.train(reinforce.Args(env_id=env_id, total_timesteps=24, num_episodes=2, gamma=gamma,
                                   baseline=use_baseline, norm_obs=False, norm_reward=False, eval_episodes=0,
                                   save_model=False, run_dir=str(tmp_path), cuda=False))
    names = ("rewards", "terminated", "truncated", "final_values")
    r = {name: np.concatenate([args[i] for args, _ in rtgs]) for i, name in enumerate(names)}
    r["returns"] = np.concatenate([returns for _, returns in rtgs])
    r["t"] = np.concatenate([update_args[3][0][:, 0].numpy() for update_args, _ in updates])  # s_t = [t, 1]
    return r, updates


@pytest.mark.parametrize("kind", ["Discrete", "Continuous"])
@pytest.mark.parametrize("use_baseline", [True, False], ids=["baseline", "no_baseline"])
def test_a_time_limit_cut_bootstraps_from_the_baseline_value_of_the_final_observation(kind, use_baseline,
                                                                                      monkeypatch, tmp_path):
    """Every CountTruncated episode is cut after TIME_LIMIT = 5 steps of reward 1. With the baseline V(s) = t,
    the cut step's final value is V(final observation) = 5, not V(next episode's start) = 0, and the returns
    are 1 + γ + … + γ^{4−t} + γ^{5−t} · 5; without it, no value is added: the cut return as it is."""
    gamma = 0.9
    r, updates = recorded_batches(monkeypatch, tmp_path, f"CountTruncated{kind}-v0", use_baseline, gamma)
    assert len(updates) == 2 and len(r["t"]) == 4 * TIME_LIMIT  # 24 steps: 2 batches of 2 episodes, 4 steps left
    assert all((update_args[1] is None) != use_baseline for update_args, _ in updates)
    assert not r["terminated"].any(), "a time limit was stored as a termination"
    np.testing.assert_array_equal(r["truncated"], r["t"] == TIME_LIMIT - 1)
    np.testing.assert_array_equal(r["rewards"], 1.0)
    bootstrap = float(TIME_LIMIT) if use_baseline else 0.0
    np.testing.assert_array_equal(r["final_values"], np.where(r["truncated"], bootstrap, 0.0))
    steps_left = TIME_LIMIT - r["t"]  # rewards still to come in the episode, this one included
    expected = (1 - gamma ** steps_left) / (1 - gamma) + gamma ** steps_left * bootstrap
    np.testing.assert_allclose(r["returns"], expected, rtol=1e-5)


@pytest.mark.parametrize("kind", ["Discrete", "Continuous"])
def test_a_termination_is_never_bootstrapped(kind, monkeypatch, tmp_path):
    """CountTerminated episodes end in the MDP after 3 steps: the returns are 1 + γ + … to that end, nothing
    after it, even with the baseline on."""
    gamma = 0.9
    r, _ = recorded_batches(monkeypatch, tmp_path, f"CountTerminated{kind}-v0", True, gamma)
    np.testing.assert_array_equal(r["terminated"], r["t"] == 2)  # the step from t = 2 to t = 3 ends it
    assert not r["truncated"].any()
    steps_left = 3 - r["t"]
    np.testing.assert_allclose(r["returns"], (1 - gamma ** steps_left) / (1 - gamma), rtol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Box actions: the Gaussian policy samples and scores one distribution, the unclipped sample is learned from
# ---------------------------------------------------------------------------------------------------
def bounded_gaussian_actor():
    """A GaussianActor on 2-dimensional actions in [−2, 2] × [0, 1], with its mean squashed into the bounds, a
    last layer large enough that the squashing shows, and two different standard deviations (0.5 and 3; their
    log σ do not sum to 0, so a missing − log σ term shows)."""
    torch.manual_seed(0)
    actor = reinforce.GaussianActor(obs_dim=3, action_dim=2, hidden_size=8, log_std_init=0.0)
    actor.bound_mean(np.array([-2.0, 0.0]), np.array([2.0, 1.0]))
    with torch.no_grad():
        actor.mean[-1].weight.mul_(100.0)
        actor.log_std.copy_(torch.tensor([np.log(0.5), np.log(3.0)]))
    return actor


def test_gaussian_log_prob_is_the_normal_density_of_the_squashed_mean_summed_over_dimensions():
    actor, obs = bounded_gaussian_actor(), torch.randn(5, 3)
    actions = torch.randn(5, 2) * 3
    with torch.no_grad():
        mean = actor.mu(obs)
        log_prob, entropy = actor.log_prob_entropy(obs, actions)
        normal = torch.distributions.Normal(mean, actor.log_std.exp())
    assert not torch.allclose(mean, actor.mean(obs), atol=1e-2), "the test needs a mean that the squashing moves"
    assert torch.allclose(log_prob, normal.log_prob(actions).sum(-1), atol=1e-5)
    assert torch.allclose(entropy, normal.entropy().sum(-1), atol=1e-5)


def test_gaussian_samples_come_from_the_distribution_they_are_scored_under():
    """20,000 draws for one state: their mean and standard deviation are μ_θ(s) and σ per dimension, and the
    log-probability returned with each is that of N(μ_θ(s), σ²) at the draw."""
    actor, obs = bounded_gaussian_actor(), torch.randn(1, 3).expand(20_000, 3)
    torch.manual_seed(1)
    with torch.no_grad():
        actions, log_prob = actor.sample(obs)
        mean = actor.mu(obs[:1])[0]
    np.testing.assert_allclose(actions.mean(0).numpy(), mean.numpy(), atol=0.05)
    np.testing.assert_allclose(actions.std(0).numpy(), [0.5, 3.0], rtol=0.03)
    normal = torch.distributions.Normal(mean, torch.tensor([0.5, 3.0]))
    assert torch.allclose(log_prob, normal.log_prob(actions).sum(-1), atol=1e-4)


def test_train_learns_from_the_unclipped_sample_and_clips_only_what_the_env_gets(monkeypatch, tmp_path):
    """With σ = e ≈ 2.7 on CountTruncatedContinuous's actions in [−1, 1], most samples fall outside the bounds:
    the batch keeps them as drawn (their log-probability is that of N(μ, σ²) at them), the env gets them
    clipped."""
    stepped, original_step = [], reinforce.gym.wrappers.TimeLimit.step
    monkeypatch.setattr(reinforce.gym.wrappers.TimeLimit, "step",
                        lambda self, action: stepped.append(np.array(action)) or original_step(self, action))
    updates = spy_on(monkeypatch, "update")
    reinforce.train(reinforce.Args(env_id="CountTruncatedContinuous-v0", total_timesteps=20, num_episodes=2,
                                   log_std_init=1.0, eval_episodes=0, eval_every=0, save_model=False, run_dir=str(tmp_path),
                                   cuda=False))
    learned = np.concatenate([update_args[3][1].numpy() for update_args, _ in updates])[:, 0]
    played = np.array(stepped[:len(learned)])[:, 0]
    assert len(learned) == 20 and (np.abs(learned) > 1).sum() >= 5
    np.testing.assert_allclose(played, np.clip(learned, -1, 1), rtol=1e-6)


def test_reward_normalization_only_scales_the_rewards():
    """r / std(R) with the running std of the discounted return R: a reward of 0 stays 0 and a positive one
    stays positive (subtracting a running mean, as for observations, would turn CartPole's +1 a step into a
    penalty for living once the mean return exceeds 1)."""
    normalizer = reinforce.Normalizer(obs_dim=1, gamma=0.99, norm_obs=False, norm_reward=True)
    scaled = [normalizer.reward(1.0, done=(t % 100 == 99)) for t in range(300)]
    assert all(r > 0 for r in scaled)
    assert normalizer.reward(0.0, done=False) == 0.0
    returns = np.array([(1 - 0.99 ** (t % 100 + 1)) / 0.01 for t in range(300)])  # R after each step
    assert scaled[-1] == pytest.approx(1.0 / np.sqrt(returns.var() + 1e-8), rel=0.02)


# ---------------------------------------------------------------------------------------------------
# Behaviour on a task whose answer is known: a two-armed bandit
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_baseline", [True, False], ids=["baseline", "no_baseline"])
def test_training_on_a_two_armed_bandit_learns_to_pull_the_paying_arm(use_baseline, monkeypatch, tmp_path):
    """A short train() on the bandit (one-step episodes, 8 a batch), from a nearly uniform policy: π(1) must
    end above 0.9, and the baseline, regressed on the rewards of the policy's own actions, near the expected
    reward π(1) (a flipped policy loss makes π(1) fall; a flipped regression sends V away from the rewards)."""
    updates = spy_on(monkeypatch, "update")
    reinforce.train(reinforce.Args(env_id="TwoArmedBandit-v0", total_timesteps=1280, num_episodes=8,
                                   learning_rate=1e-2, anneal_lr=False, baseline=use_baseline, norm_reward=False,
                                   eval_episodes=1, save_model=False, run_dir=str(tmp_path), cuda=False))
    assert len(updates) == 1280 // 8
    (actor, baseline, *_), _ = updates[-1]
    with torch.no_grad():
        p_pull = actor.logits(torch.ones(1, 1)).softmax(-1)[0, 1].item()
        assert p_pull > 0.9
        if use_baseline:
            assert baseline(torch.ones(1, 1)).item() == pytest.approx(p_pull, abs=0.1)
