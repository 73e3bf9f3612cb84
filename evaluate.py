"""Evaluate a saved agent again, and watch it: any script's model.pt, without training.

    python evaluate.py "runs/CartPole-v1__ppo__1__*/model.pt"                 # the run's own test
    python evaluate.py "runs/CartPole-v1__ppo__1__*/model.pt" --episodes 20 --capture-video
    python evaluate.py runs/benchmark --episodes 5                           # every run in a folder

MODEL is a model.pt, a run folder, a folder of run folders, or a pattern with * (expanded here,
so that it works on every shell). The model is loaded by the script that wrote it (its name is in
model.pt; the script must sit beside this file) and plays its deterministic policy: the greedy
action, or the mean action with the observation normalization frozen. By default it plays the
run's own final evaluation, the env's fixed test set (episode e from env seed 1_000_000 + e, the
same for every run, so it reproduces the run's eval.json); --episodes and --seed (the first env
seed) choose another test. The episodes are played side by side, as the run's own evaluation
plays them; with --capture-video one at a time (a continuous action's last digits may then
differ: a batch of one rounds differently). Each evaluation writes eval.json (mean, std,
returns, settings) and, with --capture-video, one GIF per episode into a folder of its own,
{out}/{run folder name}__{unix time}/, never into the training run.

This tool is optional: the scripts do not need it; a script copied alone trains and evaluates
itself.
"""

import argparse
import dataclasses
import glob
import importlib
import os
import sys
import time

import gymnasium as gym
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def fail(message: str):
    print(f"evaluate.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def model_files(patterns: list) -> list:
    """The model.pt files that the patterns name (files, run folders, folders of runs, patterns)."""
    found = []
    for pattern in patterns:
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not paths:
            fail(f"nothing matches {pattern}")
        for path in paths:
            if os.path.isdir(path):
                inside = sorted(glob.glob(os.path.join(path, "model.pt")) or
                                glob.glob(os.path.join(path, "*", "model.pt")))
                if not inside:
                    fail(f"no model.pt in {path} or in the run folders under it")
                found += inside
            elif os.path.exists(path):
                found.append(path)
            else:
                fail(f"no such file: {path}")
    return found


def load(path: str):
    """(the script's module, the saved run's Args, the saved dict) of one of our model.pt files."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a file torch can read safely: not one of ours
        saved = None
    if not (isinstance(saved, dict) and isinstance(saved.get("script"), str) and "args" in saved):
        fail(f"{path} is not a model.pt written by one of the scripts here")
    if not os.path.exists(os.path.join(HERE, f"{saved['script']}.py")):
        fail(f"{path} was written by {saved['script']}.py, which is not beside evaluate.py")
    sys.path.insert(0, HERE)
    module = importlib.import_module(saved["script"])
    fields = module.Args.__dataclass_fields__
    return module, module.Args(**{k: v for k, v in saved["args"].items() if k in fields}), saved


class Watch(gym.Wrapper):
    """The env of one episode of an evaluation: prints a line when the episode ends and, with a
    folder, saves the episode there as a GIF (episode-e.gif, e from the seed of its reset)."""

    def __init__(self, env: gym.Env, first_seed: int, episodes: int, gif_folder: str = ""):
        super().__init__(env)
        self.first_seed, self.episodes, self.gif_folder = first_seed, episodes, gif_folder
        self.episode, self.frames, self.episode_return, self.start = 0, [], 0.0, time.time()

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.episode, self.episode_return = seed - self.first_seed, 0.0
        self.frames = [self.env.render()] if self.gif_folder else []
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episode_return += float(reward)
        if self.gif_folder:
            self.frames.append(self.env.render())
        if terminated or truncated:
            if self.gif_folder:
                self.save_gif(os.path.join(self.gif_folder, f"episode-{self.episode}.gif"))
            print(f"  episode {self.episode + 1}/{self.episodes}: return {self.episode_return:.1f} "
                  f"({time.time() - self.start:.1f} s)", flush=True)
        return obs, reward, terminated, truncated, info

    def save_gif(self, path: str):
        from PIL import Image  # Pillow comes with matplotlib
        images = [Image.fromarray(picture(frame)) for frame in self.frames]
        fps = self.env.metadata.get("render_fps", 30)
        images[0].save(path + ".tmp", format="GIF", save_all=True, append_images=images[1:],
                       duration=round(1000 / fps), loop=0)
        os.replace(path + ".tmp", path)


def picture(frame: np.ndarray) -> np.ndarray:
    """A frame as 8-bit RGB, a small one scaled up: MinAtar draws its 10×10 grid in floats in
    [0, 1], one pixel a cell, which becomes 200×200 here (classic control, MuJoCo and Atari draw
    bytes at a size that stays as it is)."""
    if frame.dtype != np.uint8:
        frame = (np.clip(frame, 0.0, 1.0) * 255).round().astype(np.uint8)
    scale = max(1, 200 // min(frame.shape[:2]))
    return frame.repeat(scale, axis=0).repeat(scale, axis=1)


def make_eval_env(module, env_id: str, video: bool) -> gym.Env:
    if not video:
        return module.make_env(env_id, training=False)
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws classic control: no window
    if sys.platform == "linux" and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo draws with OpenGL; without a screen: EGL
    try:
        env = module.make_env(env_id, training=False, render_mode="rgb_array")  # Atari: wrapped
        env.reset(seed=0)
        env.render()
        return env
    except Exception as e:  # a missing package or a graphics library that cannot draw here
        fail(f"--capture-video cannot draw {env_id}: {str(e).splitlines()[0]}")


def evaluate_model(path: str, options) -> dict:
    module, args, saved = load(path)
    test_set = dataclasses.replace(args, eval_episodes=None)  # a run without a final evaluation:
    module.evaluation_settings(test_set, 1)  # its env's test set, as the script would choose it
    episodes = options.episodes or args.eval_episodes or test_set.eval_episodes
    seed = module.TEST_SEED if options.seed is None else options.seed
    device = torch.device("cuda" if options.cuda and torch.cuda.is_available() else "cpu")
    run_name = os.path.basename(os.path.dirname(os.path.abspath(path)))
    folder = os.path.join(options.out, f"{run_name}__{int(time.time())}")
    suffix = 1
    while os.path.exists(folder):
        suffix += 1
        folder = os.path.join(options.out, f"{run_name}__{int(time.time())}-{suffix}")
    os.makedirs(os.path.join(folder, "videos") if options.capture_video else folder)
    env = make_eval_env(module, args.env_id, options.capture_video)
    policy = module.saved_policy(saved, args, env, device)
    print(f"{path}: {saved['script']}.py on {args.env_id}, "
          f"{episodes} episodes from env seed {seed}")
    gifs = os.path.join(folder, "videos") if options.capture_video else ""

    def watched_env():
        env = make_eval_env(module, args.env_id, options.capture_video)
        return Watch(env, seed, episodes, gifs)

    if options.capture_video:  # one episode at a time, so that one episode's frames are in memory
        returns = [r for e in range(episodes) for r in
                   module.evaluate(policy, watched_env, 1, seed + e)]
    else:  # side by side, as the training run's own evaluation plays them
        returns = module.evaluate(policy, watched_env, episodes, seed)
    env.close()
    mean, std = float(np.mean(returns or [np.nan])), float(np.std(returns or [np.nan]))
    result = {"mean": mean, "std": std,
              "returns": returns, "episodes": len(returns), "model": os.path.abspath(path),
              "script": saved["script"], "env_id": args.env_id, "first_seed": seed,
              "global_step": saved.get("global_step"), "capture_video": options.capture_video,
              "device": str(device)}
    module.write_atomically(os.path.join(folder, "eval.json"), result)
    print(f"evaluation over {len(returns)} episodes: {result['mean']:.1f} ± {result['std']:.1f}; "
          f"written to {folder}")
    return {**result, "folder": folder}


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="model.pt, run folder, folder of run folders, or a pattern with *")
    parser.add_argument("--episodes", type=int, help="episodes per model (default: the run's own)")
    parser.add_argument("--seed", type=int, help="env seed of the test's first episode "
                        "(default: 1_000_000, the fixed test set)")
    parser.add_argument("--capture-video", action="store_true", help="save each episode as a GIF")
    parser.add_argument("--out", default=os.path.join("runs", "eval"),
                        help="folder for the evaluations' own folders (default: runs/eval)")
    parser.add_argument("--cuda", action=argparse.BooleanOptionalAction, default=True,
                        help="use CUDA when it is available")
    options = parser.parse_args(argv)
    if options.episodes is not None and options.episodes <= 0:
        fail("--episodes must be positive")
    if options.seed is not None and not 0 <= options.seed < 2**32:
        fail(f"--seed must lie in [0, 2**32), not {options.seed}")
    return [evaluate_model(path, options) for path in model_files(options.models)]


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
