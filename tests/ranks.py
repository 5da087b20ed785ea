"""Launching a worker script as several local processes for the torch.distributed (gloo) tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the rendezvous of the ranks; nothing binds elsewhere)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(script, world: int, out: str, extra=(), timeout: float = 150) -> None:
    """Run ``script rank world port out *extra`` as ``world`` processes and wait for all of them.

    One thread per process, the loopback interface for gloo, the checkout on PYTHONPATH; whatever happens,
    no rank outlives the call, and a rank that fails fails the test with the end of its stderr.
    """
    port = str(free_port())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(world), port, out, *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for r in range(world)]
    try:
        logs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, logs):
        assert p.returncode == 0, err.decode()[-3000:]
