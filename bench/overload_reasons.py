#!/usr/bin/env python3
"""Overload honesty: when the exporter itself is the bottleneck, open ports
must not be reported as `timeout`.

Fires DROPPING concurrent /probe requests at a loopback port that drops
SYNs (a listener whose accept queue is full) and OPEN concurrent requests
at an open loopback port, all at once, against an exporter binary it
starts, then counts the reasons the open-port probes got. Before the fix
(issue 8, defect 1) open ports queued behind the dropping probes were
reported `timeout`; now they must be `success` or `local`.

Usage: python3 bench/overload_reasons.py BINARY [--dropping 4200] [--open 300]
Only 127.0.0.1 is used; every process and socket it opens is closed on exit.
"""

import argparse
import asyncio
import collections
import re
import resource
import socket
import subprocess
import sys
import time

REASON = re.compile(r'^probe_failure_reason\{reason="(\w+)"\} 1(\.0)?$', re.M)
DURATION = re.compile(r"^probe_duration_seconds ([0-9.e-]+)$", re.M)
MODULE_TIMEOUT = 5.0  # the built-in tcp_halfopen module


def saturated_listener():
    """A loopback listener whose full accept queue drops new SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.settimeout(0.3)
        try:
            s.connect(listener.getsockname())
            fillers.append(s)
        except OSError:
            s.close()
            break
    return listener, fillers


async def probe(port, target):
    """One /probe request: (reason, probe_duration_seconds)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /probe?target={target}&module=tcp_halfopen HTTP/1.1\r\n"
        f"Host: x\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    body = (await asyncio.wait_for(reader.read(), 60)).decode()
    writer.close()
    match = REASON.search(body)
    reason = match.group(1) if match else ("success" if "probe_success 1" in body else "?")
    duration = DURATION.search(body)
    return reason, float(duration.group(1)) if duration else None


def tally(results):
    counts = collections.Counter()
    for result in results:
        if isinstance(result, BaseException):
            counts["client error"] += 1
            continue
        reason, duration = result
        # A timeout after less than half the module's timeout was not an
        # honest one: the probe spent the rest queueing in the exporter.
        if reason == "timeout" and duration is not None and duration < MODULE_TIMEOUT / 2:
            reason = "timeout (dishonest: < half the timeout on the wire)"
        counts[reason] += 1
    return dict(sorted(counts.items()))


async def storm(port, dropping, open_, n_dropping, n_open):
    """All requests at once, the open-port ones spread evenly among the
    dropping ones, so that some of them queue behind full slots."""
    total = n_dropping + n_open
    every = max(1, total // max(1, n_open))
    kinds = []
    opens_left = n_open
    for index in range(total):
        is_open = opens_left > 0 and (index % every == every - 1 or total - index <= opens_left)
        kinds.append(is_open)
        opens_left -= is_open
    results = await asyncio.gather(
        *(probe(port, open_ if is_open else dropping) for is_open in kinds),
        return_exceptions=True,
    )
    drop = [r for r, is_open in zip(results, kinds) if not is_open]
    opened = [r for r, is_open in zip(results, kinds) if is_open]
    return tally(drop), tally(opened)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binary")
    parser.add_argument("--dropping", type=int, default=4200)
    parser.add_argument("--open", type=int, default=300)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    listener, fillers = saturated_listener()
    open_listener = socket.socket()
    open_listener.bind(("127.0.0.1", 0))
    open_listener.listen(4096)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exporter = subprocess.Popen(
        [args.binary, "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("the exporter did not start within 15 s")
                time.sleep(0.1)
        dropping = "127.0.0.1:%d" % listener.getsockname()[1]
        open_ = "127.0.0.1:%d" % open_listener.getsockname()[1]
        started = time.monotonic()
        drop_counts, open_counts = asyncio.run(
            storm(port, dropping, open_, args.dropping, args.open)
        )
        print(f"binary: {args.binary}")
        print(f"{args.dropping} probes of a dropping port + {args.open} of an open port, "
              f"all at once, in {time.monotonic() - started:.1f} s")
        print(f"  dropping port: {drop_counts}")
        print(f"  open port:     {open_counts}")
    finally:
        exporter.terminate()
        exporter.wait(timeout=15)
        for s in fillers + [listener, open_listener]:
            s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
