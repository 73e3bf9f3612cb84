"""The math of a2c.py and ppo.py: GAE with terminated against truncated steps, the vector-env loop's final
observations and masks, log-probabilities, the clipped objective, the running statistics of the normalization,
and the Gaussian mean kept inside the action bounds (a2c.py and a3c.py); the update functions against their losses
written out by hand, what train() hands them, and a two-armed bandit that training must solve."""

import os

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_post_hook

import a2c
import a3c
import ppo
from conftest import TIME_LIMIT, CountValue, linear_actor_and_value, observations, reference_gae, snapshot

BOTH = pytest.mark.parametrize("module", [a2c, ppo], ids=["a2c", "ppo"])


# ---------------------------------------------------------------------------------------------------
# GAE
# ---------------------------------------------------------------------------------------------------
@BOTH
def test_gae_against_a_plain_loop_with_a_termination_and_a_truncation(module):
    rng = np.random.default_rng(0)
    steps, gamma, lam = 6, 0.9, 0.8
    rewards = rng.normal(size=(steps, 2)).astype(np.float32)
    values = rng.normal(size=(steps, 2)).astype(np.float32)
    next_values = np.concatenate([values[1:], rng.normal(size=(1, 2))]).astype(np.float32)
    terminated, truncated = np.zeros((steps, 2), bool), np.zeros((steps, 2), bool)
    terminated[2, 0] = True  # env 0's episode ends in the MDP at t = 2
    truncated[3, 1] = True  # env 1's episode is cut by a time limit at t = 3 ...
    next_values[3, 1] = 7.0  # ... so its successor's value is V(final observation), not V(next episode's start)
    next_values[2, 0] = 123.0  # a termination must ignore whatever value stands here
    dones = terminated | truncated

    advantages, returns = module.compute_gae(rewards, values, next_values, terminated, dones, gamma, lam)
    expected = reference_gae(rewards, values, next_values, terminated, dones, gamma, lam)
    np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(returns, expected + values, rtol=1e-5, atol=1e-5)
    # by hand: the last step of each episode is a one-step TD error
    assert advantages[2, 0] == pytest.approx(rewards[2, 0] - values[2, 0])
    assert advantages[3, 1] == pytest.approx(rewards[3, 1] + gamma * 7.0 - values[3, 1])
    assert advantages[2, 1] == pytest.approx(
        rewards[2, 1] + gamma * values[3, 1] - values[2, 1] + gamma * lam * advantages[3, 1], rel=1e-5)


# ---------------------------------------------------------------------------------------------------
# The vector-env loop: real final observations and the two masks
# ---------------------------------------------------------------------------------------------------
def recorded_rollouts(module, monkeypatch, tmp_path, env_id):
    """Train on a CountEnv with V(s) = t and return the arrays every compute_gae call received."""
    calls = []
    original_gae = module.compute_gae

    def spy(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
        calls.append(dict(values=values.copy(), next_values=next_values.copy(), terminated=terminated.copy(),
                          dones=dones.copy(), rewards=rewards.copy()))
        return original_gae(rewards, values, next_values, terminated, dones, gamma, gae_lambda)

    monkeypatch.setattr(module, "Critic", CountValue)
    monkeypatch.setattr(module, "compute_gae", spy)
    extra = dict(update_epochs=1, num_minibatches=1) if module is ppo else {}
    module.train(module.Args(env_id=env_id, total_timesteps=42, num_envs=2, num_steps=7, norm_obs=False,
                             norm_reward=False, eval_episodes=0, save_model=False, run_dir=str(tmp_path),
                             cuda=False, **extra))
    assert len(calls) == 3
    return {key: np.concatenate([call[key] for call in calls]) for key in calls[0]}


@BOTH
@pytest.mark.parametrize("kind", ["Discrete", "Continuous"])
def test_truncation_bootstraps_from_the_real_final_observation(module, kind, monkeypatch, tmp_path):
    r = recorded_rollouts(module, monkeypatch, tmp_path, f"CountTruncated{kind}-v0")
    # every successor is t + 1, also where the time limit hit (V(final obs) = TIME_LIMIT, not V(reset obs) = 0)
    np.testing.assert_array_equal(r["next_values"], r["values"] + 1)
    assert not r["terminated"].any(), "a time limit was stored as a termination"
    np.testing.assert_array_equal(r["dones"], r["values"] == TIME_LIMIT - 1)
    assert r["dones"].sum() == 2 * (21 // TIME_LIMIT)
    np.testing.assert_array_equal(r["rewards"], 1.0)


@BOTH
@pytest.mark.parametrize("kind", ["Discrete", "Continuous"])
def test_termination_stops_the_bootstrap(module, kind, monkeypatch, tmp_path):
    r = recorded_rollouts(module, monkeypatch, tmp_path, f"CountTerminated{kind}-v0")
    np.testing.assert_array_equal(r["terminated"], r["values"] == 2)  # the step from t = 2 to t = 3 ends it
    np.testing.assert_array_equal(r["dones"], r["terminated"])
    going_on = ~r["terminated"]
    np.testing.assert_array_equal(r["next_values"][going_on], r["values"][going_on] + 1)


# ---------------------------------------------------------------------------------------------------
# Log-probabilities and entropies of both policies
# ---------------------------------------------------------------------------------------------------
@BOTH
def test_categorical_log_prob_and_entropy(module):
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]])
    actions = torch.tensor([2, 0])
    log_probs = module.categorical_log_prob(logits, actions)
    z = np.exp(1) + np.exp(2) + np.exp(3)
    assert log_probs[0].item() == pytest.approx(3 - np.log(z), rel=1e-6)  # by hand
    reference = torch.distributions.Categorical(logits=logits)
    assert torch.allclose(log_probs, reference.log_prob(actions))
    assert torch.allclose(module.categorical_entropy(logits), reference.entropy())


@BOTH
def test_gaussian_log_prob_and_entropy(module):
    mean = torch.tensor([[0.5, -1.0], [0.0, 0.0]])
    log_std = torch.tensor([0.0, np.log(2.0)])
    actions = torch.tensor([[1.5, 0.0], [-0.3, 2.5]])
    log_probs = module.gaussian_log_prob(mean, log_std, actions)
    half_log_2pi = 0.5 * np.log(2 * np.pi)
    by_hand = (-0.5 * 1.0 ** 2 - half_log_2pi) + (-0.5 * (1.0 / 2.0) ** 2 - np.log(2.0) - half_log_2pi)
    assert log_probs[0].item() == pytest.approx(by_hand, rel=1e-6)
    reference = torch.distributions.Normal(mean, log_std.exp())
    assert torch.allclose(log_probs, reference.log_prob(actions).sum(-1))
    assert module.gaussian_entropy(log_std).item() == pytest.approx(reference.entropy()[0].sum().item(), rel=1e-6)


@pytest.mark.parametrize("module", [a2c, ppo, a3c], ids=["a2c", "ppo", "a3c"])
def test_gaussian_actor_uses_the_unclipped_sample_and_the_env_gets_it_clipped(module):
    torch.manual_seed(0)
    actor = module.GaussianActor(observations(module.GaussianActor, 3), action_dim=1, hidden_size=8,
                                 log_std_init=1.0)  # σ = e: wide
    obs = torch.zeros(500, 3)
    with torch.no_grad():
        actions, log_probs = actor.sample(obs)
        assert torch.allclose(log_probs, actor.log_prob_entropy(obs, actions)[0])
    space = gym.spaces.Box(-2.0, 2.0, shape=(1,), dtype=np.float32)
    assert (actions.abs() > 2).any(), "the sample itself is never clipped"
    sent = module.env_actions(actions.numpy(), space)
    assert np.abs(sent).max() == 2.0 and np.array_equal(sent, np.clip(actions.numpy(), -2, 2))


@pytest.mark.parametrize("module", [a2c, a3c], ids=["a2c", "a3c"])
def test_bound_mean_squashes_only_the_mean_into_the_bounds(module):
    torch.manual_seed(0)
    actor = module.GaussianActor(obs_dim=3, action_dim=2, hidden_size=8, log_std_init=0.0)
    obs = torch.randn(50, 3) * 100  # large inputs: the raw mean network's output leaves the bounds
    with torch.no_grad():
        nn.init.normal_(actor.mean[-1].weight, std=10.0)
        raw = actor.mean(obs)
        assert (raw.abs() > 5).any()
        low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
        actor.bound_mean(low, high)
        expected = torch.tensor([0.0, 0.5]) + torch.tensor([2.0, 0.5]) * torch.tanh(raw)  # center + half-width · tanh
        assert torch.allclose(actor.mode(obs), expected, atol=1e-6)
        assert (actor.mode(obs) >= torch.tensor(low, dtype=torch.float32)).all()
        assert (actor.mode(obs) <= torch.tensor(high, dtype=torch.float32)).all()
        actions, log_probs = actor.sample(obs)  # the sample is still an unsquashed Gaussian around that mean
        reference = torch.distributions.Normal(expected, 1.0).log_prob(actions).sum(-1)
        assert torch.allclose(log_probs, reference, atol=1e-5)
    assert set(actor.state_dict()) >= {"center", "half_width"}, "the bounds travel with the weights in model.pt"
    unbounded = module.GaussianActor(obs_dim=3, action_dim=1, hidden_size=8, log_std_init=0.0)
    unbounded.bound_mean(np.array([-np.inf]), np.array([np.inf]))  # infinite bounds: left unbounded
    assert unbounded.center is None


# ---------------------------------------------------------------------------------------------------
# PPO's clipped objective
# ---------------------------------------------------------------------------------------------------
def test_clipped_objective_has_no_gradient_where_the_ratio_is_clipped_in_the_advantages_direction():
    ratios = torch.tensor([1.5, 0.5, 1.5, 0.5, 1.1])
    advantages = torch.tensor([1.0, -1.0, -1.0, 1.0, 2.0])
    new_log_prob = ratios.log().requires_grad_()
    loss, approx_kl, clip_fraction = ppo.clipped_surrogate(new_log_prob, torch.zeros(5), advantages, 0.2)
    loss.backward()
    # samples 0 and 1: the ratio left [0.8, 1.2] on the side their advantage pushes it: clipped, no gradient.
    # The others take the unclipped branch: d/dlog π of −r Â / n is −r Â / n.
    expected_grad = torch.tensor([0.0, 0.0, 1.5 * 1.0, -0.5 * 1.0, -1.1 * 2.0]) / 5
    assert torch.allclose(new_log_prob.grad, expected_grad)
    expected_loss = -(1.2 * 1.0 + 0.8 * -1.0 + 1.5 * -1.0 + 0.5 * 1.0 + 1.1 * 2.0) / 5
    assert loss.item() == pytest.approx(expected_loss, rel=1e-6)
    assert clip_fraction.item() == pytest.approx(4 / 5)
    assert approx_kl.item() == pytest.approx(((ratios - 1) - ratios.log()).mean().item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------------
# Normalization: the running statistics (their checkpoint and their use by the evaluation and the
# time limit's bootstrap: test_acting_pg.py)
# ---------------------------------------------------------------------------------------------------
@BOTH
def test_running_mean_std_matches_numpy(module):
    rng = np.random.default_rng(1)
    batches = [rng.normal(3.0, 2.0, size=(n, 2)) for n in (5, 1, 17)]
    rms = module.RunningMeanStd((2,))
    for batch in batches:
        rms.update(batch)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, everything.mean(0), rtol=1e-4)
    np.testing.assert_allclose(rms.var, everything.var(0), rtol=1e-4)


# ---------------------------------------------------------------------------------------------------
# Per-env defaults
# ---------------------------------------------------------------------------------------------------
@BOTH
def test_per_env_defaults_fill_only_the_settings_left_unset(module):
    pendulum = module.with_env_defaults(module.Args(env_id="Pendulum-v1", gamma=0.5), gym.make("Pendulum-v1"))
    assert pendulum.gamma == 0.5  # given on the command line: kept
    assert pendulum.gae_lambda == module.ENV_DEFAULTS["Pendulum-v1"]["gae_lambda"]
    assert pendulum.total_timesteps == module.ENV_DEFAULTS["Pendulum-v1"]["total_timesteps"]
    # an env without its own row takes the row of the tuned env with the same kind of action space
    acrobot = module.with_env_defaults(module.Args(env_id="Acrobot-v1"), gym.make("Acrobot-v1"))
    assert acrobot.num_envs == module.ENV_DEFAULTS["CartPole-v1"]["num_envs"]
    filled_by_the_run = {"eval_episodes", "eval_every"}  # Run fills these in, from the env and the budget
    assert None not in [value for key, value in vars(acrobot).items() if key not in filled_by_the_run]


# ---------------------------------------------------------------------------------------------------
# Updates per rollout: A2C one gradient step, PPO update_epochs × num_minibatches
# ---------------------------------------------------------------------------------------------------
@BOTH
def test_gradient_steps_per_rollout(module, tmp_path):
    steps = []
    hook = register_optimizer_step_post_hook(lambda *_: steps.append(1))
    extra = dict(update_epochs=3, num_minibatches=4) if module is ppo else {}
    try:
        module.train(module.Args(total_timesteps=96, num_envs=2, num_steps=16, eval_episodes=0, save_model=False,
                                 run_dir=str(tmp_path), cuda=False, **extra))
    finally:
        hook.remove()
    rollouts = 96 // (2 * 16)
    assert len(steps) == (rollouts * 3 * 4 if module is ppo else rollouts)


# ---------------------------------------------------------------------------------------------------
# The update functions on a fixed batch, against the losses written out by hand
# ---------------------------------------------------------------------------------------------------
def linear_actor_critic(module):
    return linear_actor_and_value(module.CategoricalActor, module.Critic)


def fixed_batch(actor, n=4):
    """n ≤ 4 samples whose advantages differ from their returns. PPO's old log-probabilities are chosen so the
    ratios π_θ / π_θk start at 1.5, 0.5, 1.25 and 1.4: with ε = 0.3, the first two are clipped on the side
    their advantage pushes them (no gradient), the third is inside [0.7, 1.3] (and would be clipped with
    ε = 0.2) and the fourth is outside on the other side (gradient)."""
    obs = torch.tensor([[1.0, 0.5], [0.2, 1.0], [0.6, -0.4], [-0.3, 0.8]])
    actions = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():  # log π_θ(a|s) written out: log softmax(W s)_a
        log_pi = (obs @ actor.logits.weight.T).log_softmax(-1)[torch.arange(4), actions]
    batch = dict(obs=obs, actions=actions, old_log_probs=log_pi - torch.tensor([1.5, 0.5, 1.25, 1.4]).log(),
                 advantages=torch.tensor([1.0, -0.5, 2.0, -1.5]), returns=torch.tensor([0.7, -0.2, 1.1, 0.4]))
    return {key: value[:n] for key, value in batch.items()}


def run_update(module, actor, critic, optimizer, batch, coefs):
    """One call of the script's update function: a2c's update() or ppo's ppo_update()."""
    common = dict(ent_coef=coefs["ent_coef"], vf_coef=coefs["vf_coef"], max_grad_norm=1e6,
                  norm_adv=coefs["norm_adv"])  # max_grad_norm: no clipping, the step is lr · gradient
    if module is a2c:
        return a2c.update(actor, critic, optimizer,
                          (batch["obs"], batch["actions"], batch["advantages"], batch["returns"]), **common)
    return ppo.ppo_update(actor, critic, optimizer, (batch["obs"], batch["actions"], batch["old_log_probs"],
                                                     batch["advantages"], batch["returns"]),
                          clip_coef=coefs["clip_coef"], update_epochs=coefs["epochs"], num_minibatches=1,
                          **common)


def losses_by_hand(W, w, batch, coefs, ppo_objective):
    """The loss of A2C-3/A2C-4 or PPO-4/PPO-5 at logits = W s, V(s) = w · s, written out: the advantages
    normalized to mean 0, std 1 (left as they are when there is a single sample), then
      A2C: −mean log π(a|s) Â       PPO: −mean min(r Â, clip(r, 1−ε, 1+ε) Â), r = exp(log π(a|s) − log π_θk(a|s))
    − ent_coef · mean entropy + vf_coef · mean (V(s) − R̂)². Returns the total and its three parts."""
    obs, actions, advantages = batch["obs"], batch["actions"], batch["advantages"]
    pi = torch.distributions.Categorical(logits=obs @ W.T)
    if coefs["norm_adv"] and len(advantages) > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    if ppo_objective:
        ratio = (pi.log_prob(actions) - batch["old_log_probs"]).exp()
        clipped = ratio.clamp(1 - coefs["clip_coef"], 1 + coefs["clip_coef"])
        policy_loss = -torch.min(ratio * advantages, clipped * advantages).mean()
    else:
        policy_loss = -(pi.log_prob(actions) * advantages).mean()
    value_loss = ((obs @ w - batch["returns"]) ** 2).mean()
    entropy = pi.entropy().mean()
    return policy_loss - coefs["ent_coef"] * entropy + coefs["vf_coef"] * value_loss, (policy_loss, value_loss,
                                                                                        entropy)


def sgd_by_hand(W, w, batch, coefs, ppo_objective, lr, steps):
    """`steps` plain gradient steps θ ← θ − lr ∇loss on losses_by_hand; returns W, w and the parts of the loss
    before the last step (what the update functions return)."""
    for _ in range(steps):
        W, w = W.detach().requires_grad_(), w.detach().requires_grad_()
        loss, parts = losses_by_hand(W, w, batch, coefs, ppo_objective)
        grad_W, grad_w = torch.autograd.grad(loss, (W, w))
        W, w = W - lr * grad_W, w - lr * grad_w
    return W.detach(), w.detach(), [part.detach() for part in parts]


@BOTH
@pytest.mark.parametrize("n", [4, 1], ids=["4_samples", "1_sample"])
def test_update_is_plain_gradient_steps_on_the_losses_written_out(module, n):
    """With plain SGD the update must move W (actor) and w (critic) by −lr ∇ of the loss written out in
    losses_by_hand, and return its parts. Catches a sign flipped on the policy loss, the value loss or the
    entropy bonus (wherever the total is formed), the returns used in place of the advantages, and in PPO:
    min/max swapped, the ratio inverted, ε ignored, the old log-probabilities recomputed with the current
    policy (ratio 1: no clipping), each of PPO's 2 epochs not taking its own step. With a single sample the
    advantage is left unnormalized: the parameters stay finite (std() of one sample is NaN)."""
    actor, critic = linear_actor_critic(module)
    batch = fixed_batch(actor, n)
    coefs = dict(ent_coef=0.3, vf_coef=0.5, norm_adv=True, clip_coef=0.3, epochs=2)
    lr = 0.1
    W, w = actor.logits.weight.detach().clone(), critic.net.weight.detach().clone().squeeze(0)
    optimizer = torch.optim.SGD(list(actor.parameters()) + list(critic.parameters()), lr=lr)
    returned = run_update(module, actor, critic, optimizer, batch, coefs)
    expected_W, expected_w, expected_parts = sgd_by_hand(W, w, batch, coefs, ppo_objective=module is ppo, lr=lr,
                                                         steps=coefs["epochs"] if module is ppo else 1)
    assert torch.isfinite(actor.logits.weight).all() and torch.isfinite(critic.net.weight).all()
    assert torch.allclose(actor.logits.weight, expected_W, atol=1e-6)
    assert torch.allclose(critic.net.weight.squeeze(0), expected_w, atol=1e-6)
    assert not torch.allclose(expected_W, W, atol=1e-3) and not torch.allclose(expected_w, w, atol=1e-3)
    for got, expected in zip(returned[:3], expected_parts):  # policy loss, value loss, mean entropy
        assert got.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)


@BOTH
def test_the_gradient_is_clipped_to_max_grad_norm_before_the_step(module):
    """With plain SGD and one step, a clipped update moves the parameters by lr · max_grad_norm along the
    unclipped step's direction. Catches the clipping removed, or applied after the step."""
    actor, critic = linear_actor_critic(module)
    batch = fixed_batch(actor)
    coefs = dict(ent_coef=0.3, vf_coef=0.5, norm_adv=True, clip_coef=0.3, epochs=1)
    lr, max_grad_norm = 0.1, 1e-3
    before = torch.cat([p.detach().flatten().clone() for p in [*actor.parameters(), *critic.parameters()]])
    W, w = actor.logits.weight.detach().clone(), critic.net.weight.detach().clone().squeeze(0)
    unclipped_W, unclipped_w, _ = sgd_by_hand(W, w, batch, coefs, ppo_objective=module is ppo, lr=lr, steps=1)
    unclipped = torch.cat([unclipped_W.flatten(), unclipped_w.flatten()]) - torch.cat([W.flatten(), w.flatten()])
    assert unclipped.norm() > 10 * lr * max_grad_norm, "the test needs a gradient well above the bound"
    optimizer = torch.optim.SGD([*actor.parameters(), *critic.parameters()], lr=lr)
    common = dict(ent_coef=coefs["ent_coef"], vf_coef=coefs["vf_coef"], max_grad_norm=max_grad_norm,
                  norm_adv=True)
    if module is a2c:
        a2c.update(actor, critic, optimizer,
                   (batch["obs"], batch["actions"], batch["advantages"], batch["returns"]), **common)
    else:
        ppo.ppo_update(actor, critic, optimizer, (batch["obs"], batch["actions"], batch["old_log_probs"],
                                                  batch["advantages"], batch["returns"]),
                       clip_coef=0.3, update_epochs=1, num_minibatches=1, **common)
    after = torch.cat([p.detach().flatten() for p in [*actor.parameters(), *critic.parameters()]])
    step = after - before
    assert step.norm().item() == pytest.approx(lr * max_grad_norm, rel=1e-3)
    assert torch.nn.functional.cosine_similarity(step, unclipped, dim=0).item() > 0.999


def test_ppo_shuffles_the_rollout_into_new_mini_batches_every_epoch(monkeypatch):
    """PPO-5: every epoch visits each sample once, in mini-batches drawn at random anew (consecutive steps
    are correlated). Catches mini-batches cut from the rollout in its time order, or the same ones each
    epoch."""
    actor, critic = linear_actor_critic(ppo)
    obs = torch.arange(16, dtype=torch.float32).repeat(2, 1).T / 16  # sample i is recognizable by obs[i, 0]
    batch = (obs, torch.zeros(16, dtype=torch.long), torch.zeros(16), torch.ones(16), torch.zeros(16))
    seen = []
    log_prob_entropy = actor.log_prob_entropy
    monkeypatch.setattr(actor, "log_prob_entropy", lambda o, a: (
        seen.append(sorted(round(float(x) * 16) for x in o[:, 0])), log_prob_entropy(o, a))[1])
    torch.manual_seed(0)
    optimizer = torch.optim.SGD([*actor.parameters(), *critic.parameters()], lr=1e-3)
    ppo.ppo_update(actor, critic, optimizer, batch, clip_coef=0.2, ent_coef=0.0, vf_coef=0.5,
                   max_grad_norm=1.0, norm_adv=False, update_epochs=3, num_minibatches=4)
    assert len(seen) == 12 and all(len(mb) == 4 for mb in seen)
    epochs = [seen[4 * e:4 * e + 4] for e in range(3)]
    for epoch in epochs:
        assert sorted(i for mb in epoch for i in mb) == list(range(16)), "an epoch missed or repeated samples"
    in_order = [list(range(4 * k, 4 * k + 4)) for k in range(4)]
    assert all(epoch != in_order for epoch in epochs), "mini-batches cut in the rollout's time order"
    assert epochs[0] != epochs[1] != epochs[2], "the same mini-batches every epoch"


@BOTH
def test_the_entropy_bonus_raises_the_entropy(module):
    """With all advantages 0 and no critic loss, only the entropy bonus moves the policy: a few updates must
    make a far-from-uniform policy more uniform (a flipped bonus sign lowers the entropy)."""
    actor, critic = linear_actor_critic(module)
    with torch.no_grad():
        actor.logits.weight.mul_(2)
    batch = dict(fixed_batch(actor), advantages=torch.zeros(4))
    coefs = dict(ent_coef=0.5, vf_coef=0.0, norm_adv=False, clip_coef=0.2, epochs=1)
    optimizer = torch.optim.SGD(actor.parameters(), lr=2.0)
    entropies = []
    for _ in range(5):
        entropies.append(run_update(module, actor, critic, optimizer, batch, coefs)[2].item())
    assert entropies == sorted(entropies) and entropies[-1] > entropies[0] + 0.05


# ---------------------------------------------------------------------------------------------------
# What train() hands the update functions
# ---------------------------------------------------------------------------------------------------

def spy_on(monkeypatch, module, name, also=None):
    """Replace module.name by a function that records a snapshot of the arguments of every call (and also(*args)
    if given, computed before the call) and then calls the original. Returns the list of the recordings."""
    calls, original = [], getattr(module, name)

    def spy(*args, **kwargs):
        calls.append((snapshot(args), snapshot(kwargs), also(*args) if also else None))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def update_name(module):
    return "update" if module is a2c else "ppo_update"


def stored_log_probs_by_the_policy(actor, critic, optimizer, batch, *rest):
    """log π_θk(a|s) of the batch's samples, by the actor as it is when the update starts (still π_θk)."""
    with torch.no_grad():
        return actor.log_prob_entropy(batch[0], batch[1])[0]


@BOTH
def test_train_gives_the_update_the_gae_of_its_rollout_with_args_gamma(module, monkeypatch, tmp_path):
    """Spy on compute_gae and on the update during a short run with an unusual γ = 0.77: the advantages and
    returns the update gets must be GAE(γ = 0.77, λ) of the rollout, computed here by a plain loop (catches γ
    ignored or replaced at the call site and the returns passed as advantages), the reward normalization
    must discount by the same γ, and PPO must get ε, its epochs and mini-batches from Args and the log-probabilities
    of the policy that collected the rollout."""
    gaes = spy_on(monkeypatch, module, "compute_gae")
    updates = spy_on(monkeypatch, module, update_name(module),
                     also=stored_log_probs_by_the_policy if module is ppo else None)
    normalizers = spy_on(monkeypatch, module, "Normalizer")
    extra = dict(update_epochs=3, num_minibatches=2, clip_coef=0.13) if module is ppo else {}
    module.train(module.Args(total_timesteps=64, num_envs=2, num_steps=8, gamma=0.77, gae_lambda=0.9,
                             norm_reward=True, eval_episodes=0, save_model=False, run_dir=str(tmp_path),
                             cuda=False, **extra))
    assert len(gaes) == len(updates) == 4
    assert [args[2] for args, _, _ in normalizers] == [0.77], "the reward normalization's γ is not Args'"
    for (gae_args, _, _), (update_args, update_kwargs, log_probs_now) in zip(gaes, updates):
        rewards, values, next_values, terminated, dones = gae_args[:5]
        expected = reference_gae(rewards, values, next_values, terminated, dones, gamma=0.77, lam=0.9)
        advantages, returns = update_args[3][-2:]
        np.testing.assert_allclose(advantages.numpy(), expected.reshape(-1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(returns.numpy(), (expected + values).reshape(-1), rtol=1e-5, atol=1e-5)
        if module is ppo:
            settings = [update_kwargs[k] for k in ("clip_coef", "update_epochs", "num_minibatches")]
            assert settings == [0.13, 3, 2]
            torch.testing.assert_close(update_args[3][2], log_probs_now)


# ---------------------------------------------------------------------------------------------------
# Behaviour on a task whose answer is known: a two-armed bandit
# ---------------------------------------------------------------------------------------------------
@BOTH
def test_training_on_a_two_armed_bandit_learns_to_pull_the_paying_arm(module, monkeypatch, tmp_path):
    """A short train() on the bandit, from a nearly uniform policy: π(1) must end above 0.9, and the critic
    V(s), regressed on the rewards of the policy's own actions, near the expected reward π(1) (a flipped
    policy loss makes π(1) fall; a flipped critic loss sends V away from the rewards)."""
    updates = spy_on(monkeypatch, module, update_name(module))
    extra = dict(update_epochs=4, num_minibatches=2) if module is ppo else {}
    module.train(module.Args(env_id="TwoArmedBandit-v0", total_timesteps=1280, num_envs=4, num_steps=8,
                             learning_rate=1e-2, anneal_lr=False, eval_episodes=1, save_model=False,
                             run_dir=str(tmp_path), cuda=False, **extra))
    (actor, critic, *_), _, _ = updates[-1]
    with torch.no_grad():
        p_pull = actor.logits(torch.ones(1, 1)).softmax(-1)[0, 1].item()
        value = critic(torch.ones(1, 1)).item()
    assert p_pull > 0.9
    assert value == pytest.approx(p_pull, abs=0.1)


# ---------------------------------------------------------------------------------------------------
# A batch (A2C) or mini-batch (PPO) of a single sample
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module, settings", [
    (a2c, dict(num_envs=1, num_steps=1, total_timesteps=40)),
    (ppo, dict(num_envs=2, num_steps=8, update_epochs=2, num_minibatches=16, total_timesteps=64)),
], ids=["a2c", "ppo"])
def test_a_single_sample_batch_keeps_every_parameter_finite(module, settings, tmp_path):
    """Normalizing the advantages of one sample divides by its std(), NaN: the settings allow such batches
    (num_envs = num_steps = 1 in A2C, num_minibatches = num_envs · num_steps in PPO), and then every weight
    turned NaN silently. The saved actor and critic must stay finite."""
    summary = module.train(module.Args(norm_adv=True, eval_episodes=0, run_dir=str(tmp_path), cuda=False,
                                       **settings))
    checkpoint = torch.load(os.path.join(summary["run_dir"], "model.pt"), weights_only=True)
    for part in ("actor", "critic"):
        for name, weights in checkpoint[part].items():
            assert torch.isfinite(weights).all(), f"{part}.{name} is not finite"
