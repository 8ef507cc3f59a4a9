#!/usr/bin/env python3
"""Helper for bench/probe_vs_blackbox.sh (Python standard library only).

Subcommands:

  freeport                  print a free TCP port on 127.0.0.1
  target                    run the probe target: a listener on 127.0.0.1
                            that accepts every connection and closes it at
                            once (after --banner TEXT, if given), counting
                            them (SIGUSR1 writes the count); with
                            --tls-cert/--tls-key it shakes hands first, and
                            counts the handshakes completed
  measure                   run one wrk load against one exporter and write
                            a JSON record: wrk's numbers, CPU time of the
                            exporter, the target and wrk, machine CPU use,
                            and how many probes the exporter really ran
  report                    print the per-round table and/or the summary
                            from the JSON records; exit 0 on PASS, 1 on FAIL
                            (with --no-goals: figures only, exit 0)

Everything stays on 127.0.0.1.
"""

import argparse
import concurrent.futures
import json
import os
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# freeport


def cmd_freeport(_args):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


# --------------------------------------------------------------------------
# target


def write_count_file(path, count):
    """Writes the target's count where target_count reads it, atomically."""
    with open(path + ".tmp", "w") as f:
        f.write(f"{count}\n")
    os.replace(path + ".tmp", path)


def cmd_target(args):
    """Accept-and-close listener. Blocking accept() in one thread is the
    cheapest Python can do; a full backlog would make blackbox's SYNs wait
    for retransmission, so the loop only accepts and closes."""
    count = 0

    def write_count(_sig, _frame):
        write_count_file(args.count_file, count)

    def stop(_sig, _frame):
        sys.exit(0)

    signal.signal(signal.SIGUSR1, write_count)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((args.host, args.port))
    s.listen(args.backlog)
    with open(args.ready_file + ".tmp", "w") as f:
        f.write("ready\n")
    os.replace(args.ready_file + ".tmp", args.ready_file)
    accept = s.accept
    if args.tls_cert:
        serve_tls(args, accept)
    while True:
        try:
            conn, _ = accept()
        except OSError:
            # EMFILE/ECONNABORTED and the like: keep listening.
            time.sleep(0.001)
            continue
        count += 1
        if args.banner:
            try:
                conn.send(args.banner.encode())
            except OSError:
                pass
        conn.close()


def serve_tls(args, accept):
    """The TLS target: handshakes run on a pool of threads (OpenSSL releases
    the GIL), so one slow client does not hold up the others; each
    connection is closed after its handshake, as a probe closes it. Counts
    completed handshakes, the TLS probe's unit of work, and never returns."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.tls_cert, args.tls_key)
    handshakes = [0]
    lock = threading.Lock()

    def write_count(_sig, _frame):
        write_count_file(args.count_file, handshakes[0])

    def shake(conn):
        try:
            conn.settimeout(10)
            with context.wrap_socket(conn, server_side=True):
                with lock:
                    handshakes[0] += 1
        except (OSError, ValueError):
            conn.close()

    signal.signal(signal.SIGUSR1, write_count)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        while True:
            try:
                conn, _ = accept()
            except OSError:
                time.sleep(0.001)
                continue
            pool.submit(shake, conn)


def target_count(pid, count_file, timeout=5.0):
    """Asks the target (SIGUSR1) for its accept count."""
    try:
        os.unlink(count_file)
    except FileNotFoundError:
        pass
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(count_file) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            time.sleep(0.005)
    raise RuntimeError(f"target (pid {pid}) did not report its accept count within {timeout}s")


# --------------------------------------------------------------------------
# measure


def proc_cpu_seconds(pid):
    """utime + stime of a process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu():
    """(busy, steal, total) jiffies summed over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    values = [int(v) for v in parts[1:]]
    user, nice, system, idle, iowait, irq, softirq = values[:7]
    steal = values[7] if len(values) > 7 else 0
    total = user + nice + system + idle + iowait + irq + softirq + steal
    busy = user + nice + system + irq + softirq
    return busy, steal, total


def fetch(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode("utf-8", "replace")


def ours_probe_counts(metrics_url):
    """{result: count} summed over modules from synack_exporter_probes_total."""
    counts = {}
    for line in fetch(metrics_url).splitlines():
        if line.startswith("synack_exporter_probes_total{"):
            m = re.search(r'result="([^"]*)"', line)
            value = float(line.rsplit(" ", 1)[1])
            if m:
                counts[m.group(1)] = counts.get(m.group(1), 0) + value
    return counts


UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * UNIT[m.group(2)]


def parse_wrk(output):
    result = {
        "rps": None,
        "requests": None,
        "p50_ms": None,
        "p75_ms": None,
        "p90_ms": None,
        "p99_ms": None,
        "non2xx": 0,
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
    }
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.M)
    if m:
        result["rps"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+)", output, re.M)
    if m:
        result["requests"] = int(m.group(1))
    m = re.search(r"Latency Distribution\s*\n((?:\s+\d+%\s+\S+\s*\n)+)", output)
    if m:
        for pct, value in re.findall(r"(\d+)%\s+(\S+)", m.group(1)):
            result[f"p{pct}_ms"] = to_ms(value)
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if m:
        result["non2xx"] = int(m.group(1))
    m = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if m:
        result["socket_errors"] = dict(
            zip(["connect", "read", "write", "timeout"], map(int, m.groups()))
        )
    return result


def run_wrk(cmd, timeout):
    """Runs wrk; returns (exit status, output, CPU seconds of wrk)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise RuntimeError(
            f"wrk did not finish within {timeout}s: {' '.join(cmd)}\n{output}"
        )
    # communicate() already reaped wrk; its rusage is in RUSAGE_CHILDREN,
    # which only grows, so the caller takes differences.
    return proc.returncode, output, time.monotonic() - start


def children_cpu():
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# The kinds that are a synack_exporter, whose /metrics counts its probes:
# this tree's build (its socket engine, "ours", and its raw engine, "raw"),
# and BASELINE_REV's.
SYNACK_KINDS = ("ours", "raw", "before")
# The HTTP alone: wrk on a synack_exporter's /-/healthy, no probe at all.
HTTP_ONLY_KINDS = ("healthy",)


def tcp_counters():
    """The kernel's Tcp counters of /proc/net/snmp, as {name: value}."""
    with open("/proc/net/snmp") as f:
        rows = [line.split()[1:] for line in f if line.startswith("Tcp:")]
    return {name: int(value) for name, value in zip(rows[0], rows[1])}


def cmd_measure(args):
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}",
        "--latency",
        args.url,
    ]
    if args.warmup:
        cmd[3] = f"-d{args.warmup}"
        code, output, _ = run_wrk(cmd, args.wrk_timeout)
        if code != 0:
            print(output, file=sys.stderr)
            sys.exit(f"warm-up wrk failed with exit status {code}")
        return

    def snapshot():
        return {
            "exporter": proc_cpu_seconds(args.exporter_pid),
            "target": proc_cpu_seconds(args.target_pid),
            "wrk": children_cpu(),
            "machine": machine_cpu(),
            "accepts": target_count(args.target_pid, args.count_file),
            "ours": ours_probe_counts(args.metrics_url) if args.kind in SYNACK_KINDS else None,
            "tcp": tcp_counters(),
        }

    before = snapshot()
    code, output, wall = run_wrk(cmd, args.wrk_timeout)
    after = snapshot()
    with open(args.raw_out, "w") as f:
        f.write(output)
    record = parse_wrk(output)
    busy = after["machine"][0] - before["machine"][0]
    steal = after["machine"][1] - before["machine"][1]
    total = after["machine"][2] - before["machine"][2]
    ncpu = os.cpu_count() or 1
    record.update(
        {
            "kind": args.kind,
            "round": args.round,
            "command": " ".join(cmd),
            "wrk_exit": code,
            "wall_s": wall,
            "cpu_exporter_s": after["exporter"] - before["exporter"],
            "cpu_target_s": after["target"] - before["target"],
            "cpu_wrk_s": after["wrk"] - before["wrk"],
            # Percent of one CPU, like top; the machine has ncpu * 100%.
            "machine_busy_pct": 100.0 * ncpu * busy / total if total else 0.0,
            "machine_steal_pct": 100.0 * ncpu * steal / total if total else 0.0,
            "target_accepts": after["accepts"] - before["accepts"],
            # Machine-wide (other work on the host counts too): connect()s and
            # RSTs sent. The socket engine makes one connect() per probe, the
            # raw engine none (wrk's own connections are a few).
            "tcp_active_opens": after["tcp"]["ActiveOpens"] - before["tcp"]["ActiveOpens"],
            "tcp_out_rsts": after["tcp"]["OutRsts"] - before["tcp"]["OutRsts"],
        }
    )
    if args.kind in HTTP_ONLY_KINDS:
        record["probes_success"] = None
        record["probes_failed"] = None
    elif args.kind in SYNACK_KINDS:
        delta = {
            k: after["ours"].get(k, 0) - before["ours"].get(k, 0)
            for k in set(after["ours"]) | set(before["ours"])
        }
        record["probes_success"] = int(delta.get("success", 0))
        record["probes_failed"] = int(sum(v for k, v in delta.items() if k != "success"))
    else:
        # blackbox exports no probe counters; every successful full-connect
        # probe is exactly one accept() at the target.
        record["probes_success"] = record["target_accepts"]
        record["probes_failed"] = None

    problems = check(record, args.connections)
    record["problems"] = problems
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    if problems:
        print(output, file=sys.stderr)
        for p in problems:
            print(f"ERROR [{args.kind} round {args.round}]: {p}", file=sys.stderr)
        sys.exit(3)


def check(r, connections):
    problems = []
    if r["wrk_exit"] != 0:
        problems.append(f"wrk exited with status {r['wrk_exit']}")
    for key in ("rps", "requests", "p50_ms", "p99_ms"):
        if r[key] is None:
            problems.append(f"could not parse {key} from wrk's output")
    if r["non2xx"]:
        problems.append(f"{r['non2xx']} non-2xx/3xx responses")
    errors = sum(r["socket_errors"].values())
    if errors:
        problems.append(f"{errors} socket errors {r['socket_errors']}")
    if r["requests"] and r["kind"] not in HTTP_ONLY_KINDS:
        # wrk counts completed responses; up to `connections` requests can be
        # in flight when it stops, so the exporter may run a few more probes.
        if r["probes_success"] < r["requests"]:
            problems.append(
                f"only {r['probes_success']} successful probes for {r['requests']} "
                f"responses: some /probe answers carried probe_success 0"
            )
        if r["probes_success"] > r["requests"] + connections + 4:
            problems.append(
                f"{r['probes_success']} successful probes for only {r['requests']} "
                f"responses: something else is probing"
            )
    if r.get("probes_failed"):
        problems.append(f"{r['probes_failed']} failed probes (probe_success 0)")
    return problems


# --------------------------------------------------------------------------
# report


def load(paths):
    records = []
    for p in paths:
        with open(p) as f:
            records.append(json.load(f))
    return records


def per_request_us(seconds, requests):
    return 1e6 * seconds / requests if requests else float("nan")


def row(r):
    return (
        f"{r['round']:>5}  {r['kind']:<8} {r['rps']:>10.0f} {r['p50_ms']:>9.3f} "
        f"{r['p99_ms']:>9.3f} {r['requests']:>9} "
        f"{100 * r['cpu_exporter_s'] / r['wall_s']:>7.0f}% "
        f"{per_request_us(r['cpu_exporter_s'], r['requests']):>8.1f} "
        f"{100 * r['cpu_target_s'] / r['wall_s']:>7.0f}% "
        f"{100 * r['cpu_wrk_s'] / r['wall_s']:>6.0f}% "
        f"{r['machine_busy_pct']:>6.0f}% {r['machine_steal_pct']:>6.1f}% "
        f"{r['target_accepts']:>9}"
    )


HEADER = (
    "round  exporter      req/s   p50(ms)   p99(ms)  requests  expCPU  "
    "CPUus/rq  tgtCPU  wrkCPU  mach%  steal%   accepts"
)


# The label of each kind in the summary, in its column order.
LABELS = {"ours": "ours", "raw": "ours raw", "before": "before", "blackbox": "blackbox",
          "healthy": "/-/healthy"}


def spread(values, unit="x"):
    """' (rounds 1.9-2.3x)': the per-round range of a ratio or figure."""
    values = [v for v in values if v == v]  # without NaN
    if not values:
        return ""
    if len(values) == 1:
        return f" (1 round: {values[0]:.2f}{unit})"
    return f" (rounds {min(values):.2f}-{max(values):.2f}{unit}, {len(values)} rounds)"


def cmd_report(args):
    records = load(args.records)
    if args.round_only:
        print(HEADER)
        for r in records:
            print(row(r))
        by = {r["kind"]: r for r in records}
        for kind in ("ours", "raw"):
            if kind in by and "blackbox" in by and by["blackbox"]["rps"]:
                print(
                    f"round {records[0]['round']}: {LABELS[kind]}/blackbox req/s = "
                    f"{by[kind]['rps'] / by['blackbox']['rps']:.2f}x; p99 "
                    f"{by[kind]['p99_ms']:.3f} ms vs {by['blackbox']['p99_ms']:.3f} ms"
                )
        return

    kinds = [k for k in LABELS if any(r["kind"] == k for r in records)]
    runs = {k: [r for r in records if r["kind"] == k] for k in kinds}
    # by round: {kind: {round: record}}
    by_round = {k: {r["round"]: r for r in runs[k]} for k in kinds}
    # bench/halfopen_ref.c's JSON lines (the same probe's syscalls in a C
    # loop) and bench/raw_ref.c's (the raw engine's), one per round, in
    # round order.
    c_loop = load(args.reference) if args.reference else []
    raw_loop = load(args.raw_reference) if args.raw_reference else []
    print("All runs:")
    print(HEADER)
    order = {k: i for i, k in enumerate(LABELS)}
    for r in sorted(records, key=lambda r: (r["round"], order[r["kind"]])):
        print(row(r))
    print()

    def med(rs, key):
        return statistics.median(r[key] for r in rs)

    def cpu(r):
        return per_request_us(r["cpu_exporter_s"], r["requests"])

    def med_cpu(rs, key):
        return statistics.median(per_request_us(r[key], r["requests"]) for r in rs)

    def round_ratios(num, den, f):
        """f(num's record) / f(den's record), round by round."""
        a, b = by_round.get(num, {}), by_round.get(den, {})
        return [f(a[n]) / f(b[n]) for n in sorted(a) if n in b and f(b[n])]

    def c_round_ratios(kind, loop):
        """kind's CPU per request / the C loop's per probe, round by round."""
        rounds = sorted(by_round.get(kind, {}))
        return [cpu(by_round[kind][n]) / loop[n - 1]["cpu_per_probe_us"]
                for n in rounds if n - 1 < len(loop) and loop[n - 1]["cpu_per_probe_us"]]

    probers = [k for k in kinds if k != "healthy"]
    rounds_n = max(len(runs[k]) for k in kinds)
    print(f"Summary over {rounds_n} rounds (medians):")
    print("  " + f"{'':<22}" + "".join(f"{LABELS[k]:>14}" for k in probers))

    def line(label, f, fmt):
        print("  " + f"{label:<22}" + "".join(format(f(runs[k]), fmt).rjust(14) for k in probers))

    line("requests/s", lambda rs: med(rs, "rps"), ".0f")
    line("p50 latency (ms)", lambda rs: med(rs, "p50_ms"), ".3f")
    line("p99 latency (ms)", lambda rs: med(rs, "p99_ms"), ".3f")
    print("  " + f"{'exporter CPU %':<22}" + "".join(
        f"{statistics.median(100 * r['cpu_exporter_s'] / r['wall_s'] for r in runs[k]):>13.0f}%"
        for k in probers))
    line("exporter CPU us/probe", lambda rs: med_cpu(rs, "cpu_exporter_s"), ".1f")
    line("target CPU us/probe", lambda rs: med_cpu(rs, "cpu_target_s"), ".1f")
    line("wrk CPU us/request", lambda rs: med_cpu(rs, "cpu_wrk_s"), ".1f")
    line("target accepts/run", lambda rs: med(rs, "target_accepts"), ".0f")
    if all("tcp_active_opens" in r for k in probers for r in runs[k]):
        # machine-wide: a socket-engine probe is one connect(), a raw one none
        line("connect()s/request", lambda rs: statistics.median(
            r["tcp_active_opens"] / r["requests"] for r in rs if r["requests"]), ".3f")

    goals = []
    c_cpu = statistics.median(r["cpu_per_probe_us"] for r in c_loop) if c_loop else None
    bb = runs.get("blackbox", [])
    b_rps = med(bb, "rps") if bb else None
    b_cpu = med_cpu(bb, "cpu_exporter_s") if bb else None

    if "ours" in runs and bb:
        ours = runs["ours"]
        o_rps, o_cpu = med(ours, "rps"), med_cpu(ours, "cpu_exporter_s")
        o_p99, b_p99 = med(ours, "p99_ms"), med(bb, "p99_ms")
        ratio = o_rps / b_rps if b_rps else float("inf")
        cpu_ratio = b_cpu / o_cpu if o_cpu else float("inf")
        print(f"  ratio ours/blackbox of median requests/s: {ratio:.2f}x"
              + spread(round_ratios("ours", "blackbox", lambda r: r["rps"])))
        print(f"  ratio blackbox/ours of median exporter CPU per probe: {cpu_ratio:.2f}x"
              + spread(round_ratios("blackbox", "ours", cpu)))
        goals += [
            ("ours >= 7x blackbox requests/s", ratio >= 7, f"{ratio:.2f}x"),
            ("blackbox CPU per probe >= 12x ours", cpu_ratio >= 12, f"{cpu_ratio:.2f}x"),
            ("ours p99 < blackbox p99", o_p99 < b_p99, f"{o_p99:.3f} vs {b_p99:.3f} ms"),
        ]
    if c_loop:
        print(
            f"  C loop (bench/halfopen_ref.c, {len(c_loop)} runs): {c_cpu:.1f} us per probe, "
            f"{statistics.median(r['probes_per_s'] for r in c_loop):.0f} probes/s on one thread"
            + spread([r["cpu_per_probe_us"] for r in c_loop], " us")
        )
        if "ours" in runs:
            c_ratio = med_cpu(runs["ours"], "cpu_exporter_s") / c_cpu
            print(f"  ratio ours per /probe / C loop per probe: {c_ratio:.2f}x"
                  + spread(c_round_ratios("ours", c_loop)))
            goals.append(("ours CPU per /probe <= 1.5x the C loop", c_ratio <= 1.5, f"{c_ratio:.2f}x"))

    if "raw" in runs:
        raw = runs["raw"]
        r_rps, r_cpu = med(raw, "rps"), med_cpu(raw, "cpu_exporter_s")
        if bb:
            ratio = r_rps / b_rps if b_rps else float("inf")
            cpu_ratio = b_cpu / r_cpu if r_cpu else float("inf")
            print(f"  ratio ours raw/blackbox of median requests/s: {ratio:.2f}x"
                  + spread(round_ratios("raw", "blackbox", lambda r: r["rps"])))
            print(f"  ratio blackbox/ours raw of median exporter CPU per probe: {cpu_ratio:.2f}x"
                  + spread(round_ratios("blackbox", "raw", cpu)))
            goals += [
                ("ours raw >= 7x blackbox requests/s", ratio >= 7, f"{ratio:.2f}x"),
                ("blackbox CPU per probe >= 15x ours raw", cpu_ratio >= 15, f"{cpu_ratio:.2f}x"),
            ]
        if "ours" in runs:
            print(f"  ratio ours raw/ours (socket) of median exporter CPU per probe: "
                  f"{r_cpu / med_cpu(runs['ours'], 'cpu_exporter_s'):.2f}x"
                  + spread(round_ratios("raw", "ours", cpu)))
        if c_loop:
            c_ratio = r_cpu / c_cpu
            print(f"  ratio ours raw per /probe / C loop (halfopen_ref.c) per probe: {c_ratio:.2f}x"
                  + spread(c_round_ratios("raw", c_loop)))
            goals.append(("ours raw CPU per /probe <= 1.0x the C loop (halfopen_ref.c)",
                          c_ratio <= 1.0, f"{c_ratio:.2f}x"))
        accepts = sum(r["target_accepts"] for r in raw)
        goals.append(("ours raw: 0 accepts over every run", accepts == 0, str(accepts)))
        if all("tcp_active_opens" in r for r in raw):
            opens = statistics.median(r["tcp_active_opens"] / r["requests"] for r in raw)
            goals.append(("ours raw made no connect() per probe (machine-wide "
                          "ActiveOpens/request < 0.1)", opens < 0.1, f"{opens:.3f}"))
    if raw_loop:
        rl_cpu = statistics.median(r["cpu_per_probe_us"] for r in raw_loop)
        print(
            f"  raw C loop (bench/raw_ref.c, {len(raw_loop)} runs, {raw_loop[0]['mode']}): "
            f"{rl_cpu:.1f} us per probe, "
            f"{statistics.median(r['probes_per_s'] for r in raw_loop):.0f} probes/s on one thread"
            + spread([r["cpu_per_probe_us"] for r in raw_loop], " us")
        )
        if c_loop:
            print(f"  ratio raw C loop / C loop per probe: {rl_cpu / c_cpu:.2f}x"
                  + spread([a["cpu_per_probe_us"] / b["cpu_per_probe_us"]
                            for a, b in zip(raw_loop, c_loop)]))
        if "raw" in runs:
            print(f"  ratio ours raw per /probe / raw C loop per probe: "
                  f"{med_cpu(runs['raw'], 'cpu_exporter_s') / rl_cpu:.2f}x"
                  + spread(c_round_ratios("raw", raw_loop)))
        bad = [r for r in raw_loop if r.get("accepts") or r["timeout"] or r["local"]]
        goals.append(("raw C loop: 0 accepts, timeouts, local errors", not bad,
                      f"{len(bad)} of {len(raw_loop)} runs had some"))
    if "healthy" in runs:
        h = runs["healthy"]
        h_cpu = med_cpu(h, "cpu_exporter_s")
        print(f"  /-/healthy alone (the HTTP cost): {med(h, 'rps'):.0f} requests/s, "
              f"{h_cpu:.1f} us exporter CPU per request"
              + spread([cpu(r) for r in h], " us"))
        for kind in ("ours", "raw"):
            if kind in runs:
                k_cpu = med_cpu(runs[kind], "cpu_exporter_s")
                print(f"  breakdown of {LABELS[kind]} /probe: {k_cpu:.1f} us = {h_cpu:.1f} us HTTP "
                      f"(/-/healthy) + {k_cpu - h_cpu:.1f} us probe and its metrics"
                      + spread([cpu(by_round[kind][n]) - cpu(by_round["healthy"][n])
                                for n in sorted(by_round[kind]) if n in by_round["healthy"]],
                               " us"))
    before = runs.get("before", [])
    if before and "ours" in runs:
        o_rps, o_cpu = med(runs["ours"], "rps"), med_cpu(runs["ours"], "cpu_exporter_s")
        e_rps, e_cpu = med(before, "rps"), med_cpu(before, "cpu_exporter_s")
        before_ratio = o_cpu / e_cpu if e_cpu else float("inf")
        print(
            f"  before (the baseline revision, {len(before)} runs): {e_rps:.0f} requests/s, "
            f"{e_cpu:.1f} us exporter CPU per probe, p99 {med(before, 'p99_ms'):.3f} ms"
        )
        print(f"  ratio ours/before of median exporter CPU per probe: {before_ratio:.2f}x"
              + spread(round_ratios("ours", "before", cpu)))
        print(f"  ratio ours/before of median requests/s: {o_rps / e_rps if e_rps else float('inf'):.2f}x")
        goals.append(
            ("ours CPU per /probe <= 1.10x before's", before_ratio <= 1.10, f"{before_ratio:.2f}x")
        )
    print()
    if args.no_goals:
        return
    for goal, met, got in goals:
        print(f"{'ok     ' if met else 'NOT MET'} {goal}: {got}")
    verdict = "PASS" if all(met for _, met, _ in goals) else "FAIL"
    print(verdict)
    sys.exit(0 if verdict == "PASS" else 1)


# --------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    sub.add_parser("freeport").set_defaults(func=cmd_freeport)

    p = sub.add_parser("target")
    p.add_argument("--port", type=int, required=True)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 only inside a network namespace the caller made",
    )
    p.add_argument("--backlog", type=int, default=4096)
    p.add_argument(
        "--banner",
        default="",
        help="send this text to every accepted connection before closing it, as SSH or SMTP servers greet",
    )
    p.add_argument("--count-file", required=True)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--tls-cert", help="PEM certificate chain: serve TLS with it")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.set_defaults(func=cmd_target)

    p = sub.add_parser("measure")
    p.add_argument("--kind", choices=["ours", "raw", "before", "blackbox", "healthy"], required=True)
    p.add_argument("--round", type=int, default=0)
    p.add_argument("--url", required=True)
    p.add_argument("--metrics-url")
    p.add_argument("--exporter-pid", type=int)
    p.add_argument("--target-pid", type=int)
    p.add_argument("--count-file")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", default="10s")
    p.add_argument("--warmup", help="only run a warm-up of this duration")
    p.add_argument("--wrk-timeout", type=float, default=120)
    p.add_argument("--out")
    p.add_argument("--raw-out")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("report")
    p.add_argument("--round-only", action="store_true")
    p.add_argument(
        "--no-goals",
        action="store_true",
        help="print the figures only: no goals, no PASS/FAIL (exit 0)",
    )
    p.add_argument(
        "--reference",
        action="append",
        help="a JSON line of bench/halfopen_ref.c (repeatable, one per round in round order): the C loop to compare with",
    )
    p.add_argument(
        "--raw-reference",
        action="append",
        help="a JSON line of bench/raw_ref.c (repeatable, one per round in round order): the raw C loop",
    )
    p.add_argument("records", nargs="+")
    p.set_defaults(func=cmd_report)

    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
