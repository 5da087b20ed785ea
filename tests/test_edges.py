"""Every edge answers clearly (issue 16): files, hostile input, scale, the CLI's edges.

Each bad-input test asserts the exception type and that the message names the argument and what is allowed.
"""

import json
import os
import stat
from dataclasses import asdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import revolve
from revolve import Advance, Chain, Record, Reverse, Schedule, Snapshot, binomial, periodic, simulate, store_all
from revolve.cli import main
from revolve.simulator import closed_form_stats


def _one_line_error(capsys, *needles):
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return captured


# -- Files ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,option", [
    (["plan", "binomial", "--steps", "10", "--snapshots", "3", "--json", "{missing}/p.json"], "--json"),
    (["plot", "tradeoff", "--steps", "10", "--out", "{missing}/folder"], "--out"),
])
def test_output_in_a_missing_folder_is_one_line_before_any_work(argv, option, capsys, tmp_path):
    missing = str(tmp_path / "missing")
    assert main([a.format(missing=missing) for a in argv]) == 2
    captured = _one_line_error(capsys, option, missing, "does not exist")
    assert not os.path.exists(missing)  # nothing created either
    assert "forward evaluations" not in captured.out  # checked before the stats are computed
    assert ".revolve-" not in captured.err


def test_frontier_csv_at_a_folder_and_plot_out_at_a_file(tmp_path, capsys):
    chain = tmp_path / "c.json"
    chain.write_text(Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=3).to_json())
    assert main(["frontier", "--chain", str(chain), "--csv", str(tmp_path)]) == 2
    _one_line_error(capsys, "--csv", "is a folder")
    assert main(["plot", "frontier", "--chain", str(chain), "--out", str(chain)]) == 2
    _one_line_error(capsys, "--out", "not a folder")


def test_a_write_that_fails_is_one_line_status_1(tmp_path, capsys, monkeypatch):
    def full(self, path, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Schedule, "save", full)
    target = tmp_path / "s.json"
    assert main(["plan", "binomial", "--steps", "10", "--snapshots", "3", "--json", str(target)]) == 1
    _one_line_error(capsys, "--json", str(target), "No space left on device")


def test_saved_files_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        binomial(10, snapshots=3).save(tmp_path / "a.json")
        Schedule.from_actions([Record(0), Reverse(0)], n_steps=1).save(tmp_path / "b.json")
    finally:
        os.umask(old)
    for name in ("a.json", "b.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644
    os.chmod(tmp_path / "a.json", 0o600)  # a replaced file keeps its mode
    binomial(10, snapshots=3).save(tmp_path / "a.json")
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o600


def test_binary_schedule_file(tmp_path, capsys):
    f = tmp_path / "bin.json"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ValueError, match="not UTF-8"):
        Schedule.load(f)
    assert main(["simulate", str(f)]) == 2
    _one_line_error(capsys, "not a schedule", "not UTF-8")


# -- Hostile or odd input ---------------------------------------------------------------------------------
def test_deeply_nested_schedule_json(tmp_path, capsys):
    text = "[" * 200_000 + "]" * 200_000
    with pytest.raises(ValueError, match="nested too deeply"):
        Schedule.from_json(text)
    f = tmp_path / "deep.json"
    f.write_text(text)
    assert main(["simulate", str(f)]) == 2
    _one_line_error(capsys, "nested too deeply")


def test_huge_integers_in_a_schedule():
    doc = '{"format": "revolve-schedule", "version": 1, "n_steps": ' + "9" * 5000 + ', "actions": []}'
    with pytest.raises(ValueError, match="not valid JSON") as info:
        Schedule.from_json(doc)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("call,exc,needles", [
    (lambda: revolve.parse_bytes(10**400), ValueError, ["memory", "positive, finite", "digits"]),
    (lambda: revolve.parse_bytes(10**5000), ValueError, ["memory", "positive, finite", "digits"]),
    (lambda: revolve.parse_bytes("-5MiB"), ValueError, ["memory", "positive", "negative"]),
    (lambda: revolve.parse_bytes("1" * 8000), ValueError, ["memory", "at most 100 characters"]),
    (lambda: revolve.parse_bytes(None), TypeError, ["memory", "size in bytes"]),
    (lambda: revolve.optimal(Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=3),
                             memory=10**400), ValueError, ["memory", "finite"]),
    (lambda: Chain(forward_cost=1, backward_cost=1, state_bytes=10**400, tape_bytes=1, n_steps=3),
     ValueError, ["state_bytes", "finite and >= 0"]),
    (lambda: Chain(forward_cost=1, backward_cost=1, state_bytes=[1, 10**400], tape_bytes=1),
     ValueError, ["state_bytes[1]", "finite and >= 0"]),
    (lambda: revolve.beta(True, 1), TypeError, ["revolve.beta", "s", "integer"]),
    (lambda: revolve.beta(2, 1.0), TypeError, ["revolve.beta", "r", "integer"]),
    (lambda: revolve.beta(10**6, 10**6), ValueError, ["revolve.beta", "at most", "bits", "lgamma"]),
    (lambda: simulate([], n_steps=0), ValueError, ["revolve.simulate", "n_steps", ">= 1"]),
    (lambda: simulate([], n_steps=-1), ValueError, ["revolve.simulate", "n_steps", ">= 1"]),
    (lambda: simulate([], n_steps=True), TypeError, ["revolve.simulate", "n_steps", "integer"]),
    (lambda: simulate([], n_steps=1.0), TypeError, ["revolve.simulate", "n_steps", "integer"]),
    (lambda: Advance(0, 1.0), TypeError, ["revolve.Advance", "stop", "integer"]),
    (lambda: Advance(-1, 1), ValueError, ["revolve.Advance", "start", ">= 0"]),
    (lambda: Record(True), TypeError, ["revolve.Record", "step", "integer"]),
    (lambda: Snapshot(0, storage=None), TypeError, ["revolve.Snapshot", "storage", "non-empty string"]),
    (lambda: Snapshot(0, storage=""), ValueError, ["revolve.Snapshot", "storage", "non-empty string"]),
    (lambda: revolve.Restore("1"), TypeError, ["revolve.Restore", "index", "integer"]),
    (lambda: revolve.Discard(2.0), TypeError, ["revolve.Discard", "index", "integer"]),
    (lambda: Reverse(-2), ValueError, ["revolve.Reverse", "step", ">= 0"]),
])
def test_bad_input_names_argument_and_range(call, exc, needles):
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    assert len(str(info.value)) < 400  # a huge value is summarized, not printed


def test_parse_bytes_pathological_text_is_linear():
    # the old pattern backtracked quadratically on a long run of digits that fails to match at its end
    for text in ("1" * 99 + "x", "." * 99, "1." * 49 + "e"):
        with pytest.raises(ValueError, match="must be a size like"):
            revolve.parse_bytes(text)


@given(st.floats(min_value=1e-3, max_value=1e15, allow_nan=False),
       st.sampled_from(["", "B", "kB", "MB", "GB", "KiB", "MiB", "GiB", "TiB"]))
@settings(max_examples=60, deadline=None)
def test_parse_bytes_reads_what_repr_writes(value, unit):
    factor = {"": 1, "B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1024, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
    assert revolve.parse_bytes(f"{value!r}{unit}") == value * factor[unit]
    assert revolve.parse_bytes(f"  {value!r} {unit} ") == value * factor[unit]


def test_beta_still_exact_below_its_limit():
    from math import comb

    assert revolve.beta(5000, 5000) == comb(10_000, 5000)
    assert revolve.beta(10**6, 3) == comb(10**6 + 3, 3)
    assert revolve.beta(-1, 4) == 0


# -- Scale ------------------------------------------------------------------------------------------------
def test_closed_form_stats_equal_the_simulator():
    for n in range(1, 50):
        for k in range(1, 10):
            for sched in (binomial(n, snapshots=k), periodic(n, every=k), store_all(n)):
                replayed, closed = asdict(simulate(sched)), asdict(closed_form_stats(sched))
                known = {f: v for f, v in closed.items() if v is not None}
                assert known == {f: replayed[f] for f in known}, sched
    assert closed_form_stats(Schedule.from_actions([Record(0), Reverse(0)], n_steps=1)) is None


def test_cli_long_plans_answer_from_closed_forms(capsys):
    n = 10**12
    assert main(["plan", "binomial", "--steps", str(n), "--snapshots", "20"]) == 0
    out = capsys.readouterr().out
    assert f"{revolve.binomial_cost(n, snapshots=20):,}" in out and "closed form" in out
    assert main(["plan", "store-all", "--steps", "1000000000"]) == 0
    out = capsys.readouterr().out
    assert "2,000,000,000" in out  # actions
    assert main(["plan", "periodic", "--steps", "1000000000", "--every", "1000"]) == 0
    assert "999,999,000" in capsys.readouterr().out  # advances


# -- Schedule files ---------------------------------------------------------------------------------------
def test_planner_schedule_file_is_small_and_regenerates(tmp_path):
    path = tmp_path / "s.json"
    binomial(10**6, snapshots=20).save(path)
    assert os.path.getsize(path) < 1024
    doc = json.loads(path.read_text())
    assert doc["version"] == 2 and doc["revolve"] == revolve.__version__ and "actions" not in doc
    back = Schedule.load(path)
    assert repr(back) == repr(binomial(10**6, snapshots=20))
    small = binomial(300, snapshots=5)
    small.save(path)
    assert list(Schedule.load(path)) == list(small)


def test_mislabelled_schedule_is_saved_as_its_actions(tmp_path):
    acts = [Snapshot(0), Advance(0, 1), Record(1), Reverse(1), Restore0 := revolve.Restore(0), Record(0), Reverse(0)]
    fake = Schedule.from_actions(acts, n_steps=2, kind="binomial", params={"snapshots": 1})
    path = tmp_path / "s.json"
    fake.save(path)
    assert json.loads(path.read_text())["version"] == 1
    assert list(Schedule.load(path)) == acts and Restore0 in acts
    with pytest.raises(ValueError, match="expand=False needs a planner's schedule"):
        fake.save(path, expand=False)


@pytest.mark.parametrize("doc,needles", [
    ({"kind": "optimal", "params": {}}, ["kind 'optimal' names no planner", "binomial, multilevel, online, periodic, store_all"]),
    ({"kind": "binomial", "params": {"snapshots": 0}}, ["bad binomial params", "snapshots must be >= 1"]),
    ({"kind": "periodic", "params": {}}, ["periodic planner takes params ['every']"]),
])
def test_bad_planner_document(doc, needles):
    full = {"format": "revolve-schedule", "version": 2, "n_steps": 10, **doc}
    with pytest.raises(ValueError) as info:
        Schedule.from_json(json.dumps(full))
    for needle in needles:
        assert needle in str(info.value)


def test_wrong_n_steps_is_found_before_the_actions_are_read(tmp_path, capsys):
    # the actions are invalid; the n_steps check must answer first
    doc = {"format": "revolve-schedule", "version": 1, "n_steps": 5, "actions": [{"op": "jump"}] * 3}
    f = tmp_path / "s.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="n_steps=5 but n_steps=7 is expected"):
        Schedule.load(f, n_steps=7)
    chain = tmp_path / "c.json"
    chain.write_text(Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=7).to_json())
    assert main(["simulate", str(f), "--chain", str(chain)]) == 2
    _one_line_error(capsys, "n_steps=5", "n_steps=7")


# -- the CLI's own edges ----------------------------------------------------------------------------------
def test_version_and_bare_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"revolve {revolve.__version__}"
    assert main([]) == 2
    assert "usage: revolve" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["plan", "optimal", "--chain", "c.json", "--memory", "-5MiB"],
    ["demo", "--memory", "-5MiB"],
])
def test_negative_memory_is_understood(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.json").write_text(Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1,
                                           n_steps=3).to_json())
    assert main(argv) == 2
    _one_line_error(capsys, "--memory", "positive", "-5MiB")


def test_huge_step_count_is_refused_in_one_line(capsys):
    assert main(["plan", "binomial", "--steps", "9" * 5000, "--snapshots", "3"]) == 2
    _one_line_error(capsys, "positive integer (at most 40 digits)")


# -- disk snapshots: errors with context, signals, stale folders -------------------------------------------
def _disk_schedule(n, s):
    return Schedule.from_actions([Snapshot(a.index, "disk") if isinstance(a, Snapshot) else a
                                  for a in binomial(n, snapshots=s)], n_steps=n)


def _run_disk(tmp_path, step, n=12):
    import numpy as np

    from revolve import ad

    return revolve.gradient(step, np.ones(3), n_steps=n, loss=lambda x: ad.sum(x), schedule=_disk_schedule(n, 3),
                            storage={"disk": str(tmp_path)})


def test_vanished_run_folder_names_state_and_folder(tmp_path):
    import shutil

    def step(x, p, i):
        if i == 5:
            for name in os.listdir(tmp_path):
                shutil.rmtree(tmp_path / name)
        return x * 1.5

    with pytest.raises(FileNotFoundError) as info:
        _run_disk(tmp_path, step)
    msg = str(info.value)
    assert "revolve.gradient: cannot write the snapshot of state x_" in msg and "revolve-run-" in msg
    assert os.listdir(tmp_path) == []


def test_disk_full_names_state_and_folder(tmp_path, monkeypatch):
    import errno

    import revolve.storage as storage

    def full(path, mode="w", **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "atomic_file", full)
    with pytest.raises(OSError) as info:
        _run_disk(tmp_path, lambda x, p, i: x * 1.5)
    assert info.value.errno == errno.ENOSPC
    assert "state x_0" in str(info.value) and "No space left on device" in str(info.value)
    assert os.listdir(tmp_path) == []  # the run folder is removed all the same


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a folder that this user cannot write")
def test_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="cannot create a run folder for disk snapshots in"):
            _run_disk(ro, lambda x, p, i: x * 1.5)
    finally:
        ro.chmod(0o700)


_TERM_SCRIPT = """
import sys, time, numpy as np, revolve
from revolve import Schedule, Snapshot, binomial, ad
n = 400
sched = Schedule.from_actions([Snapshot(a.index, "disk") if isinstance(a, Snapshot) else a
                               for a in binomial(n, snapshots=5)], n_steps=n)
def step(x, p, i):
    if i == 3:
        print("ready", flush=True)
    time.sleep(0.01)
    return x * 1.001
revolve.gradient(step, np.ones(4), n_steps=n, loss=lambda x: ad.sum(x), schedule=sched, storage={"disk": sys.argv[1]})
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_removes_the_run_folder_and_sigkill_leftovers_are_removed_next_time(tmp_path):
    import signal
    import subprocess
    import sys
    import warnings

    from revolve.storage import DiskStorage

    script = tmp_path / "run.py"
    script.write_text(_TERM_SCRIPT)
    folder = tmp_path / "snaps"
    folder.mkdir()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        p = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        assert [n for n in os.listdir(folder) if n.startswith("revolve-run-")]  # snapshots are being written
        p.send_signal(sig)
        assert p.wait(timeout=60) == -sig  # the process still ends by the signal
        p.stdout.close()
        if sig == signal.SIGTERM:
            assert os.listdir(folder) == []
    left = os.listdir(folder)
    assert len(left) == 1  # SIGKILL cannot be handled: its folder stays...
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = DiskStorage(folder)  # ...until the next run there removes it
    assert any(left[0] in str(w.message) for w in caught)
    assert os.listdir(folder) == [os.path.basename(d.root)]
    d.close()
    assert os.listdir(folder) == []


def test_folders_of_live_processes_and_without_owner_stay(tmp_path):
    from revolve.storage import DiskStorage, remove_stale_runs

    d = DiskStorage(tmp_path)
    (tmp_path / "revolve-run-old").mkdir()  # no owner file: left alone
    assert remove_stale_runs(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(d.root), "revolve-run-old"])
    d.close()


# -- periodic search in revolve.gradient ------------------------------------------------------------------
def _best_periodic_brute(n, S, T, memory):
    best = None
    for k in range(1, n):
        q = (n - 1) // k
        if q * S + k * T <= memory and (best is None or q * k < best[0]):
            best = (q * k, k)
    return None if best is None else best[1]


@given(n=st.integers(1, 400), S=st.sampled_from([0, 1, 3, 8, 100.5]), T=st.sampled_from([0.0, 1, 2, 7, 50.25]),
       frac=st.floats(0, 1.2))
@settings(max_examples=300, deadline=None)
def test_best_periodic_equals_brute_force(n, S, T, frac):
    from revolve.executor import _best_periodic

    memory = frac * n * max(T, 1)
    assert _best_periodic(n, S, T, memory) == _best_periodic_brute(n, S, T, memory)


def test_planning_a_billion_steps_does_not_allocate_with_n():
    import tracemalloc

    from revolve.executor import StepMeasurement, plan_for_memory

    m = StepMeasurement(state_bytes=8, tape_bytes=80, forward_time=1.0, backward_time=1.0)
    tracemalloc.start()
    try:
        plans = [plan_for_memory(m, 10**9, memory) for memory in (1024.0, 4e9, 8e10 - 1)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # the old search built int64 arrays of n elements (gigabytes)
    assert plans[0].kind == "binomial" and plans[1].kind == "periodic"
    assert plans[1].params["every"] == _best_periodic_brute_closed(10**9, 8, 80, 4e9)


def _best_periodic_brute_closed(n, S, T, memory):
    # every quotient q <= 10^5 by brute force (its block's smallest k is best in the block); a block of larger
    # q has k < n / 10^5, so q*k >= n - k > n - n / 10^5: the answer must beat that bound to be proven best
    best = None
    for q in range(1, 10**5 + 1):
        k = (n - 1) // (q + 1) + 1
        if (n - 1) // k == q and q * S + k * T <= memory and (best is None or q * k <= best[0]):
            best = (q * k, k)
    assert best[0] < n - n // 10**5
    return best[1]


@pytest.mark.parametrize("call,needles", [
    (lambda c: revolve.optimal(c, memory=100), ["revolve.optimal", "10000000000000 steps", "revolve.binomial"]),
    (lambda c: revolve.frontier(c), ["revolve.frontier", "10000000000000 steps", "revolve.binomial"]),
    (lambda c: revolve.min_memory(c), ["revolve.min_memory", "at most", "steps", "revolve.binomial"]),
])
def test_dp_planners_refuse_huge_chains_before_allocating(call, needles):
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=10**13)
    with pytest.raises(ValueError) as info:  # was a MemoryError (n booleans, or n + 1 floats, made first)
        call(chain)
    for needle in needles:
        assert needle in str(info.value)


def test_min_memory_size_guard_covers_optimal_too():
    from revolve.optimal import _MAX_MIN_MEMORY_STEPS

    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=_MAX_MIN_MEMORY_STEPS + 1)
    for call in (revolve.min_memory, lambda c: revolve.optimal(c, memory=1e9, slots=1)):
        with pytest.raises(ValueError, match=f"at most {_MAX_MIN_MEMORY_STEPS}"):
            call(chain)


# -- the docs run as written ------------------------------------------------------------------------------
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DOCS = ["README.md"] + sorted(os.path.join("docs", f) for f in os.listdir(os.path.join(_ROOT, "docs"))
                               if f.endswith(".md"))


def _blocks(path, lang):
    import re

    with open(os.path.join(_ROOT, path), encoding="utf-8") as f:
        return re.findall(rf"^```{lang}\n(.*?)^```", f.read(), re.S | re.M)


def test_docs_have_python_blocks():
    counts = {path: len(_blocks(path, "python")) for path in _DOCS}
    # README 2, simulations.md 4, pytorch.md 1: a block that disappears should be a decision
    assert sum(counts.values()) >= 7, counts


@pytest.mark.parametrize("path", [p for p in _DOCS if _blocks(p, "python")])
def test_docs_python_blocks_run_as_written(path, tmp_path, monkeypatch, capsys):
    blocks = _blocks(path, "python")
    if any("import torch" in b for b in blocks):
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for k, block in enumerate(blocks):  # one namespace per file: later blocks use what earlier ones define
        try:
            exec(compile(block, f"{path} python block {k + 1}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{path}: python block {k + 1} fails: {type(e).__name__}: {e}") from e


def test_readme_commands_run_as_written(tmp_path, monkeypatch, capsys):
    import shlex

    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in _blocks("README.md", "python"):
        exec(block, namespace)  # writes chain.json
    lines = [line for block in _blocks("README.md", "text") for line in block.splitlines()
             if line.startswith("revolve ") and " demo" not in line]  # the demo runs for half a minute
    assert len(lines) >= 7
    for line in lines:
        assert main(shlex.split(line)[1:]) == 0, (line, capsys.readouterr().err)


# -- progress ---------------------------------------------------------------------------------------------
class _Terminal:
    def __init__(self, tty):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_progress_plain_fallback_on_a_terminal_without_tqdm(monkeypatch):
    import sys

    from revolve._io import Progress

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import tqdm.auto raises ImportError
    term = _Terminal(True)
    p = Progress(5, "work", stream=term)
    for _ in range(5):
        p.update()
    p.close()
    assert "work: 5/5 steps (100%)" in term.text and term.text.endswith("\n")
    quiet = _Terminal(False)  # not a terminal: nothing by default
    p = Progress(5, "work", stream=quiet)
    p.update(5)
    p.close()
    assert quiet.text == ""


def test_gradient_progress_true_works_without_tqdm(monkeypatch, capsys):
    import sys

    import numpy as np

    from revolve import ad

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # it raised ImportError before
    r = revolve.gradient(lambda x, p, i: x * 0.5, np.ones(2), n_steps=20, loss=lambda x: ad.sum(x), snapshots=3,
                         progress=True)
    assert np.allclose(r.grad_x0, 0.5**20)
    assert "revolve: reversed steps: 20/20 steps (100%)" in capsys.readouterr().err


def test_demo_checks_u0_and_explains_its_figures(capsys):
    assert main(["demo", "--steps", "20", "--points", "256", "--memory", "128KiB"]) == 0
    out = capsys.readouterr().out
    assert "d loss / d u0 . v" in out
    for figure in ("records:", "advances:", "recomputation ratio:"):
        assert sum(line.strip().startswith(figure) for line in out.splitlines()) == 1, figure


def test_simulating_a_long_uniform_chain_takes_no_memory_per_step():
    import tracemalloc

    from revolve.errors import ScheduleError

    n = 10**6
    chain = Chain(forward_cost=0.5, backward_cost=1.5, state_bytes=8, tape_bytes=24, n_steps=n)
    # the setup is what grew with n: an action that fails at once measures it alone
    bad = Schedule.from_actions([revolve.Restore(5)], n_steps=n)
    tracemalloc.start()
    try:
        with pytest.raises(ScheduleError, match="action #0"):
            simulate(bad, chain)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # the per-step lists took about 4 x 32 bytes x n (over 100 MB here)


def test_uniform_fast_path_equals_the_list_path(monkeypatch):
    import revolve.simulator as sm

    n = sm._LISTS_MAX_STEPS + 7
    chain = Chain(forward_cost=0.1, backward_cost=0.3, state_bytes=8.5, tape_bytes=24, n_steps=n,
                  forward_overhead=3, record_overhead=1, backward_overhead=2, adjoint_bytes=5)
    sched = periodic(n, every=700)
    fast = asdict(simulate(sched, chain))
    monkeypatch.setattr(sm, "_LISTS_MAX_STEPS", 10**12)
    lists = asdict(simulate(sched, chain))
    assert fast.pop("time") == pytest.approx(lists.pop("time"), rel=1e-12)
    assert fast == lists


def test_cli_replay_shows_progress_on_a_terminal_only(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # the plain line (tqdm draws its own bar)
    term = _Terminal(True)
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["plan", "binomial", "--steps", "20000", "--snapshots", "10"]) == 0
    assert "reversed steps: 20,000/20,000 steps (100%)" in term.text
    quiet = _Terminal(False)
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main(["plan", "binomial", "--steps", "20000", "--snapshots", "10"]) == 0
    assert quiet.text == ""
    assert f"{revolve.binomial_cost(20000, snapshots=10):,}" in capsys.readouterr().out


@pytest.mark.parametrize("content,needles", [
    (b"\x7fELF\x02\x01\x01\x00\xd0\xff", ["--chain", "not a chain file", "not UTF-8"]),
    (b"[" * 200_000, ["--chain", "nested too deeply"]),
    (b"{nope", ["--chain", "not valid JSON", "Chain(...).to_json()"]),
])
def test_bad_chain_files_are_one_line(content, needles, tmp_path, capsys):
    f = tmp_path / "chain.json"
    f.write_bytes(content)
    for argv in (["plan", "optimal", "--chain", str(f), "--memory", "1GB"], ["frontier", "--chain", str(f)]):
        assert main(argv) == 2
        _one_line_error(capsys, *needles)


def test_show_must_be_a_count(capsys):
    assert main(["plan", "binomial", "--steps", "10", "--snapshots", "3", "--show", "-1"]) == 2
    _one_line_error(capsys, "--show", ">= 0", "'-1'")


# -- shipped example chains (issue 16: the README's figure and commands need a chain file) ----------------
@pytest.mark.parametrize("name", ["mixed_width.json", "readme_example.json"])
def test_shipped_chains_load_and_plan(name, tmp_path):
    import revolve

    path = os.path.join(_ROOT, "docs", "chains", name)
    chain = revolve.Chain.from_json(path)
    assert chain.n_steps in (12, 20)
    full = revolve.simulate(revolve.store_all(chain.n_steps), chain)
    assert revolve.simulate(revolve.optimal(chain, memory=full.peak_memory), chain).time == pytest.approx(full.time)
    lo = revolve.min_memory(chain)
    assert revolve.simulate(revolve.optimal(chain, memory=lo), chain).peak_memory <= lo < full.peak_memory
    assert main(["plot", "frontier", "--chain", path, "--out", str(tmp_path)]) == 0  # the README caption's command
    assert (tmp_path / "frontier.png").exists()


def test_readme_example_chain_is_the_readme_block(tmp_path, monkeypatch):
    import revolve

    monkeypatch.chdir(tmp_path)  # the block writes chain.json
    namespace = {}
    exec(_blocks("README.md", "python")[1], namespace)
    shipped = revolve.Chain.from_json(os.path.join(_ROOT, "docs", "chains", "readme_example.json"))
    assert shipped.to_json() == namespace["chain"].to_json()


def test_api_reference_is_current():
    """docs/api.md is generated from the docstrings; a public name added or changed without regenerating it
    fails here (python3 docs/make_api.py rewrites it)."""
    pytest.importorskip("torch")
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_api", os.path.join(_ROOT, "docs", "make_api.py"))
    make_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_api)
    with open(os.path.join(_ROOT, "docs", "api.md"), encoding="utf-8") as f:
        assert f.read() == make_api.render(), "docs/api.md is stale: run python3 docs/make_api.py"
