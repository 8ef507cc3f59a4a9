#!/usr/bin/env python3
"""Full /metrics scrapes of many scheduled targets: steady, and right after
a reload that replaces every target.

Starts the exporter BINARY with TARGETS scheduled targets (interval 1h, on
127.a.b.c:1, a closed loopback port) and measures with curl:

  steady   SCRAPES full /metrics scrapes one after another: time, size and
           the exporter's CPU per scrape
  pair     ROUNDS times: two full scrapes at once with GET /-/healthy every
           10 ms beside them, of the same list: the baseline for `reload`
  reload   ROUNDS times: POST /-/reload of a config whose targets all carry
           a new label (every target replaced, so new label sets), then two
           full scrapes at once with GET /-/healthy every 10 ms beside them:
           the reload's time, the scrapes' times and the slowest /-/healthy

Label sets used to be escaped by the first scrape of a new target list, on
an HTTP worker and under a mutex, so a second scrape blocked the other
worker and every endpoint waited for the build; the `reload` figures show
whether that is gone and what the reload pays instead.

Usage: python3 bench/scrape_after_reload.py BINARY [--targets 100000]
           [--scrapes 5] [--rounds 5] [-- EXTRA EXPORTER FLAGS]
Only 127.0.0.0/8 is used; the exporter is stopped on exit.
"""

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scheduler_100k_helper import proc_cpu_seconds, target_address  # noqa: E402
from slow_readers import running_exporter  # noqa: E402

SCRAPE_LIMIT = 120  # seconds; curl gives up after this


def write_config(path, targets, round_label):
    with open(path, "w") as f:
        f.write("targets:\n  - module: tcp_halfopen\n    interval: 1h\n")
        f.write(f'    labels: {{round: "{round_label}"}}\n    targets:\n')
        for i in range(targets):
            f.write(f'      - "{target_address(i)}:1"\n')


def scrape(port):
    """One full /metrics scrape with curl: (seconds, bytes)."""
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "--max-time", str(SCRAPE_LIMIT),
         "-w", "%{time_total} %{size_download} %{http_code}",
         f"http://127.0.0.1:{port}/metrics"],
        capture_output=True, text=True, timeout=SCRAPE_LIMIT + 10, check=False).stdout.split()
    if len(out) != 3 or out[2] != "200":
        sys.exit(f"scrape failed: {out}")
    return float(out[0]), int(float(out[1]))


def request(port, method, path, timeout=30.0):
    """(status, seconds) of one request on a new connection."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        connection.close()


def two_scrapes(port):
    """Two full scrapes at once: their (seconds, bytes)."""
    results = [None, None]

    def one(i):
        results[i] = scrape(port)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SCRAPE_LIMIT + 20)
    if None in results:
        sys.exit("a scrape did not finish")
    return results


def healthy_beside(port, work):
    """Runs work() while GET /-/healthy goes every 10 ms; (result, slowest, n)."""
    stop = threading.Event()
    latencies = []

    def sample():
        while not stop.is_set() and len(latencies) < 100_000:
            try:
                status, took = request(port, "GET", "/-/healthy")
            except OSError:
                status, took = None, 0.0
            latencies.append(took if status == 200 else float("inf"))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = work()
    finally:
        stop.set()
        sampler.join(timeout=60)
    return result, max(latencies, default=0.0), len(latencies)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binary")
    parser.add_argument("--targets", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("extra", nargs="*", help="extra exporter flags, after --")
    args = parser.parse_args()
    with running_exporter(args.binary, lambda path: write_config(path, args.targets, "0"),
                          args.extra) as (exporter, port, config):
        print(f"binary {args.binary} {' '.join(args.extra)}; {args.targets} targets")

        scrape(port)  # the first scrape of the start-up list is not steady
        times, cpu = [], []
        for _ in range(args.scrapes):
            before = proc_cpu_seconds(exporter.pid)
            took, size = scrape(port)
            cpu.append(proc_cpu_seconds(exporter.pid) - before)
            times.append(took)
        print(f"  steady: {args.scrapes} full scrapes of {size / 1e6:.1f} MB: median "
              f"{statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}); "
              f"exporter CPU per scrape median {statistics.median(cpu):.2f} s")

        for n in range(1, args.rounds + 1):
            scrapes, slowest, samples = healthy_beside(port, lambda: two_scrapes(port))
            print(f"  pair {n}: two scrapes at once {scrapes[0][0]:.3f} s and {scrapes[1][0]:.3f} s; "
                  f"/-/healthy beside them: {samples} requests, slowest {slowest * 1000:.1f} ms")

        for n in range(1, args.rounds + 1):
            write_config(config, args.targets, str(n))
            status, reload_took = request(port, "POST", "/-/reload", timeout=120)
            if status != 200:
                sys.exit(f"reload {n} answered {status}")

            scrapes, slowest, samples = healthy_beside(port, lambda: two_scrapes(port))
            print(f"  reload {n}: POST /-/reload {reload_took:.3f} s; then two scrapes at once "
                  f"{scrapes[0][0]:.3f} s and {scrapes[1][0]:.3f} s; /-/healthy beside them: "
                  f"{samples} requests, slowest {slowest * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
