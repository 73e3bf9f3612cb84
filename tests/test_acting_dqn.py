"""How the DQN family acts (dqn, double_dqn, dueling_dqn, per_dqn, rainbow), watched through each script's own
train(): the ε-greedy coin and the linear ε schedule, which network picks the greedy action, NoisyNet's noise
while acting and in the evaluation, the final evaluation's greedy policy, and which transitions replay draws.

One short CartPole-v1 run per script is watched by spies and shared by the tests below:
- train()'s np.random.Generator is wrapped: each ε-greedy coin (a scalar rng.random()) returns a value the test
  chose, just below or just above the ε the schedule gives at that step, so a comparison the wrong way round or
  an ε from another step changes the action at once;
- the environment is wrapped: at each step it records the observation the agent acted on, the action, whether
  env.action_space.sample() chose it, and what the online and target networks say at that observation;
- every Q-network train() builds records the calls that score one observation (a decision to act);
- the buffer's sample() records the buffer's size and the transitions it returned.
The schedule goes from ε = 1 to ε = 1/2 over the first 64 of 256 steps: every ε is a multiple of 1/128, exact
in floating point, and a step's ε differs from its neighbours' by 1/128, far more than the ±1/1000 of the coin.
"""

import copy
import csv
import importlib
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import record_training_resets

STEPS, DECAY, START_E, END_E = 256, 64, 1.0, 0.5
COIN_OFFSET = 1e-3
SETTINGS = dict(total_timesteps=STEPS, exploration_fraction=DECAY / STEPS, start_e=START_E, end_e=END_E,
                learning_starts=96, batch_size=16, buffer_size=200, hidden_size=8, target_network_frequency=64,
                log_frequency=32, eval_episodes=3, eval_every=0, cuda=False, save_model=False)
# id: (script, Args overrides). The spy makes the target network answer −Q: its argmax is the worst action of
# its copy of the online network, so an action taken from the wrong network shows at once.
RUNS = {
    "dqn": ("dqn", {}),
    "double_dqn": ("double_dqn", {}),
    "dueling_dqn": ("dueling_dqn", {}),
    "per_dqn": ("per_dqn", {}),
    "rainbow": ("rainbow", {}),  # NoisyNet explores, ε = 0
    "rainbow-no-noisy": ("rainbow", dict(noisy=False)),  # plain layers and DQN's ε-greedy schedule
}
EPSILON_GREEDY = [run for run in RUNS if run != "rainbow"]


def expected_epsilon(step: int) -> float:
    """ε at step t: START_E at t = 0, down in a straight line to END_E at t = DECAY, then END_E."""
    return START_E - (START_E - END_E) * min(step, DECAY) / DECAY


def planned_coin(step: int, noisy: bool) -> float:
    """The value the ε-greedy coin returns at step t: ε(t) − 1/1000 on odd steps (act at random), ε(t) + 1/1000
    on even steps (act greedily); with NoisyNet ε = 0, and the coin is 0 or 1/1000 (act greedily)."""
    epsilon = 0.0 if noisy else expected_epsilon(step)
    return max(0.0, epsilon + (-COIN_OFFSET if step % 2 else COIN_OFFSET))


class Watch:
    """What one train() did, step by step; filled by the spies of watch_train()."""

    def __init__(self, noisy: bool):
        self.noisy, self.phase = noisy, "train"
        self.coins = []  # (phase, value) of each scalar rng.random()
        self.steps = []  # one dict per env step, training and evaluation
        self.networks, self.online = [], None  # every QNetwork built; the one train() saves as q_network
        self.decisions = []  # (phase, network) for each forward() on a single observation, or in the evaluation
        self.samples = []  # (buffer size, capacity, every sampled row is one of the stored ones)
        self.sampled = False  # env.action_space.sample() was called since the last step
        self.quiet = False  # the spies' own forward() calls are not the agent's
        self.copied_into = None  # the network train() copies the online one into: the target network
        self.metrics = []

    @property
    def target(self):
        return next(net for net in self.networks if net is not self.online)

    def steps_of(self, phase):
        return [step for step in self.steps if step["phase"] == phase]

    def act(self, phase, obs, action):
        """Called by the env just before it steps: what the networks say at the observation acted on."""
        self.quiet = True
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32)
            q, q_target = self.online(x).flatten(), self.target(x).flatten()
            step = dict(phase=phase, t=len(self.steps_of(phase)) + 1, action=int(action), sampled=self.sampled,
                        coins=len([c for c in self.coins if c[0] == phase]),
                        coin=self.coins[-1][1] if self.coins else None,
                        greedy=int(q.argmax()), target_greedy=int(q_target.argmax()))
            layers = [m for m in self.online.modules() if type(m).__name__ == "NoisyLinear"]
            if layers:
                step["noise_on"] = all(layer.training for layer in layers)
                step["noise"] = [torch.cat([layer.epsilon_in, layer.epsilon_out]).clone() for layer in layers]
                step["mean_greedy"] = int(copy.deepcopy(self.online).eval()(x).flatten().argmax())
                if phase == "eval":  # new noise must not change the evaluated Q
                    self.online.reset_noise()
                    step["same_q_after_new_noise"] = torch.equal(self.online(x).flatten(), q)
        self.steps.append(step)
        self.sampled = self.quiet = False


class ActingSpy(gym.Wrapper):
    """An env that tells the Watch about every action taken on it, and whether sample() chose it."""

    def __init__(self, env, watch: Watch, phase: str):
        super().__init__(env)
        self.watch, self.phase, self.last_obs = watch, phase, None
        space, sample = env.action_space, env.action_space.sample

        def recorded_sample(*positional, **named):
            watch.sampled = True
            return sample(*positional, **named)

        space.sample = recorded_sample

    def reset(self, **named):
        self.last_obs, info = self.env.reset(**named)
        return self.last_obs, info

    def step(self, action):
        self.watch.act(self.phase, self.last_obs, action)
        self.last_obs, *rest = self.env.step(action)
        return (self.last_obs, *rest)


class PlannedCoins:
    """train()'s np.random.Generator, but each scalar rng.random() (the ε-greedy coin) returns the planned value
    (0 after training: any ε > 0 in the evaluation acts at random). Everything else goes to the real one."""

    def __init__(self, generator, watch: Watch):
        self.generator, self.watch = generator, watch

    def random(self, size=None, *positional, **named):
        if size is not None:  # a batch of draws (prioritized replay's), not the coin
            return self.generator.random(size, *positional, **named)
        watch = self.watch
        value = planned_coin(len(watch.coins) + 1, watch.noisy) if watch.phase == "train" else 0.0
        watch.coins.append((watch.phase, value))
        return value

    def __getattr__(self, name):
        return getattr(self.generator, name)


def watch_train(run_id: str, run_dir) -> Watch:
    name, overrides = RUNS[run_id]
    module = importlib.import_module(name)
    args = module.Args(**SETTINGS, **overrides, run_dir=str(run_dir))
    watch = Watch(noisy=getattr(args, "noisy", False))
    buffer_class = module.PrioritizedReplayBuffer if hasattr(module, "PrioritizedReplayBuffer") else \
        module.ReplayBuffer
    original = dict(make_env=module.make_env, evaluate=module.evaluate, save=module.Run.save,
                    sample=buffer_class.sample, default_rng=np.random.default_rng)

    class WatchedQNetwork(module.QNetwork):
        def __init__(self, *positional, **named):
            super().__init__(*positional, **named)
            watch.networks.append(self)

        def load_state_dict(self, *positional, **named):
            watch.copied_into = self  # φ' ← φ: this is the target network
            return super().load_state_dict(*positional, **named)

        def forward(self, obs):
            if not watch.quiet and (watch.phase == "eval" or obs.dim() == 1 or len(obs) == 1):
                watch.decisions.append((watch.phase, self))
            q = super().forward(obs)
            return -q if self is watch.copied_into else q  # the target network prefers the worst action

    def make_env(env_id, training=True, **options):  # evaluate()'s envs (training=False) are watched below
        env = original["make_env"](env_id, training, **options)
        return ActingSpy(env, watch, "train") if training else env

    def evaluate(policy, new_env, episodes, seed):
        watch.phase = "eval"
        return original["evaluate"](policy, lambda: ActingSpy(new_env(), watch, "eval"), episodes, seed)

    def save(self, **parts):
        watch.online = parts["q_network"]
        return original["save"](self, **parts)

    def sample(self, *positional, **named):
        drawn = original["sample"](self, *positional, **named)
        stored = self.obs[: self.size]
        rows = drawn[0].numpy()
        found = (rows[:, None, :] == stored[None, :, :]).all(-1).any(-1).all()
        watch.samples.append((self.size, self.capacity, bool(found)))
        return drawn

    made = []

    def default_rng(*positional, **named):
        generator = original["default_rng"](*positional, **named)
        made.append(generator)
        return PlannedCoins(generator, watch) if len(made) == 1 else generator

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "QNetwork", WatchedQNetwork)
        patch.setattr(module, "make_env", make_env)
        patch.setattr(module, "evaluate", evaluate)
        patch.setattr(module.Run, "save", save)
        patch.setattr(buffer_class, "sample", sample)
        patch.setattr(np.random, "default_rng", default_rng)
        result = module.train(args)
    with open(os.path.join(result["run_dir"], "metrics.csv"), newline="") as f:
        watch.metrics = list(csv.DictReader(f))
    assert len(watch.networks) == 2 and watch.online in watch.networks
    return watch


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """watched(run_id): the Watch of that run, trained once for the whole module."""
    cache = {}

    def get(run_id):
        if run_id not in cache:
            cache[run_id] = watch_train(run_id, tmp_path_factory.mktemp(run_id))
        return cache[run_id]

    return get


# ---------------------------------------------------------------------------------------------------
# DQN-1: the ε-greedy coin and the ε schedule
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("run_id", EPSILON_GREEDY)
def test_acts_at_random_exactly_when_the_coin_falls_below_the_linear_epsilon_of_that_step(run_id, watched):
    """At every training step t the agent flips one coin u and takes env.action_space.sample() exactly when
    u < ε(t), with ε(t) going linearly from start_e to end_e over exploration_fraction × total_timesteps steps,
    then staying at end_e. The coin lands 1/1000 below ε(t) on odd steps and 1/1000 above on even ones: a
    comparison the wrong way round, an ε taken at step t ± 1, over another duration or without its floor all
    change some action. The ε logged in metrics.csv is the schedule's too."""
    watch = watched(run_id)
    steps = watch.steps_of("train")
    assert [step["t"] for step in steps] == list(range(1, STEPS + 1))
    for step in steps:
        t = step["t"]
        assert step["coins"] == t, f"step {t}: one ε-greedy coin a step"
        assert step["sampled"] == (step["coin"] < expected_epsilon(t)), (
            f"step {t}: coin {step['coin']}, ε(t) = {expected_epsilon(t)}, acted at random: {step['sampled']}")
    assert {step["sampled"] for step in steps if step["t"] > DECAY} == {True, False}, "the floor was not tried"
    assert watch.metrics, "no metrics logged"
    for row in watch.metrics:
        assert float(row["epsilon"]) == pytest.approx(expected_epsilon(int(row["global_step"])))


def test_noisy_rainbow_never_acts_at_random(watched):
    """With NoisyNet (RAINBOW-6) the noisy Q-network explores and ε is 0: even a coin of 0 never gives a
    random action, and metrics.csv logs ε = 0."""
    watch = watched("rainbow")
    steps = watch.steps_of("train")
    assert len(steps) == STEPS and min(step["coin"] for step in steps) == 0.0
    assert not any(step["sampled"] for step in steps), "NoisyNet acted ε-greedily"
    assert watch.metrics and all(float(row["epsilon"]) == 0.0 for row in watch.metrics)


# ---------------------------------------------------------------------------------------------------
# DQN-1: the greedy action comes from the online network
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("run_id", list(RUNS))
def test_greedy_actions_come_from_the_online_network_never_the_target(run_id, watched):
    """Every action not drawn at random is argmax_a Q_φ(s, a) of the online network at the observation acted
    on (with Rainbow's noise of that step); the target network never scores a single observation. The spy
    makes the target network answer −Q, so the two networks disagree at almost every step: an action taken
    from φ' would show there."""
    watch = watched(run_id)
    greedy = [step for step in watch.steps_of("train") if not step["sampled"]]
    assert greedy, "no greedy step to check"
    for step in greedy:
        assert step["action"] == step["greedy"], f"step {step['t']}: not the online network's argmax"
    assert sum(step["target_greedy"] != step["greedy"] for step in greedy) > len(greedy) / 2
    assert not [phase for phase, net in watch.decisions if net is watch.target], "the target network chose actions"
    assert any(net is watch.online for _, net in watch.decisions)


# ---------------------------------------------------------------------------------------------------
# RAINBOW-6: NoisyNet's noise is live while acting and off in the evaluation
# ---------------------------------------------------------------------------------------------------
def test_noisy_rainbow_acts_on_noise_drawn_anew_at_every_step(watched):
    """While training, every noisy layer of the online network is in train mode when the agent acts, its noise
    ε_in, ε_out is new at every step, and the action is the argmax of the noisy Q: at some steps it differs
    from the argmax of the mean weights μ, which a noise-free agent would have taken."""
    steps = watched("rainbow").steps_of("train")
    assert all(step["noise_on"] for step in steps), "the agent acted with the noise off"
    for before, after in zip(steps, steps[1:]):
        assert all(not torch.equal(a, b) for a, b in zip(before["noise"], after["noise"])), (
            f"step {after['t']}: the online network's noise was not drawn anew")
    assert all(step["action"] == step["greedy"] for step in steps)
    assert any(step["action"] != step["mean_greedy"] for step in steps), "the noise never changed an action"


def test_noisy_rainbow_evaluates_the_mean_weights_without_noise(watched):
    """In the final evaluation every noisy layer is in eval mode: new noise leaves the online Q unchanged, and
    each action is the argmax of Q with the mean weights μ."""
    steps = watched("rainbow").steps_of("eval")
    assert steps, "no evaluation step"
    assert not any(step["noise_on"] for step in steps), "the evaluation ran with the noise on"
    assert all(step["same_q_after_new_noise"] for step in steps), "new noise changed the evaluated Q"
    assert all(step["action"] == step["mean_greedy"] == step["greedy"] for step in steps)


# ---------------------------------------------------------------------------------------------------
# The final evaluation is greedy
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("run_id", list(RUNS))
def test_the_final_evaluation_is_greedy_on_the_online_network(run_id, watched):
    """Every action of the final evaluation is argmax_a Q_φ(s, a) of the trained online network, never
    env.action_space.sample(): no ε. The coin returns 0 after training, so an evaluation that kept ε (1/2 at
    the end here) would act at random at every step."""
    watch = watched(run_id)
    steps = watch.steps_of("eval")
    assert len(steps) >= SETTINGS["eval_episodes"], "no evaluation step"
    assert not any(step["sampled"] for step in steps), "the evaluation drew random actions"
    assert all(step["action"] == step["greedy"] for step in steps), "an evaluation action was not greedy"
    assert not [net for phase, net in watch.decisions if phase == "eval" and net is watch.target]


# ---------------------------------------------------------------------------------------------------
# DQN-2: replay draws only stored transitions
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("run_id", ["dqn", "double_dqn", "dueling_dqn"])
def test_train_replays_only_stored_transitions_before_and_after_the_buffer_wraps(run_id, watched):
    """The uniform buffer (200 transitions) fills and wraps during the run; every mini-batch train() draws holds
    transitions stored in the buffer's first `size` slots, never an empty slot. (The prioritized buffers of
    per_dqn.py and rainbow.py clip every index to size − 1, which only matters at a round-off: the tests below
    hit it on purpose.)"""
    samples = watched(run_id).samples
    assert any(size < capacity for size, capacity, _ in samples), "no draw before the buffer was full"
    assert any(size == capacity for size, capacity, _ in samples), "no draw after the buffer wrapped"
    for size, _, found in samples:
        assert found, f"a draw from a buffer of {size} transitions returned an empty slot"


BUFFERS = ["dqn", "double_dqn", "dueling_dqn", "per_dqn", "rainbow"]


def numbered_buffer(name: str, capacity: int, count: int):
    """The script's buffer, with transitions 1 … count added in order (transition k has observation [k, 1];
    an empty slot holds [0, 0])."""
    module = importlib.import_module(name)
    if hasattr(module, "PrioritizedReplayBuffer"):
        buffer = module.PrioritizedReplayBuffer(capacity, gym.spaces.Box(-np.inf, np.inf, (2,)), alpha=0.6, eps=1e-6)
    else:
        buffer = module.ReplayBuffer(capacity, gym.spaces.Box(-np.inf, np.inf, (2,)))
    for k in range(1, count + 1):
        transition = (np.array([k, 1.0]), 0, 0.0, np.array([k + 1, 1.0]), False)
        buffer.add(*transition, *([1] if name == "rainbow" else []))
    return buffer


def drawn_transitions(buffer, rng, batches=100, batch_size=8):
    """The numbers k of the transitions in `batches` mini-batches of the buffer's sample()."""
    numbers = []
    for _ in range(batches):
        if hasattr(buffer, "tree"):
            batch = buffer.sample(batch_size, 0.4, rng, torch.device("cpu"))
        else:
            batch = buffer.sample(batch_size, rng, torch.device("cpu"))
        numbers += batch[0][:, 0].long().tolist()
    return numbers


@pytest.mark.parametrize("name", BUFFERS)
def test_replay_draws_every_stored_transition_and_no_empty_slot_before_the_buffer_is_full(name):
    """5 transitions in a buffer of 16: the draws are transitions 1 … 5, each of them at some point, never an
    empty slot (a draw over the capacity instead of the stored count would return them)."""
    buffer = numbered_buffer(name, capacity=16, count=5)
    drawn = drawn_transitions(buffer, np.random.default_rng(0))
    assert set(drawn) == set(range(1, 6)), f"drawn: {sorted(set(drawn))}"


@pytest.mark.parametrize("name", BUFFERS)
def test_replay_draws_from_the_whole_buffer_after_it_wraps(name):
    """21 transitions in a buffer of 16: the oldest 5 are overwritten, slots 0 … 4 hold transitions 17 … 21 and
    the next one goes to slot 5. The draws are transitions 6 … 21, all of them: none from before the wrap and
    none missed (drawing below the write position only would miss 6 … 16)."""
    buffer = numbered_buffer(name, capacity=16, count=21)
    assert buffer.size == 16 and buffer.pos == 5
    drawn = drawn_transitions(buffer, np.random.default_rng(0))
    assert set(drawn) == set(range(6, 22)), f"drawn: {sorted(set(drawn))}"


class HighestDraws:
    """A stand-in for np.random.Generator whose uniform draws are all the largest double below 1, a value
    rng.random() can return: the stratified draw of the last segment then rounds up to the whole priority mass
    Σ p^α, past every stored leaf of the sum tree."""

    def random(self, size):
        return np.full(size, np.nextafter(1.0, 0.0))


@pytest.mark.parametrize("name", ["per_dqn", "rainbow"])
def test_prioritized_replay_stays_below_the_stored_count_when_a_draw_rounds_up_to_the_total(name):
    """5 transitions of priority 1 in a buffer of 8, a batch of 4: the last draw is (3 + u) · 5/4 with u the
    largest double below 1, which rounds to 5.0, the whole mass. The walk down the sum tree then ends past the
    stored leaves; the buffer must still return one of the 5 stored transitions (index ≤ size − 1)."""
    buffer = numbered_buffer(name, capacity=8, count=5)
    assert buffer.tree.total == 5.0
    values = (np.arange(4) + HighestDraws().random(4)) * (buffer.tree.total / 4)
    assert values[-1] == buffer.tree.total and buffer.tree.find(values)[-1] >= 5, "no round-off to guard"
    *batch, weights, idx = buffer.sample(4, 0.4, HighestDraws(), torch.device("cpu"))
    assert idx.max() < 5 and set(batch[0][:, 0].long().tolist()) <= set(range(1, 6))


# ---------------------------------------------------------------------------------------------------
# Breaks a fresh reviewer found the suite missed (issue 26, item 3)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["per_dqn", "rainbow"])
def test_a_new_transition_enters_at_the_largest_priority_seen_so_far(name):
    """PER-1: a new transition gets the largest priority so far, so that it is replayed soon, also after
    updates raised the priorities above the starting 1. Catches the running maximum never updated."""
    module = importlib.import_module(name)
    buffer = module.PrioritizedReplayBuffer(8, gym.spaces.Box(-np.inf, np.inf, (2,)), alpha=0.5, eps=1e-6)
    extra = (1,) if name == "rainbow" else ()  # rainbow's transitions also keep their n-step count
    for _ in range(3):
        buffer.add(np.zeros(2), 0, 1.0, np.zeros(2), False, *extra)
    buffer.update_priorities(np.array([0, 1]), np.array([9.0, 3.0]))
    buffer.add(np.zeros(2), 0, 1.0, np.zeros(2), False, *extra)
    assert buffer.tree.get(np.array([3]))[0] == pytest.approx(buffer.tree.get(np.array([0]))[0], rel=1e-4)
    assert buffer.tree.get(np.array([3]))[0] > 2.9  # (9 + ε)^0.5, not 1


@pytest.mark.parametrize("name", ["dqn", "double_dqn", "dueling_dqn", "per_dqn", "rainbow"])
def test_only_the_first_training_episode_is_reset_with_the_seed(name, tmp_path, monkeypatch):
    """env.reset(seed=seed) once, then reset() with no seed: reseeding every episode replays the same start state
    each time, and on Atari a seeded reset starts a new game at every lost life (LifeLossEnds). The time limit
    of CountTruncatedDiscrete-v0 cuts an episode every 5 steps, so 40 steps reset it 8 times."""
    module = importlib.import_module(name)
    seeds = record_training_resets(module, monkeypatch)
    module.train(module.Args(env_id="CountTruncatedDiscrete-v0", total_timesteps=40, seed=7, learning_starts=16,
                             batch_size=16, buffer_size=100, hidden_size=8, log_frequency=20, eval_episodes=0,
                             eval_every=0, cuda=False, save_model=False, run_dir=str(tmp_path)))
    assert seeds == [7] + [None] * 8


def test_rainbows_adam_takes_the_rows_epsilon(tmp_path, monkeypatch):
    """Adam's ε is part of Rainbow's settings (the Rainbow paper's 1.5e-4 on Atari, Revisiting Rainbow's 3.125e-4
    on MinAtar): the optimizer train() builds must use args.adam_eps, not PyTorch's 1e-8."""
    import rainbow
    built, adam = [], torch.optim.Adam

    def recording(*args, **kwargs):
        built.append(adam(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(rainbow.torch.optim, "Adam", recording)
    rainbow.train(rainbow.Args(env_id="CartPole-v1", total_timesteps=40, learning_starts=16, batch_size=16,
                               buffer_size=100, hidden_size=8, adam_eps=3.125e-4, eval_episodes=0, eval_every=0,
                               cuda=False, save_model=False, run_dir=str(tmp_path)))
    assert len(built) == 1 and built[0].param_groups[0]["eps"] == 3.125e-4
