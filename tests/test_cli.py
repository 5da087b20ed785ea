import json
import subprocess
import sys

import pytest

from revolve import Chain, Schedule, binomial_cost
from revolve.cli import main


def test_plan_binomial_prints_stats(capsys):
    assert main(["plan", "binomial", "--steps", "1000", "--snapshots", "10", "--show", "3"]) == 0
    out = capsys.readouterr().out
    assert "3,636" in out  # advances
    assert "Snapshot(index=0, storage='ram')" in out


def test_plan_writes_json_and_simulate_reads_it(tmp_path, capsys):
    f = tmp_path / "s.json"
    assert main(["plan", "binomial", "--steps", "300", "--snapshots", "6", "--json", str(f)]) == 0
    assert Schedule.load(f).n_steps == 300
    chain = tmp_path / "c.json"
    chain.write_text(Chain(forward_cost=1, backward_cost=2, state_bytes=1024, tape_bytes=4096, n_steps=300).to_json())
    capsys.readouterr()
    assert main(["simulate", str(f), "--chain", str(chain)]) == 0
    out = capsys.readouterr().out
    assert f"{binomial_cost(300, snapshots=6):,}" in out and "peak memory" in out and "10.00 KiB" in out


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["plan", "binomial", "--steps", "0", "--snapshots", "3"], "expected a positive integer, got '0'"),
        (["plan", "binomial", "--steps", "ten", "--snapshots", "3"], "expected a positive integer"),
        (["plan", "binomial", "--steps", "10"], "--snapshots"),
        (["simulate", "/nonexistent/x.json"], "cannot read schedule file"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_errors_one_line_status_2(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_invalid_schedule_file(tmp_path, capsys):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps({"format": "revolve-schedule", "version": 1, "n_steps": 2,
                             "actions": [{"op": "record", "step": 1}]}))
    assert main(["simulate", str(f)]) == 2
    err = capsys.readouterr().err
    assert "action #0 Record(step=1) is invalid" in err


def test_cost(capsys):
    assert main(["cost", "--steps", "1000000", "--snapshots", "20"]) == 0
    assert "6815960" in capsys.readouterr().out


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "revolve", "cost", "--steps", "1000", "--snapshots", "10"],
                         capture_output=True, text=True, check=True)
    assert "3636" in out.stdout


def test_plan_optimal_and_frontier(tmp_path, capsys):
    chain = tmp_path / "c.json"
    chain.write_text(Chain(forward_cost=[1, 3, 1, 3, 1, 3], backward_cost=2, state_bytes=2**20,
                           tape_bytes=[2**22, 2**21] * 3).to_json())
    assert main(["plan", "optimal", "--chain", str(chain), "--memory", "10MiB", "--json", str(tmp_path / "o.json")]) == 0
    out = capsys.readouterr().out
    assert "peak memory" in out
    assert main(["simulate", str(tmp_path / "o.json"), "--chain", str(chain)]) == 0
    peak_line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("peak memory")][0]
    assert float(peak_line.split()[-2]) <= 10.0
    assert main(["frontier", "--chain", str(chain), "--csv", str(tmp_path / "f.csv")]) == 0
    assert (tmp_path / "f.csv").read_text().startswith("memory_bytes,time")


def test_plan_optimal_infeasible_names_minimum(tmp_path, capsys):
    chain = tmp_path / "c.json"
    chain.write_text(Chain(forward_cost=1, backward_cost=1, state_bytes=1024, tape_bytes=4096, n_steps=4).to_json())
    assert main(["plan", "optimal", "--chain", str(chain), "--memory", "1KiB"]) == 2
    err = capsys.readouterr().err
    assert "smallest budget with which one exists is 5120 bytes" in err and err.count("\n") == 1


def test_bad_memory_unit(tmp_path, capsys):
    chain = tmp_path / "c.json"
    chain.write_text(Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=2).to_json())
    assert main(["plan", "optimal", "--chain", str(chain), "--memory", "12 parsecs"]) == 2
    assert "--memory must be a size like '512MiB'" in capsys.readouterr().err


def test_demo_small(capsys):
    assert main(["demo", "--steps", "30", "--points", "512", "--memory", "256KiB"]) == 0
    out = capsys.readouterr().out
    assert "store-all would hold" in out and "central differences" in out
