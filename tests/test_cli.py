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


def test_plan_online_against_the_offline_optimum(tmp_path, capsys):
    from revolve import online, simulate

    f = tmp_path / "o.json"
    assert main(["plan", "online", "--steps", "1000", "--snapshots", "10", "--json", str(f)]) == 0
    out = capsys.readouterr().out
    expected = simulate(online(snapshots=10).schedule(1000))
    assert f"advances (recomputed steps)  {expected.advances:,}" in out
    assert f"offline optimum t(1000, 10) = {binomial_cost(1000, snapshots=10):,} advances" in out
    assert list(Schedule.load(f)) == list(online(snapshots=10).schedule(1000))
    # n <= beta(s, 2): Stumm-Walther's Algorithm I is offline-optimal
    assert main(["plan", "online", "--steps", "21", "--snapshots", "5", "--algorithm", "stumm-walther"]) == 0
    out = capsys.readouterr().out
    assert f"advances (recomputed steps)  {binomial_cost(21, snapshots=5)}\n" in out
    assert main(["plan", "online", "--steps", "50", "--snapshots", "4", "--algorithm", "wang-moin",
                 "--stop-after-last"]) == 0
    got = simulate(online(snapshots=4, algorithm="wang-moin").schedule(50, last_step_known=False))
    assert f"advances (recomputed steps)  {got.advances}\n" in capsys.readouterr().out


def test_plan_multilevel_per_level_slots_and_io(tmp_path, capsys):
    from revolve import multilevel, simulate

    f = tmp_path / "m.json"
    argv = ["plan", "multilevel", "--steps", "1000", "--slots", "ram=5,disk=10", "--io-cost", "disk=2:2",
            "--json", str(f)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    levels, io = {"ram": 5, "disk": 10}, {"disk": (2, 2)}
    st = simulate(multilevel(1000, slots=levels, io_cost=io), slots=levels, io_cost=io)
    assert f"cost with I/O                {st.cost:,.0f}" in out
    assert "peak snapshots in disk       10" in out and "peak snapshots in ram        5" in out
    assert list(Schedule.load(f)) == list(multilevel(1000, slots=levels, io_cost=io))
    assert main(["plan", "multilevel", "--steps", "300", "--slots", "gpu=2, host=3, disk=4",
                 "--io-cost", "host=1:1,disk=4:3", "--forward-cost", "2", "--method", "fast"]) == 0
    out = capsys.readouterr().out
    plan = multilevel(300, slots={"gpu": 2, "host": 3, "disk": 4}, io_cost={"host": (1, 1), "disk": (4, 3)},
                      forward_cost=2.0, method="fast")
    st = simulate(plan, slots={"gpu": 2, "host": 3, "disk": 4}, io_cost={"host": (1, 1), "disk": (4, 3)})
    assert f"cost at the given step costs {st.forward_evaluations * 2 + 300 + st.io_time:,.6g}" in out


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["plan", "multilevel", "--steps", "100", "--slots", "ram=5,disk"], "expected slots per level as LEVEL=VALUE"),
        (["plan", "multilevel", "--steps", "100", "--slots", "ram=x"], "the slots of level 'ram' must be an integer"),
        (["plan", "multilevel", "--steps", "100", "--slots", "ram=1,ram=2"], "level 'ram' is given twice"),
        (["plan", "multilevel", "--steps", "100", "--slots", "ram=5", "--io-cost", "disk=2"],
         "the cost of level 'disk' must be WRITE:READ"),
        (["plan", "multilevel", "--steps", "100", "--slots", "ram=2", "--io-cost", "tape=2:2"],
         "io_cost names level(s) ['tape'] that slots does not"),
        (["plan", "multilevel", "--steps", "100", "--slots", "ram=0"], "slots['ram'] (the fastest level) must be >= 1"),
        (["plan", "multilevel", "--steps", "100", "--slots", "ram=2", "--forward-cost", "-1"],
         "expected a positive finite number"),
        (["plan", "multilevel", "--steps", "100"], "--slots"),
        (["plan", "online", "--steps", "100", "--snapshots", "3", "--algorithm", "foo"], "invalid choice: 'foo'"),
        (["plan", "online", "--steps", "100", "--snapshots", "0"], "expected a positive integer, got '0'"),
        (["plan", "online", "--steps", "100000", "--snapshots", "3", "--algorithm", "stumm-walther"],
         "plans at most beta(s, 3)"),
    ],
)
def test_online_and_multilevel_errors_one_line_status_2(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
