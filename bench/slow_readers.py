#!/usr/bin/env python3
"""Slow /metrics readers: what a client that stops reading costs.

Starts the exporter BINARY with TARGETS scheduled targets (interval 1h, on
127.a.b.c:1, a closed loopback port), scrapes /metrics once, then opens
CLIENTS connections that send GET /metrics and never read (receive buffer
4 KiB). Prints the exporter's resident memory before, the peak over 4 s
with the clients stalled, whether and when the exporter closed them (for
up to 15 s), and the memory 2 s after the clients closed.

Usage: python3 bench/slow_readers.py BINARY [--targets 200000] [--clients 60]
                                     [-- EXTRA EXPORTER FLAGS]
Issue 8, defect 4: before, 60 such clients added 825 MB and were never
closed. Only 127.0.0.0/8 is used; the exporter is stopped on exit.
"""

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def write_config(path, targets):
    with open(path, "w") as f:
        f.write("targets:\n  - module: tcp_halfopen\n    interval: 1h\n    targets:\n")
        for n in range(targets):
            f.write(f'      - "127.{1 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}:1"\n')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_exporter(binary, write, extra):
    """BINARY on a free loopback port, logging warnings only, with flags
    EXTRA and a config in a new work directory that write(path) fills;
    yields (process, port, config path) once it accepts connections (exits
    if it does not within 120 s). Stops it and removes the directory after."""
    work = tempfile.mkdtemp(prefix="synack_bench.")
    config = os.path.join(work, "targets.yml")
    exporter = None
    try:
        write(config)
        port = free_port()
        exporter = subprocess.Popen(
            [binary, "--config.file", config, "--web.listen-address", f"127.0.0.1:{port}",
             "--log.level", "warn", *extra])
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or exporter.poll() is not None:
                    sys.exit("the exporter did not start listening")
                time.sleep(0.1)
        yield exporter, port, config
    finally:
        if exporter is not None:
            exporter.terminate()
            exporter.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def sockets(pid):
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binary")
    parser.add_argument("--targets", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=60)
    parser.add_argument("extra", nargs="*", help="extra exporter flags, after --")
    args = parser.parse_args()
    with running_exporter(args.binary, lambda path: write_config(path, args.targets),
                          args.extra) as (exporter, port, _config):
        clients = []
        try:
            subprocess.run(["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{port}/metrics"],
                           check=True, timeout=120)
            time.sleep(1)
            base, base_sockets = rss_mib(exporter.pid), sockets(exporter.pid)
            for _ in range(args.clients):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect(("127.0.0.1", port))
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                clients.append(s)
            started = time.monotonic()
            peak = base
            while time.monotonic() - started < 4:
                peak = max(peak, rss_mib(exporter.pid))
                time.sleep(0.1)
            print(f"binary {args.binary} {' '.join(args.extra)}")
            print(f"  {args.targets} targets, RSS before {base:.1f} MiB; {args.clients} stalled clients: "
                  f"peak +{peak - base:.1f} MiB ({(peak - base) * 1024 / args.clients:.0f} KiB per client)")
            dropped = None
            while time.monotonic() - started < 15:
                peak = max(peak, rss_mib(exporter.pid))
                if sockets(exporter.pid) <= base_sockets:
                    dropped = time.monotonic() - started
                    break
                time.sleep(0.1)
            print("  the exporter closed them after %s; peak over the whole wait +%.1f MiB"
                  % (f"{dropped:.1f} s" if dropped else "no (still open at 15 s)", peak - base))
            for s in clients:
                s.close()
            clients = []
            time.sleep(2)
            print(f"  2 s after the clients closed: +{rss_mib(exporter.pid) - base:.1f} MiB")
        finally:
            for s in clients:
                s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
