"""Pixels (issue 29): make_env's Atari preprocessing (training against evaluation) and MinAtar's registration, the
convolutional torso of the scripts that read images, replay that keeps an image's small type, the MinAtar and Atari
rows of ENV_DEFAULTS, ppo.py's actor and critic on images (no observation normalization there), and a few hundred
steps of each script on MinAtar/Breakout-v1 and ALE/Pong-v5. The optional packages (minatar;
gymnasium[atari,other]) are installed in CI; without them these tests are skipped, with the reason."""

import importlib
import importlib.util
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

import dqn
import ppo

PIXEL_SCRIPTS = ["dqn", "double_dqn", "dueling_dqn", "per_dqn", "rainbow"]  # torso(), replay
ROW_SCRIPTS = PIXEL_SCRIPTS + ["ppo"]  # the scripts with a MinAtar and an Atari row
NAMESPACED = {"MinAtar/Breakout-v1": "MinAtar", "MinAtar/SpaceInvaders-v1": "MinAtar", "ALE/Pong-v5": "Atari",
              "ALE/Breakout-v5": "Atari"}


def needs(module: str, install: str):
    """Skip, saying what to install, when the optional package `module` is missing."""
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(missing, reason=f"the optional package {module} is not installed: pip install {install}")


minatar = needs("minatar", "minatar")
atari = needs("ale_py", '"gymnasium[atari,other]"')


def wrappers(env) -> list:
    names = []
    while isinstance(env, gym.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return names


@atari
def test_atari_frames_are_preprocessed_and_only_training_clips_rewards_and_ends_at_a_lost_life():
    train, test = dqn.make_env("ALE/Pong-v5"), dqn.make_env("ALE/Pong-v5", training=False)
    assert train.observation_space.shape == (4, 84, 84) and train.observation_space.dtype == np.uint8
    assert test.observation_space == train.observation_space
    assert "TransformReward" in wrappers(train) and "TransformReward" not in wrappers(test)
    assert "LifeLossEnds" in wrappers(train) and "LifeLossEnds" not in wrappers(test)
    by_name = {}
    for name, env in (("train", train), ("test", test)):
        while not isinstance(env, gym.wrappers.AtariPreprocessing):
            env = env.env
        by_name[name] = env
    assert not by_name["train"].terminal_on_life_loss, "gymnasium's own flag would restart the game at each life"
    assert by_name["train"].frame_skip == 4 and by_name["train"].noop_max == 30
    assert by_name["train"].env.unwrapped._frameskip == 1, "the base env must not skip frames: the wrapper does"
    for env in (train, test):  # the first stack of an episode is its first frame 4 times, not zeros before it
        obs, _ = env.reset(seed=0)
        assert obs[0].any() and all(np.array_equal(obs[0], frame) for frame in obs[1:])


def play_until_an_end(env, rng, limit=20_000):
    """Random actions until the episode ends: (terminated, lives then, the ALE's own game-over flag)."""
    for _ in range(limit):
        _, _, terminated, truncated, info = env.step(rng.integers(env.action_space.n))
        if terminated or truncated:
            return terminated, info["lives"], env.unwrapped.ale.game_over()
    raise AssertionError(f"no end within {limit} steps")


@atari
def test_a_lost_life_ends_the_training_episode_but_the_game_goes_on():
    """DQN's life-loss episodes: in training each lost life ends the episode (terminated, for the target), but
    reset() carries on with the same game, the lives one fewer, until the last life is gone; only then does a new
    game start. An evaluation plays the whole game as one episode."""
    rng = np.random.default_rng(0)
    env = dqn.make_env("ALE/Breakout-v5")
    env.reset(seed=0)
    lives = []
    for _ in range(5):
        terminated, left, game_over = play_until_an_end(env, rng)
        assert terminated
        lives.append(left)
        _, info = env.reset()
        assert info["lives"] == (left if left else 5), "a lost life restarted the game" if left else "no new game"
    assert lives == [4, 3, 2, 1, 0] and game_over
    test = dqn.make_env("ALE/Breakout-v5", training=False)
    test.reset(seed=0)
    assert play_until_an_end(test, rng)[1:] == (0, True), "an evaluation ended before the game was over"


class Lives(gym.Env):
    """A stub Atari game for LifeLossEnds: 3 lives, one lost at each step of `losses`, game over at step `end` or
    with the last life; the observation is the step count, and every action is recorded."""
    observation_space, action_space = gym.spaces.Discrete(100), gym.spaces.Discrete(10_000)

    def __init__(self, losses, end):
        self.losses, self.end, self.actions, self.games = losses, end, [], 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.lives, self.games = 0, 3, self.games + 1
        return self.t, {"lives": self.lives}

    def step(self, action):
        self.actions.append(int(action))
        self.t += 1
        self.lives -= self.t in self.losses
        return self.t, 0.0, self.t == self.end or self.lives == 0, False, {"lives": self.lives}


def test_life_loss_ends_the_episode_then_plays_on_with_a_no_op_and_a_game_over_ends_it_with_lives_left():
    """A lost life ends the learner's episode (terminated: no bootstrap past it); reset() then goes on with the
    same game by a no-op (action 0, as the DQN paper's start; no random draw); a game that ends with lives left
    (a timer, or Pong, whose lives stay 0) ends the episode too, and only then does reset() start a new game."""
    game = Lives(losses={3, 6}, end=8)
    env = dqn.LifeLossEnds(game)
    assert env.reset(seed=0)[0] == 0 and game.games == 1
    assert [env.step(1)[2] for _ in range(3)] == [False, False, True]  # the life lost at step 3
    assert env.reset()[0] == 4 and game.actions[-1] == 0 and game.games == 1, "the game goes on, by a no-op"
    assert [env.step(2)[2] for _ in range(2)] == [False, True]  # the life lost at step 6
    assert env.reset()[0] == 7 and game.actions[-1] == 0 and game.games == 1
    assert env.step(3)[2], "the game ended at step 8 with a life left: the episode must end"
    assert env.reset()[0] == 0 and game.games == 2, "a new game after the game over"
    assert game.actions == [1, 1, 1, 0, 2, 2, 0, 3]


@atari
def test_rewards_are_clipped_to_their_sign_in_training_and_the_evaluation_keeps_the_score():
    """SpaceInvaders pays 5 to 30 points an alien. The same seed and actions play the same first life in the
    training env and the evaluation's, so each training reward must be the sign of the score's."""
    train, test = dqn.make_env("ALE/SpaceInvaders-v5"), dqn.make_env("ALE/SpaceInvaders-v5", training=False)
    train.reset(seed=0)
    test.reset(seed=0)
    rng, clipped, raw = np.random.default_rng(0), [], []
    for _ in range(2000):
        action = rng.integers(train.action_space.n)
        _, reward, terminated, truncated, _ = train.step(action)
        clipped.append(float(reward))
        raw.append(float(test.step(action)[1]))
        if terminated or truncated:  # the first lost life
            break
    assert terminated and max(raw) > 1, "a first life that scores more than 1 point an alien"
    assert clipped == [float(np.sign(reward)) for reward in raw]


@minatar
def test_minatar_ids_register_and_come_as_grids():
    env = dqn.make_env("MinAtar/Breakout-v1")
    obs, _ = env.reset(seed=3)
    assert obs.shape == (10, 10, 4) and env.observation_space.shape == (10, 10, 4)
    assert isinstance(env.action_space, gym.spaces.Discrete)
    again, _ = dqn.make_env("MinAtar/Breakout-v1").reset(seed=3)
    assert np.array_equal(obs, again), "an env seed must fix the start, as the fixed test sets need"
    # MinAtar's games have no time limit of their own: a policy that never loses must not stall an evaluation
    for training in (True, False):
        limited = dqn.make_env("MinAtar/Breakout-v1", training=training)
        assert limited.spec.max_episode_steps == 27_000 and "TimeLimit" in wrappers(limited)


def test_a_missing_optional_package_is_one_line_and_exit_status_2(monkeypatch, capsys):
    real = importlib.import_module

    def without(name, *args, **kwargs):
        if name in ("ale_py", "minatar.gym"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", without)
    for env_id, install in (("ALE/Pong-v5", 'pip install "gymnasium[atari,other]"'),
                            ("MinAtar/Breakout-v1", "pip install minatar")):
        if env_id in gym.registry:
            continue  # registered by an earlier test in this process: nothing to import
        with pytest.raises(SystemExit) as stop:
            dqn.make_env(env_id)
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and install in err[0], err


@pytest.mark.parametrize("name", PIXEL_SCRIPTS)
def test_the_torso_is_the_nature_network_for_atari_and_the_minatar_network_for_grids(name):
    module = importlib.import_module(name)
    atari_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    torso, features = module.torso(atari_space, 256)
    convs = [layer for layer in torso.modules() if isinstance(layer, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (4, 32, (8, 8), (4, 4)), (32, 64, (4, 4), (2, 2)), (64, 64, (3, 3), (1, 1))]
    assert features == 512 and torso(torch.zeros(2, 4, 84, 84)).shape == (2, 512)
    # a ReLU after every layer, no padding: 84 → 20 → 9 → 7, so 64 · 7 · 7 features reach the 512 units
    assert layers(torso) == ["Conv2d", "ReLU", "Conv2d", "ReLU", "Conv2d", "ReLU", "Flatten", "Linear", "ReLU"]
    assert all(c.padding == (0, 0) for c in convs) and torso.fc[0].in_features == 64 * 7 * 7
    grid = gym.spaces.Box(0.0, 1.0, (10, 10, 6), bool)
    torso, features = module.torso(grid, 256)
    convs = [layer for layer in torso.modules() if isinstance(layer, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [(6, 16, (3, 3), (1, 1))]
    assert features == 128 and torso(torch.zeros(10, 10, 6)).shape == (128,), "one grid, unbatched, as acting has it"
    # the MinAtar paper's: no padding, 10 → 8, so 16 · 8 · 8 features reach the 128 units
    assert layers(torso) == ["Conv2d", "ReLU", "Flatten", "Linear", "ReLU"]
    assert convs[0].padding == (0, 0) and torso.fc[0].in_features == 16 * 8 * 8
    flat, features = module.torso(gym.spaces.Box(-1, 1, (4,)), 32)
    assert features == 32 and not any(isinstance(layer, nn.Conv2d) for layer in flat.modules())


def layers(net: nn.Module) -> list:
    """The names of a network's layers in order, its containers left out."""
    return [type(m).__name__ for m in net.modules() if not isinstance(m, nn.Sequential) and list(m.children()) == []]


def test_rainbows_image_torso_is_noisy_too():
    """RAINBOW-6: every linear layer noisy, the torso's 512 or 128 units as well as the heads."""
    import rainbow
    for space in (ATARI_SPACE, GRID_SPACE):
        net = rainbow.QNetwork(space, 3, 256, support=torch.linspace(-10, 10, 51), dueling=True, noisy=True)
        kinds = layers(net)
        assert kinds.count("NoisyLinear") == 3 and "Linear" not in kinds, kinds


def test_pixels_scale_to_one_and_read_minatar_grids_channels_last():
    torch.manual_seed(0)
    frames = dqn.Pixels(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))
    image = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(frames(image), frames.fc(frames.convs(image.float() / 255)))
    grids = dqn.Pixels(gym.spaces.Box(0.0, 1.0, (10, 10, 4), bool))
    grid = torch.rand(2, 10, 10, 4) > 0.7
    with torch.no_grad():
        channels_first = grid.permute(0, 3, 1, 2).float()
        assert torch.allclose(grids(grid), grids.fc(grids.convs(channels_first)))


@pytest.mark.parametrize("name", PIXEL_SCRIPTS)
def test_replay_keeps_an_images_own_type(name):
    module = importlib.import_module(name)
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    if hasattr(module, "PrioritizedReplayBuffer"):
        buffer = module.PrioritizedReplayBuffer(8, space, alpha=0.5, eps=1e-6)
    else:
        buffer = module.ReplayBuffer(8, space)
    assert buffer.obs.dtype == np.uint8 and buffer.next_obs.dtype == np.uint8
    assert buffer.obs.shape == (8, 4, 84, 84) and buffer.obs.nbytes == 8 * 4 * 84 * 84


@pytest.mark.parametrize("name", ROW_SCRIPTS)
@pytest.mark.parametrize("env_id", list(NAMESPACED))
def test_every_minatar_and_atari_game_takes_its_row(name, env_id):
    module = importlib.import_module(name)
    env = gym.make("CartPole-v1")  # any Discrete env: the row is chosen by the id
    args = module.with_env_defaults(module.Args(env_id=env_id), env)
    assert args.settings_row["row"] == NAMESPACED[env_id] and not args.settings_row["borrowed"]
    for key, value in module.ENV_DEFAULTS[NAMESPACED[env_id]].items():
        assert getattr(args, key) == value, key


def test_the_dqn_family_shares_its_rows():
    rows = [importlib.import_module(name).ENV_DEFAULTS for name in ("dqn", "double_dqn", "dueling_dqn", "per_dqn")]
    assert all(row == rows[0] for row in rows)
    assert rows[0]["MinAtar"]["huber"] and rows[0]["Atari"]["huber"] and not rows[0]["CartPole-v1"]["huber"]
    # ε from 1 to 0.1 over the first 100k steps (the MinAtar paper), to 0.01 over the first 1M (the RL Zoo's Atari)
    for row, end, steps in (("MinAtar", 0.1, 100_000), ("Atari", 0.01, 1_000_000)):
        settings = dict(dqn.Args().__dict__, **rows[0][row])
        assert (settings["start_e"], settings["end_e"]) == (1.0, end)
        assert settings["exploration_fraction"] * settings["total_timesteps"] == steps


def run(name: str, env_id: str, tmp_path, **settings):
    module = importlib.import_module(name)
    settings = dict(dict(eval_every=0, eval_episodes=1), **settings)
    args = module.Args(env_id=env_id, run_dir=str(tmp_path), cuda=False, **settings)
    return module.train(args)


@minatar
@pytest.mark.parametrize("name", PIXEL_SCRIPTS)
def test_a_few_hundred_steps_on_minatar(name, tmp_path):
    summary = run(name, "MinAtar/Breakout-v1", tmp_path, total_timesteps=300, learning_starts=100, batch_size=8,
                  buffer_size=300, train_frequency=4)
    assert summary["global_step"] == 300 and np.isfinite(summary["eval_mean"])
    assert "MinAtar-Breakout-v1__" in summary["run_dir"], "one folder per run, not a folder per namespace"


@atari
@pytest.mark.parametrize("name", PIXEL_SCRIPTS)
def test_a_few_hundred_steps_on_atari(name, tmp_path):
    summary = run(name, "ALE/Pong-v5", tmp_path, total_timesteps=200, learning_starts=100, batch_size=4,
                  buffer_size=200, train_frequency=4, eval_episodes=0)
    assert summary["global_step"] == 200


@minatar
def test_the_command_line_takes_the_minatar_row(tmp_path):
    out = subprocess.run([sys.executable, "dqn.py", "--env-id", "MinAtar/Breakout-v1", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert "1000000" in out.stdout.replace(",", "").replace("_", "")


ATARI_SPACE = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
GRID_SPACE = gym.spaces.Box(0.0, 1.0, (10, 10, 4), bool)


def test_ppo_reads_images_with_pixels_and_an_orthogonal_head_and_flat_observations_as_before():
    for space, features in ((ATARI_SPACE, 512), (GRID_SPACE, 128)):
        torch.manual_seed(0)
        actor, critic = ppo.CategoricalActor(space, 6, 64, 0.0), ppo.Critic(space, 64)
        for net in (actor.logits, critic.net):
            assert isinstance(net[0], ppo.Pixels) and net[1].in_features == features
        image = torch.as_tensor(space.sample()).float()
        assert actor.logits(image[None]).shape == (1, 6) and critic(image[None]).shape == (1,)
        assert actor.mode(image).shape == (), "one image, unbatched, as acting has it"
        # orthogonal rows of norm out_gain: 0.01 for the policy head (a nearly uniform first policy), 1 for V; and
        # of norm √2 in every layer of the torso, its convolutions (each filter a row) as its linear layer
        for head, gain in ((actor.logits[1], 0.01), (critic.net[1], 1.0)):
            rows = head.weight @ head.weight.T
            assert torch.allclose(rows, gain ** 2 * torch.eye(len(rows)), atol=1e-6) and not head.bias.any()
        torso = [m for m in actor.logits[0].modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert len(torso) == (4 if features == 512 else 2)
        for layer in torso:
            rows = layer.weight.flatten(1) @ layer.weight.flatten(1).T
            assert torch.allclose(rows, 2 * torch.eye(len(rows)), atol=1e-5) and not layer.bias.any(), layer
    # flat observations: the same layers, drawn in the same order from the same seed as before images
    torch.manual_seed(0)
    actor = ppo.CategoricalActor(gym.spaces.Box(-1, 1, (4,)), 2, 64, 0.0)
    assert [type(layer).__name__ for layer in actor.logits] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    torch.manual_seed(0)
    layers = [nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2)]
    for layer, gain in zip(layers[::2], (np.sqrt(2), np.sqrt(2), 0.01)):
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    for mine, before in zip(actor.logits.state_dict().values(), nn.Sequential(*layers).state_dict().values()):
        assert torch.equal(mine, before)


def test_ppo_refuses_observation_normalization_of_images_and_other_shapes(capsys):
    for space, message in ((ATARI_SPACE, "norm_obs is for flat observations"),
                           (GRID_SPACE, "norm_obs is for flat observations"),
                           (gym.spaces.Box(0, 1, (3, 3)), "needs a flat Box observation space, Atari's frames"),
                           (gym.spaces.Box(0, 255, (3, 64, 64), np.uint8), "or MinAtar's grids (10, 10, C)")):
        env = gym.make("CartPole-v1")
        env.observation_space = space
        args = ppo.with_env_defaults(ppo.Args(norm_obs=True), env)
        with pytest.raises(SystemExit) as stop:
            ppo.check_args(args, env)
        err = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == 2 and len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("name", PIXEL_SCRIPTS)
def test_images_other_than_atari_frames_and_minatar_grids_are_refused_in_one_line(name, capsys):
    """The torso knows two kinds of image: Atari's stacked frames and MinAtar's grids. Any other image (here
    64×64 RGB, channels first) is refused with one line and exit status 2, not guessed at."""
    module = importlib.import_module(name)
    env = gym.make("CartPole-v1")
    env.observation_space = gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)
    with pytest.raises(SystemExit) as stop:
        module.check_args(module.with_env_defaults(module.Args(), env), env)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "MinAtar's grids (10, 10, C)" in err[0], err


def ppo_run(env_id: str, tmp_path, **settings):
    tiny = dict(num_envs=2, num_steps=32, total_timesteps=128, update_epochs=2, num_minibatches=2)
    summary = run("ppo", env_id, tmp_path, **dict(tiny, **settings))
    return summary, torch.load(f"{summary['run_dir']}/model.pt", weights_only=True)


@minatar
def test_ppo_a_few_hundred_steps_on_minatar_without_observation_normalization(tmp_path):
    summary, model = ppo_run("MinAtar/Breakout-v1", tmp_path)
    assert summary["global_step"] == 128 and np.isfinite(summary["eval_mean"])
    assert not model["args"]["norm_obs"] and model["args"]["settings_row"]["row"] == "MinAtar"
    assert model["normalizer"]["obs_rms"]["count"] == pytest.approx(1e-4), "an image went through normalization"
    env = ppo.make_env("MinAtar/Breakout-v1", training=False)
    args = ppo.Args(**{key: value for key, value in model["args"].items() if key != "settings_row"})
    policy = ppo.saved_policy(model, args, env, torch.device("cpu"))
    grids = np.stack([env.reset(seed=seed)[0] for seed in range(3)])
    assert policy(grids).shape == (3,) and env.action_space.contains(int(policy(grids)[0]))
    normalizer = ppo.Normalizer(GRID_SPACE.shape, 2, 0.99, norm_obs=False, norm_reward=False)
    assert np.array_equal(normalizer.observation(grids, update=True), grids.astype(np.float32))


@atari
def test_ppo_a_few_hundred_steps_on_atari(tmp_path):
    summary, model = ppo_run("ALE/Pong-v5", tmp_path, eval_episodes=0)
    assert summary["global_step"] == 128 and model["args"]["settings_row"]["row"] == "Atari"
    assert model["normalizer"]["obs_rms"]["count"] == pytest.approx(1e-4)


@atari
def test_evaluate_py_plays_whole_atari_games_for_their_score():
    """evaluate.py re-evaluates a model on the env of the run's own test: no clipped rewards, no end at a lost life."""
    import evaluate
    env = evaluate.make_eval_env(dqn, "ALE/Pong-v5", video=False)
    assert "TransformReward" not in wrappers(env) and "LifeLossEnds" not in wrappers(env)


@minatar
def test_evaluate_py_reproduces_a_minatar_runs_own_test(tmp_path):
    summary = run("dqn", "MinAtar/Breakout-v1", tmp_path, total_timesteps=300, learning_starts=100, batch_size=8,
                  buffer_size=300, eval_episodes=3)
    out = subprocess.run([sys.executable, "evaluate.py", summary["run_dir"] + "/model.pt", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"{summary['eval_mean']:.1f}" in out.stdout, (out.stdout, summary["eval_mean"])


@minatar
def test_evaluate_py_plays_minatars_test_set_for_a_run_without_a_final_evaluation(tmp_path):
    """A run trained with eval_episodes 0 has no test of its own: evaluate.py plays its env's whole test set, on
    MinAtar the namespace's 100 episodes from TEST_SEED, as the script would have."""
    import dqn
    import evaluate
    summary = run("dqn", "MinAtar/Breakout-v1", tmp_path, total_timesteps=300, learning_starts=100, batch_size=8,
                  buffer_size=300, eval_episodes=0)
    (result,) = evaluate.main([summary["run_dir"], "--out", str(tmp_path / "eval"), "--no-cuda"])
    assert result["episodes"] == 100 == len(result["returns"]) and result["first_seed"] == dqn.TEST_SEED


@minatar
def test_evaluate_py_films_a_minatar_game(tmp_path):
    """--capture-video on MinAtar: its frames are floats in [0, 1], one pixel a cell; the GIF gets 8-bit frames
    of 200×200 pixels, each cell a block of 20×20."""
    import evaluate
    from PIL import Image
    grid = np.zeros((10, 10, 3))
    grid[2, 3] = (1.0, 0.5, 0.0)
    frame = evaluate.picture(grid)
    assert frame.dtype == np.uint8 and frame.shape == (200, 200, 3)
    assert (frame[40:60, 60:80] == (255, 128, 0)).all() and not frame[:40].any()
    summary = run("dqn", "MinAtar/Breakout-v1", tmp_path, total_timesteps=300, learning_starts=100, batch_size=8,
                  buffer_size=300, eval_episodes=1)
    out = subprocess.run([sys.executable, "evaluate.py", summary["run_dir"] + "/model.pt", "--out", str(tmp_path / "eval"),
                          "--episodes", "1", "--capture-video"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    gifs = list((tmp_path / "eval").rglob("*.gif"))
    assert len(gifs) == 1 and Image.open(gifs[0]).size == (200, 200)
