#!/usr/bin/env python3
"""Few file descriptors, many /probe clients: do /metrics and /-/healthy answer?

Issue 18, item 12: with RLIMIT_NOFILE 256 and 1,500 concurrent /probe
clients, /metrics took 7.7 s: it waited in the kernel's accept queue behind
connections the exporter could not accept. This script measures exactly
that, on loopback only:

  1. a loopback listener whose accept queue is full drops every SYN, so a
     /probe of it holds its client's connection for the module's timeout;
  2. the exporter runs under `prlimit --nofile=LIMIT:LIMIT` with the
     embedded config (tcp_halfopen, 5 s timeout);
  3. CLIENTS connections are opened at once, each sending
     GET /probe?target=<dropping listener>&module=tcp_halfopen;
  4. while they are open, GET /metrics and GET /-/healthy, each on a new
     connection, SAMPLES times each, back to back.

Reported: the status and latency of every sample (max and median per
path), and how the /probe clients were answered (status counts, and how
many got no answer within --request-timeout).

Usage:
  python3 bench/fd_exhaustion.py [--binary target/debug/synack_exporter]
      [--limit 256] [--clients 1500] [--samples 10]
      [--extra "--config.file FILE ..."] [--module NAME]

--extra and --module try other probes, such as an exec module whose
command sleeps (its pipes are descriptors that no limit counts, so the
exporter may run out and shed connections with a quick 503).

Exit status 0 when it measured, 2 on a setup error. Everything it starts is
stopped on exit; only 127.0.0.1 is used. Python standard library only.
"""

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dropping_listener():
    """A listener with a full accept queue: new SYNs are dropped."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(8):
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.settimeout(0.3)
        try:
            filler.connect(listener.getsockname())
        except OSError:
            filler.close()
            break
        fillers.append(filler)
    return listener, fillers


async def get(port, path, timeout):
    """(status or None, seconds) of GET path on a new connection."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            head = await reader.readline()
            while await reader.read(65536):
                pass
            writer.close()
        status = int(head.split()[1]) if head.startswith(b"HTTP/") else None
    except (TimeoutError, OSError, ValueError, IndexError):
        status = None
    return status, time.monotonic() - started


async def measure(port, target, args):
    probe_path = f"/probe?target={target}&module={args.module}"
    clients = [
        asyncio.create_task(get(port, probe_path, args.request_timeout))
        for _ in range(args.clients)
    ]
    # Let the clients connect and fill the exporter's descriptors.
    await asyncio.sleep(args.settle)
    samples = {"/metrics": [], "/-/healthy": []}
    for _ in range(args.samples):
        for path, results in samples.items():
            results.append(await get(port, path, args.request_timeout))
    answered = await asyncio.gather(*clients)
    return samples, answered


def report(samples, answered, args):
    print(
        f"limit={args.limit} clients={args.clients} samples={args.samples} "
        f"binary={args.binary}"
    )
    for path, results in samples.items():
        times = [seconds for _, seconds in results]
        statuses = [status for status, _ in results]
        print(
            f"{path:12} max={max(times):.3f}s median={statistics.median(times):.3f}s "
            f"statuses={statuses}"
        )
    counts = {}
    for status, _ in answered:
        counts[status] = counts.get(status, 0) + 1
    slowest = max(seconds for _, seconds in answered)
    print(
        f"/probe clients by status (None: no answer within "
        f"{args.request_timeout}s): {dict(sorted(counts.items(), key=str))}; "
        f"slowest {slowest:.3f}s"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--binary", default=os.path.join(ROOT, "target/debug/synack_exporter")
    )
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--clients", type=int, default=1500)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--request-timeout", type=float, default=20.0)
    parser.add_argument("--extra", default="", help="more exporter flags")
    parser.add_argument(
        "--module", default="tcp_halfopen", help="the module of the /probe clients"
    )
    args = parser.parse_args()
    if not os.access(args.binary, os.X_OK):
        print(f"no binary at {args.binary}: cargo build first", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.clients + 2 * args.samples + 100
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        except (ValueError, OSError) as error:
            print(f"cannot raise this script's open file limit: {error}", file=sys.stderr)
            return 2
    listener, fillers = dropping_listener()
    target = "127.0.0.1:%d" % listener.getsockname()[1]
    port = free_port()
    exporter = subprocess.Popen(
        ["prlimit", f"--nofile={args.limit}:{args.limit}", args.binary,
         "--web.listen-address", f"127.0.0.1:{port}", *args.extra.split()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Read stderr for the whole run, so that logging never blocks the
    # exporter on a full pipe; the announcement says it is listening.
    lines = []
    listening = threading.Event()

    def read_log():
        for line in exporter.stderr:
            lines.append(line.rstrip("\n"))
            if "synack_exporter listening" in line:
                listening.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        if not listening.wait(20):
            print("the exporter did not start: " + " | ".join(lines[-5:]), file=sys.stderr)
            return 2
        samples, answered = asyncio.run(measure(port, target, args))
        report(samples, answered, args)
    finally:
        exporter.terminate()
        try:
            exporter.wait(timeout=15)
        except subprocess.TimeoutExpired:
            exporter.kill()
            exporter.wait()
        reader.join(timeout=5)
        warnings = [line for line in lines if "level=warn" in line]
        print(f"exporter warnings ({len(warnings)}):")
        for line in warnings[:10]:
            print("  " + line[:300])
        listener.close()
        for filler in fillers:
            filler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
