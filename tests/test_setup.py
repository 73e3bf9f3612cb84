"""What every script needs from its surroundings: the versions requirements.txt admits, and the settings a
GPU run needs before its first kernel."""

import os
import re

import pytest

from conftest import ROOT, SCRIPTS


def minimum_version(package: str) -> tuple:
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        for line in f:
            match = re.match(rf"{package}(\[[^\]]*\])?\s*>=\s*([0-9.]+)", line.strip())
            if match:
                return tuple(int(part) for part in match.group(2).split("."))
    raise AssertionError(f"requirements.txt gives no lower bound for {package}")


def test_gymnasium_minimum_has_the_autoreset_mode_the_vector_scripts_use():
    """gym.vector.AutoresetMode (a2c, ppo, trpo: SAME_STEP autoreset) exists from gymnasium 1.1 on; with 1.0
    those scripts crash with an AttributeError, so requirements.txt must not admit it."""
    uses_autoreset_mode = [s.name for s in SCRIPTS
                           if "AutoresetMode" in open(os.path.join(ROOT, f"{s.name}.py")).read()]
    assert uses_autoreset_mode, "no script uses AutoresetMode any more: this test can go"
    assert minimum_version("gymnasium") >= (1, 1)


@pytest.mark.parametrize("deterministic, expected", [(True, ":4096:8"), (False, None)])
def test_deterministic_cuda_runs_configure_cublas_first(script, monkeypatch, deterministic, expected):
    """Older CUDA builds of torch raise at the first matmul when deterministic algorithms are on and
    CUBLAS_WORKSPACE_CONFIG is unset: seed_everything sets it when --cuda and torch_deterministic are both on."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    module = script.module()
    args = module.Args(cuda=True, torch_deterministic=deterministic, torch_threads=1)
    try:
        module.seed_everything(1, args)
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == expected
    finally:
        module.torch.use_deterministic_algorithms(False)
