"""Every experiment script runs from a fresh clone at a tiny size and writes its figure and table."""

import importlib.util
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

FIGURE_SCRIPTS = [
    ("claim1_cheap_gradient", ["claim1_cheap_gradient"]),
    ("claim2_forward_vs_reverse", ["claim2_forward_vs_reverse"]),
    ("claim3_finite_differences", ["claim3_finite_differences"]),
    ("claim4_tape_memory", ["claim4_tape_memory", "claim4_binomial_table"]),
    ("claim5_sparse_jacobians", ["claim5_sparse_jacobians"]),
    ("claim6_higher_order", ["claim6_higher_order"]),
    ("claim7_control_flow", ["claim7_control_flow"]),
    ("tradeoff_curves", ["tradeoff", "frontier"]),
]


def load(name):
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(EXPERIMENTS))


@pytest.mark.parametrize("name,outputs", FIGURE_SCRIPTS, ids=[f[0] for f in FIGURE_SCRIPTS])
def test_figure_scripts_quick(name, outputs, tmp_path):
    assert load(name).main(["--quick", "--out", str(tmp_path)]) == 0
    for stem in outputs:
        assert (tmp_path / f"{stem}.csv").stat().st_size > 0
        if stem != "claim4_binomial_table":
            png = tmp_path / f"{stem}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name,argv", [("burgers_gradient", ["--quick"]), ("lorenz_gradient", ["--steps", "100"])])
def test_example_scripts_check_against_finite_differences(name, argv):
    assert load(name).main(argv) == 0


def test_bench_torch_quick(tmp_path):
    assert load("bench_torch").main(["--quick", "--out", str(tmp_path)]) == 0
    assert load("bench_torch").main(["--quick", "--overhead", "--models", "mlp16"]) == 0
    assert (tmp_path / "torch_mlp16.csv").exists() and (tmp_path / "torch_mlp16.png").exists()


def test_check_exhaustive_quick(capsys):
    assert load("check_exhaustive").main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert out.count("optimum reached") == 5


def test_torch_cuda_check_exactness_runs_on_cpu():
    """The CUDA script's exactness and budget checks, run on the CPU so that its code is exercised in CI
    (its CUDA-only parts, the allocator's peak and the CUDA RNG state, switch to their CPU counterparts)."""
    import torch

    check = load("torch_cuda_check")
    assert check.exactness(torch.device("cpu")) == 0
    assert check.real_models(torch.device("cpu")) == 0
