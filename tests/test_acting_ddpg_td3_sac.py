"""How ddpg.py, td3.py and sac.py act, watched through their own classes and train() (issue 26).

The update tests of test_ddpg_td3_sac.py check what the agents learn from a batch; these check how they behave
while they collect it, and in the final evaluation:
- random actions before learning_starts are uniform over the whole action space;
- ddpg and td3 add Gaussian exploration noise of σ = exploration_noise · (high − low) / 2 in env units to the
  action of the actor being trained, and clip the result to the bounds;
- sac acts with a sample of its own actor, and that sample is reparameterized: the gradient reaches the actor;
- the actor update is handed the learned critic(s), never the slow target copies; SAC's α falls while the
  entropy is above its target;
- the final evaluation and the eval curve take the mean action, with no noise and no sampling;
- the replay buffer draws only transitions it holds, before and after it wraps around, and stores the action
  the env received (clipped);
- only the first training episode is reset with the seed.

Most tests read one short run per script on SkewedBox-v0, an env registered below whose action bounds are
neither ±1 nor symmetric, so that an action left in [−1, 1] units or scaled by the wrong factor shows."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import ddpg
import sac
import td3
from conftest import record_training_resets

MODULES = [ddpg, td3, sac]
LOW, HIGH = np.array([-3.0, 1.0], dtype=np.float32), np.array([1.0, 9.0], dtype=np.float32)
HALF_RANGE, CENTRE = (HIGH - LOW) / 2, (HIGH + LOW) / 2  # (2, 4) and (−1, 5)


class SkewedBoxEnv(gym.Env):
    """Three observations drawn uniformly in [−1, 1] at every step, whatever the action; actions in the box
    [−3, 1] × [1, 9] (half-ranges 2 and 4, centre (−1, 5)); reward −‖(a − centre) / half-range‖², never an end
    (the registration's time limit cuts episodes at 50 steps). Every instance keeps the steps it was given, each
    (the observation the agent acted on, the action), in `steps`; `made` lists the instances in order."""

    made = []

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = gym.spaces.Box(LOW, HIGH, dtype=np.float32)
        self.steps = []
        SkewedBoxEnv.made.append(self)

    def draw(self):
        self.obs = self.np_random.uniform(-1.0, 1.0, size=3).astype(np.float32)
        return self.obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.draw().copy(), {}

    def step(self, action):
        action = np.array(action, dtype=np.float32)
        self.steps.append((self.obs.copy(), action))
        reward = -float(np.sum(((action - CENTRE) / HALF_RANGE) ** 2))
        return self.draw().copy(), reward, False, False, {}


gym.register("SkewedBox-v0", entry_point=SkewedBoxEnv, max_episode_steps=50)

RANDOM_STEPS, ACTING_STEPS, EVAL_EPISODES = 200, 150, 2
WATCHED = dict(env_id="SkewedBox-v0", total_timesteps=RANDOM_STEPS + ACTING_STEPS, learning_starts=RANDOM_STEPS,
               batch_size=16, buffer_size=1_000, hidden_size=8, log_frequency=100, eval_episodes=EVAL_EPISODES,
               eval_every=0, cuda=False, save_model=False)
EXPLORATION_NOISE = 0.1  # ddpg and td3: σ = 0.1 · (2, 4) = (0.2, 0.4) in env units


def watch_train(module, run_dir, **settings):
    """Train `module` on SkewedBox-v0 with WATCHED settings while spying on how it acts and what its updates get.
    Returns a dict:
      train, evaluation: the steps (obs, action) of the training env and of the evaluation's envs
      acting: one dict per call of the actor on a single observation, and per row of the evaluation's batches
              (never an update's batch):
              kind ("mu" for ddpg/td3's actor, "sample" for sac's forward, "mean" for sac's deterministic),
              actor (the module called), obs, action, and for sac the mean and log σ of the Gaussian then,
              evaluating (inside the final evaluation)
      noise_in_evaluation: calls of add_exploration_noise during the final evaluation (ddpg, td3)
      updates: (name, arguments by name, result) of every update_critic, update_actor, update_alpha call
      policy: the policy handed to the final evaluation"""
    record = dict(acting=[], noise_in_evaluation=0, updates=[], policy=None)
    evaluating = [False]

    def spy_actor(kind, original):
        def spy(actor, obs):
            out = original(actor, obs)
            if obs.dim() == 1 or evaluating[0]:  # one observation, or the evaluation's, one per episode
                rows = obs.view(-1, obs.shape[-1])
                with torch.no_grad():
                    actions = (out[0] if kind == "sample" else out).detach().reshape(len(rows), -1)
                    if module is sac:
                        hidden = actor.trunk(rows)
                        means = actor.mean(hidden).numpy().astype(np.float64)
                        log_stds = (actor.log_std(hidden).clamp(sac.LOG_STD_MIN, sac.LOG_STD_MAX)
                                    .numpy().astype(np.float64))
                for i, row in enumerate(rows):
                    entry = dict(kind=kind, actor=actor, obs=row.detach().numpy().copy(), evaluating=evaluating[0],
                                 action=actions[i].numpy().astype(np.float64))
                    if module is sac:
                        entry["mean"], entry["log_std"] = means[i], log_stds[i]
                    record["acting"].append(entry)
            return out
        return spy

    def spy_update(name, original):
        def spy(*args, **kwargs):
            names = original.__code__.co_varnames[:original.__code__.co_argcount]
            arguments = {**dict(zip(names, args)), **kwargs}
            before = arguments["log_alpha"].detach().clone() if name == "update_alpha" else None
            result = original(*args, **kwargs)
            record["updates"].append(dict(name=name, args=arguments, result=result, log_alpha_before=before))
            return result
        return spy

    def spy_noise(original):
        def spy(*args, **kwargs):
            record["noise_in_evaluation"] += evaluating[0]
            return original(*args, **kwargs)
        return spy

    def flagged_evaluate(original):
        def spy(policy, *args, **kwargs):
            record["policy"], evaluating[0] = policy, True
            try:
                return original(policy, *args, **kwargs)
            finally:
                evaluating[0] = False
        return spy

    settings = {**WATCHED, **({} if module is sac else dict(exploration_noise=EXPLORATION_NOISE)), **settings}
    record["learning_starts"], record["total_timesteps"] = settings["learning_starts"], settings["total_timesteps"]
    SkewedBoxEnv.made.clear()
    with pytest.MonkeyPatch.context() as patch:
        if module is sac:
            patch.setattr(sac.Actor, "forward", spy_actor("sample", sac.Actor.forward))
            patch.setattr(sac.Actor, "deterministic", spy_actor("mean", sac.Actor.deterministic))
        else:
            patch.setattr(module.Actor, "forward", spy_actor("mu", module.Actor.forward))
            patch.setattr(module, "add_exploration_noise", spy_noise(module.add_exploration_noise))
        for name in ("update_critic", "update_actor", "update_alpha"):
            if hasattr(module, name):
                patch.setattr(module, name, spy_update(name, getattr(module, name)))
        patch.setattr(module, "evaluate", flagged_evaluate(module.evaluate))
        module.train(module.Args(**settings, run_dir=str(run_dir)))
    assert len(SkewedBoxEnv.made) == 1 + EVAL_EPISODES, "expected one training env and one per evaluation episode"
    record["train"] = SkewedBoxEnv.made[0].steps
    # the evaluation's episodes are played side by side: its steps in the order the actor saw them
    record["evaluation"] = [step for steps in zip(*(env.steps for env in SkewedBoxEnv.made[1:])) for step in steps]
    return record


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """watched(module, **settings): the record of watch_train, one run per module and settings in this file."""
    runs = {}

    def get(module, **settings):
        key = (module.__name__, tuple(sorted(settings.items())))
        if key not in runs:
            runs[key] = watch_train(module, tmp_path_factory.mktemp(module.__name__), **settings)
        return runs[key]
    return get


def training_acts(record):
    """The training steps after learning_starts, each paired with the actor call that chose its action."""
    calls = [call for call in record["acting"] if not call["evaluating"]]
    steps = record["train"][record["learning_starts"]:]
    assert len(calls) == len(steps) == record["total_timesteps"] - record["learning_starts"], \
        "the actor must be asked once per step after learning_starts"
    for call, (obs, _) in zip(calls, steps):
        assert np.array_equal(call["obs"], obs), "the actor was not asked about the observation the agent acts on"
    return [(call, action.astype(np.float64)) for call, (_, action) in zip(calls, steps)]


# ---------------------------------------------------------------------------------------------------
# Before learning_starts: uniformly random actions over the whole box
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_random_actions_before_learning_starts_are_uniform_over_the_action_space(module, watched):
    """The first learning_starts actions are drawn uniformly from the action space: in the box [−3, 1] × [1, 9],
    spread evenly over it (each quarter of each side gets about a quarter of them), not in [−1, 1], not
    bunched around the centre, and not chosen by the actor."""
    record = watched(module)
    actions = np.array([action for _, action in record["train"][:RANDOM_STEPS]], dtype=np.float64)
    assert np.all(actions >= LOW) and np.all(actions <= HIGH), "a random action left the action space"
    position = (actions - LOW) / (HIGH - LOW)  # 0 at the lower bound, 1 at the upper one
    for dim in range(2):
        quarters = np.histogram(position[:, dim], bins=4, range=(0.0, 1.0))[0] / RANDOM_STEPS
        assert np.all((quarters > 0.15) & (quarters < 0.35)), f"dimension {dim}: fractions per quarter {quarters}"
    assert sum(not call["evaluating"] for call in record["acting"]) == ACTING_STEPS, \
        "the actor was asked for actions before learning_starts"


# ---------------------------------------------------------------------------------------------------
# ddpg and td3: Gaussian exploration noise in env units, around the actor's action, clipped to the bounds
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", [ddpg, td3], ids=lambda m: m.__name__)
def test_exploration_noise_is_gaussian_around_the_actor_action_with_sigma_in_env_units(module, watched):
    """After learning_starts each action is μ_θ(s) + N(0, σ²) with σ = exploration_noise · (high − low) / 2 in
    each dimension: here 0.1 · (2, 4) = (0.2, 0.4). The noise a − μ_θ(s) must average about 0 and have that
    spread: no noise, noise left in [−1, 1] units (σ = 0.1), or scaled by (high − low) (σ = 0.4, 0.8) fail, and
    so does one draw shared by both dimensions."""
    acts = training_acts(watched(module))
    noise = np.array([action - call["action"] for call, action in acts])
    sigma = EXPLORATION_NOISE * HALF_RANGE
    assert np.all(np.abs(noise.mean(axis=0)) < 4 * sigma / math.sqrt(ACTING_STEPS)), \
        f"the noise is not centred on the actor's action: mean {noise.mean(axis=0)}"
    spread = noise.std(axis=0)
    assert np.all(np.abs(spread / sigma - 1) < 0.2), f"noise std {spread}, expected {sigma}"
    # one draw for each dimension: a single draw scaled to both would make them move together (correlation 1;
    # independent draws give |r| < 0.5 with a margin of six standard errors at 150 steps)
    assert abs(np.corrcoef(noise.T)[0, 1]) < 0.5, "the noise of the two dimensions is correlated"


@pytest.mark.parametrize("module", [ddpg, td3], ids=lambda m: m.__name__)
def test_noisy_actions_are_clipped_to_the_bounds(module, watched):
    """With exploration_noise 3 (σ = 3 half-ranges) most noisy actions fall outside the box: each must be clipped
    to the bound of its own dimension, [−3, 1] and [1, 9], and the ones inside left as μ_θ(s) + noise."""
    acts = training_acts(watched(module, exploration_noise=3.0, learning_starts=16, total_timesteps=16 + 100))
    actions = np.array([action for _, action in acts])
    assert np.all(actions >= LOW) and np.all(actions <= HIGH), "a noisy action left the action space"
    at_low, at_high = actions == LOW, actions == HIGH
    assert np.all(at_low.mean(axis=0) > 0.2) and np.all(at_high.mean(axis=0) > 0.2), \
        "most noisy actions should have been clipped to one bound or the other, in each dimension"
    inside = ~(at_low | at_high)
    noise = np.array([action - call["action"] for call, action in acts])
    assert np.all(inside.mean(axis=0) > 0.1) and np.abs(noise[inside]).max() > 0.5, "the noise inside is missing"


# ---------------------------------------------------------------------------------------------------
# sac: its own samples explore, and the sample carries the gradient to the actor (reparameterization)
# ---------------------------------------------------------------------------------------------------
def test_sac_acts_with_samples_of_its_own_squashed_gaussian(watched):
    """After learning_starts sac acts with a = bias + scale · tanh(u), u ~ N(mean(s), σ(s)²) of its actor at that
    step: undoing the squashing and the scaling of the action the env received, (u − mean) / σ must be standard
    normal, independently in each dimension. Acting with the mean action (no exploration), a sample left in
    [−1, 1] units, or one ε shared by both dimensions, fails."""
    acts = training_acts(watched(sac))
    assert all(call["kind"] == "sample" for call, _ in acts), "sac acted without sampling from its actor"
    z = []
    for call, action in acts:
        u = np.arctanh((action - CENTRE) / HALF_RANGE)
        z.append((u - call["mean"]) / np.exp(call["log_std"]))
    z = np.array(z)
    assert np.all(np.abs(z.mean(axis=0)) < 4 / math.sqrt(ACTING_STEPS)), f"mean {z.mean(axis=0)}"
    assert np.all(np.abs(z.std(axis=0) - 1) < 0.2), f"std {z.std(axis=0)}"
    assert abs(np.corrcoef(z.T)[0, 1]) < 0.5, "one ε for both dimensions: the sample explores along a line"


def test_sac_actor_sample_carries_the_gradient_to_the_actor_reparameterization():
    """sac's Actor draws ã = bias + scale · tanh(mean + σ ε) with ε ~ N(0, 1) drawn apart from the parameters, so
    the sample itself is differentiable in θ: dã/d(mean) = scale (1 − tanh²u) and dã/d(log σ) = scale (1 −
    tanh²u) σ ε. A sample drawn with .sample() or detached carries no gradient; the actor loss could then only
    move the policy through log π, never toward actions of higher Q."""
    torch.manual_seed(0)
    actor = sac.Actor(3, gym.spaces.Box(LOW, HIGH, dtype=np.float32), hidden_size=8)
    obs = torch.randn(64, 3)
    actions, _ = actor(obs)
    assert actions.requires_grad, "the sampled action carries no gradient"
    actions.sum().backward()
    with torch.no_grad():
        hidden = actor.trunk(obs)
        mean = actor.mean(hidden)
        squashed = (actions - actor.action_bias) / actor.action_scale  # tanh(u)
        u = torch.atanh(squashed.double())
        slope = actor.action_scale.double() * (1 - squashed.double() ** 2)  # dã/du
    assert torch.allclose(actor.mean.bias.grad.double(), slope.sum(dim=0), rtol=1e-4)
    sigma_epsilon = u - mean.double()  # u = mean + σ ε
    assert torch.allclose(actor.log_std.bias.grad.double(), (slope * sigma_epsilon).sum(dim=0), rtol=1e-3,
                          atol=1e-4)
    assert actor.trunk[0].weight.grad is not None and actor.trunk[0].weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------
# The actor that acts is the one trained, and it is trained on the learned critics; SAC's α direction
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_actor_update_maximizes_the_learned_critics_and_the_trained_actor_acts(module, watched):
    """update_actor must be handed the learned critic(s), the ones update_critic fits, not the slow target copies
    (the actor would climb a stale estimate of Q); and the actor that chooses the actions must be the actor
    update_actor trains, not the target actor."""
    record = watched(module)
    critic_calls = [call["args"] for call in record["updates"] if call["name"] == "update_critic"]
    actor_calls = [call["args"] for call in record["updates"] if call["name"] == "update_actor"]
    assert critic_calls and actor_calls
    learned, target = critic_calls[0]["critic"], critic_calls[0]["critic_target"]
    assert learned is not target
    for args in actor_calls:
        assert args["critic"] is learned, "the actor update was not handed the learned critic(s)"
    trained = actor_calls[0]["actor"]
    assert all(args["actor"] is trained for args in actor_calls)
    assert all(call["actor"] is trained for call in record["acting"]), "the actions come from another actor"


def test_sac_alpha_falls_while_the_entropy_is_above_its_target(watched):
    """SAC-6: J(α) lowers α when the policy's entropy −E[log π] (in [−1, 1] units) is above the target −dim(A),
    here −2. The starting policy, σ ≈ 1 around the middle, has an entropy near +1: every one of the 150 α steps
    of the run must lower α."""
    record = watched(sac)
    log_scale = float(np.log(HALF_RANGE).sum())
    actor_results = [call["result"] for call in record["updates"] if call["name"] == "update_actor"]
    alpha_calls = [call for call in record["updates"] if call["name"] == "update_alpha"]
    assert len(actor_results) == len(alpha_calls) == ACTING_STEPS
    for (_, log_prob), call in zip(actor_results, alpha_calls):
        entropy = -(log_prob + log_scale).mean().item()
        assert entropy > -2.0, "the test expects an entropy above the target all along"
        assert call["result"].item() < call["log_alpha_before"].exp().item(), \
            f"α rose while the entropy {entropy:.2f} was above the target −2"


# ---------------------------------------------------------------------------------------------------
# The final evaluation: the mean action, with no noise and no sampling
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_evaluation_takes_the_mean_action_without_noise(module, watched):
    """The final evaluation plays the deterministic policy: every action the evaluation env receives is the
    actor's mean action μ_θ(s) (sac: bias + scale · tanh(mean(s))) as the actor computed it, the noise
    (add_exploration_noise) and sac's sampling forward are never called, and the same observation always gets
    the same action."""
    record = watched(module)
    evaluation = record["evaluation"]
    assert len(evaluation) == EVAL_EPISODES * 50
    calls = [call for call in record["acting"] if call["evaluating"]]
    assert record["noise_in_evaluation"] == 0, "the evaluation added exploration noise"
    assert all(call["kind"] != "sample" for call in calls), "the evaluation sampled from sac's actor"
    assert len(calls) == len(evaluation), "the evaluation did not ask the actor once per step"
    for call, (obs, action) in zip(calls, evaluation):
        assert np.array_equal(call["obs"], obs) and np.allclose(action, call["action"], atol=1e-6)
    obs = evaluation[0][0]
    first, again = record["policy"](obs), record["policy"](obs)
    assert np.array_equal(first, again), "the same observation got two different evaluation actions"
    actor = record["acting"][-1]["actor"]
    with torch.no_grad():
        obs_tensor = torch.as_tensor(obs)
        mean_action = actor.deterministic(obs_tensor) if module is sac else actor(obs_tensor)
    assert np.allclose(first, mean_action.numpy(), atol=1e-6)
    if module is sac:  # the squashed mean in env units, centre + half-range · tanh(mean(s)), for every step
        for call, (_, action) in zip(calls, evaluation):
            assert np.allclose(action, CENTRE + HALF_RANGE * np.tanh(call["mean"]), atol=1e-5), \
                "sac's evaluation action is not the squashed mean in env units"


# ---------------------------------------------------------------------------------------------------
# Replay: only stored transitions are drawn, before and after the buffer wraps around
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_replay_draws_only_the_transitions_it_holds(module):
    """sample() draws indices below the number of stored transitions: with 5 of 8 slots filled it never returns
    an empty slot (reward 0 here; the stored ones have rewards 1 to 5), and after 19 additions into 8 slots it
    returns exactly the 8 most recent transitions, each of them at some point."""
    buffer, rng = module.ReplayBuffer(8, obs_dim=1, action_dim=1), np.random.default_rng(0)

    def add(marker):
        buffer.add(np.array([marker]), np.array([0.0]), float(marker), np.array([marker + 0.5]), False)

    def drawn():
        rewards = np.concatenate([buffer.sample(16, rng, torch.device("cpu"))[2].numpy() for _ in range(100)])
        return set(rewards.tolist())

    for marker in range(1, 6):
        add(marker)
    assert drawn() == {1.0, 2.0, 3.0, 4.0, 5.0}, "an empty slot was drawn, or a stored one never"
    for marker in range(6, 20):
        add(marker)
    assert drawn() == {float(marker) for marker in range(12, 20)}, "after wrapping, not the 8 newest transitions"


# ---------------------------------------------------------------------------------------------------
# Breaks a fresh reviewer found the suite missed (issue 26, item 3)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ddpg", "td3", "sac"])
def test_gradient_steps_start_after_learning_starts_one_per_env_step(name, tmp_path, monkeypatch):
    """Random play fills the buffer for learning_starts steps; then one critic step per env step. Catches
    updates that start as soon as a batch fits (thousands of steps on a buffer of random play)."""
    module = __import__(name)
    steps = []
    update_critic = module.update_critic
    monkeypatch.setattr(module, "update_critic", lambda *a, **k: (steps.append(1), update_critic(*a, **k))[1])
    module.train(module.Args(total_timesteps=260, learning_starts=200, batch_size=16, buffer_size=1_000,
                             hidden_size=8, log_frequency=50, eval_episodes=0, cuda=False,
                             run_dir=str(tmp_path)))
    assert len(steps) == 60


def test_sac_keeps_log_std_within_its_bounds(monkeypatch):
    """log σ is clamped to [LOG_STD_MIN, LOG_STD_MAX] before σ is used, so that σ can neither explode nor
    vanish (and log π stays finite). Catches the clamp removed."""
    actor = sac.Actor(3, gym.spaces.Box(-2.0, 2.0, (1,)), hidden_size=8)
    seen = []
    squashed_log_prob = sac.squashed_log_prob
    monkeypatch.setattr(sac, "squashed_log_prob", lambda u, mean, log_std, scale: (
        seen.append(log_std.detach().clone()), squashed_log_prob(u, mean, log_std, scale))[1])
    obs = torch.ones(4, 3)
    for bias in (50.0, -50.0):
        with torch.no_grad():
            actor.log_std.weight.zero_()
            actor.log_std.bias.fill_(bias)
        action, log_prob = actor(obs)
        assert torch.isfinite(log_prob).all()
    assert torch.all(seen[0] == sac.LOG_STD_MAX) and torch.all(seen[1] == sac.LOG_STD_MIN)


# ---------------------------------------------------------------------------------------------------
# Breaks a second fresh reviewer found the suite missed (issue 28)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ddpg", "td3", "sac"])
def test_only_the_first_training_episode_is_reset_with_the_seed(name, tmp_path, monkeypatch):
    """env.reset(seed=seed) once, then reset() with no seed: reseeding every episode would replay the same start
    state each time. CountTruncatedContinuous-v0 cuts an episode every 5 steps, so 40 steps reset it 8 times."""
    module = __import__(name)
    seeds = record_training_resets(module, monkeypatch)
    module.train(module.Args(env_id="CountTruncatedContinuous-v0", total_timesteps=40, seed=7, learning_starts=16,
                             batch_size=16, buffer_size=100, hidden_size=8, log_frequency=20, eval_episodes=0,
                             eval_every=0, cuda=False, save_model=False, run_dir=str(tmp_path)))
    assert seeds == [7] + [None] * 8


@pytest.mark.parametrize("module", [ddpg, td3], ids=lambda m: m.__name__)
def test_the_buffer_stores_the_action_the_env_received(module, tmp_path, monkeypatch):
    """The replay buffer stores the clipped action the env stepped with, not the unclipped μ_θ(s) + noise: with
    exploration_noise 3 most actions are clipped, and each stored action must equal the one SkewedBoxEnv got."""
    stored, add = [], module.ReplayBuffer.add
    monkeypatch.setattr(module.ReplayBuffer, "add", lambda buffer, obs, action, *rest: (
        stored.append(np.array(action, dtype=np.float32)), add(buffer, obs, action, *rest))[1])
    SkewedBoxEnv.made.clear()
    module.train(module.Args(**{**WATCHED, "eval_episodes": 0}, exploration_noise=3.0, run_dir=str(tmp_path)))
    received = [action for _, action in SkewedBoxEnv.made[0].steps]
    assert len(stored) == len(received) == WATCHED["total_timesteps"]
    assert all(np.array_equal(s, r) for s, r in zip(stored, received)), "the buffer holds another action"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_the_eval_curve_plays_the_same_deterministic_policy_as_the_final_evaluation(module, tmp_path, monkeypatch):
    """eval_curve.csv follows the policy the final evaluation scores: the mean action, the same for the same
    observation, with no noise and no sampling. Catches a curve that plays the exploring policy."""
    policies = {}
    for name in ("curve", "evaluate"):
        original = getattr(module.Run, name)
        monkeypatch.setattr(module.Run, name, lambda run, step, policy, name=name, original=original: (
            policies.setdefault(name, policy), original(run, step, policy))[1])
    module.train(module.Args(**{**WATCHED, "eval_every": 100}, run_dir=str(tmp_path)))
    obs = np.random.default_rng(0).uniform(-1.0, 1.0, size=(5, 3)).astype(np.float32)
    for row in obs:
        first, again, final = policies["curve"](row), policies["curve"](row), policies["evaluate"](row)
        assert np.array_equal(first, again), "the curve's policy gave two actions for one observation"
        assert np.allclose(first, final, atol=1e-6), "the curve's policy is not the final evaluation's"
