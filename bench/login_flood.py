#!/usr/bin/env python3
"""Wrong-password floods against basic auth (issue 18, item 20).

Starts the release build of this tree (and, with BASELINE_REV, of that
revision, "before") with a web config of 19 users whose bcrypt hashes have
cost 10, and for each flood mode runs wrk with CONNECTIONS connections
sending wrong passwords for "alice" (not a user: exporter-toolkit checks
unknown users against a dummy hash, so they cost the same) to /metrics for
DURATION seconds:

  same      one wrong password, again and again (the issue's reproduction)
  distinct  a new wrong password every request

During each flood, every 2 s, three probes, one after the other:

  scrape      GET /metrics as "scraper", whose login was checked before the
              flood (as Prometheus' would be), from 127.0.0.3
  first       GET /-/healthy as a user never seen before (a first login:
              one bcrypt check), from 127.0.0.3, another client host
  first-same  the same from 127.0.0.1, the flood's own address

and reports each probe's status codes and latency (median and max), the
exporter's CPU over the flood (utime + stime from /proc/PID/stat, before
and after, over the wall time: "1.00" is one core of the machine's 2),
wrk's request rate and status mix, and where the exporter has it,
synack_exporter_web_auth_bcrypt_checks_total.

Usage: python3 bench/login_flood.py [-d 20] [-c 64] [--modes same,distinct]
  env BASELINE_REV  a git revision (such as main) to build and run too, each
                    mode run with it and with this tree, one after the other
  env KEEP_DIR=1    keep the work directory (web config, logs, wrk output)

Only 127.0.0.0/8 is used; every process started is stopped on exit. The
exit status is 0 when everything ran (it measures, it does not judge), 2 on
a setup error.
"""

import argparse
import base64
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Users and bcrypt hashes of cost 10 of their passwords: "scraper" has
# "scraper-pw", uNN has "pw-uNN" (made with the Rust bcrypt crate, 0.19).
USERS = """
scraper scraper-pw $2b$10$Z2hKQUrfR233HQ8usgKpke6rpjdFszIMAdttw2PNZH6M1JGZ.SFuG
u00 pw-u00 $2b$10$mbVMhkjHk63t8LYxq/dMUu1ybB3Tt73/net8PqvlV95fl5Kl522yi
u01 pw-u01 $2b$10$PnOrk50UQduUepQrCZALjOJrV3QTb5sDHTKCVofSJ1JWJGW/iBQie
u02 pw-u02 $2b$10$zcfucLXlZGRhC504KFdhJ.w4m2/DU2GxM8Ose9pfkKcihF.uQRGf.
u03 pw-u03 $2b$10$wGAwJEjRu4QiVAgwmJUXM.kJANRID/h4H1gMEZSlUhWbBgjdrc1p6
u04 pw-u04 $2b$10$0woIUea8xCn46Y6LUmSn5eEctkQY6pRkl87LDgDj3RjSM90A0ng1G
u05 pw-u05 $2b$10$L2ugn6fz1atf9Wm4DBn53O/Km0mxYWJxuSN/NPbdAee94JfjR6QQG
u06 pw-u06 $2b$10$wyUvre38nMxHq6BSjNakmO2MziYPqOaN0hKuFTmlADw/wCs0GGHcq
u07 pw-u07 $2b$10$WwmBuHwsEiMk9XPPv/KCrOPZZOeWbAIWkOPo5A46hyToJNIa.PSq2
u08 pw-u08 $2b$10$R4U7ab/sq41RC4Dh0FasDObs3UG3OQjyny.gnnoGFfG5deSPUkcD2
u09 pw-u09 $2b$10$aBD71LYUlrs2mDuy2sEpkutWQ4safN8NuSJm863GKaZ3SafGLh4he
u10 pw-u10 $2b$10$IolrNTNsW4Hhk0jyOOTX.e3W3CJ.DfjWkoPotYXQCOO4c0IxpOG4O
u11 pw-u11 $2b$10$yVAdTa4qoi3xU0QtAIv9TOYX7bMboRVvWWQPCxsOLRgUFdnTrjRrm
u12 pw-u12 $2b$10$IiH/RWRYWj16Q9HEGO9ga.WZ8esUouerHlprbHNJzwRo27wFa9hc2
u13 pw-u13 $2b$10$xqBU6uqLlD9raw5ewx9G8erp/DiqLpc4qpMO0XQZH.BtB3lIfSFu2
u14 pw-u14 $2b$10$XkTtwHhSzqFNA1XtcAQyCeJoYnw7iYCInEuglcno68.0E1R0WD5l2
u15 pw-u15 $2b$10$kZtz59Ct8u.ohJJFzeUspOa5nDsGqD1Cw449idKogWNZSeewRqGfu
u16 pw-u16 $2b$10$b7ZLfgUTTzS5XxVqjWS.AuLSKZT98k7qQZGz7rbyGE9XfZdPCVlFi
u17 pw-u17 $2b$10$t3laN9uqeZwI8rghB3mSdOSlAO/5dbqY/j5vpkrl.is/wT6.UZqYi
"""

FLOOD_LUA = r"""
local mode = "%(mode)s"
local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b %% 2 ^ i - b %% 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%%d%%d?%%d?%%d?%%d?%%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data %% 3 + 1])
end
local threads = {}
local id = 0
function setup(thread)
  id = id + 1
  thread:set("id", id)
  table.insert(threads, thread)
end
function init(args)
  sent = 0
  counts = { [401] = 0, [503] = 0, other = 0 }
end
function request()
  sent = sent + 1
  local password = "wrong"
  if mode == "distinct" then password = "wrong-" .. id .. "-" .. sent end
  return wrk.format("GET", "/metrics", { ["Authorization"] = "Basic " .. b64("alice:" .. password) })
end
function response(status, headers, body)
  if status == 401 or status == 503 then counts[status] = counts[status] + 1
  else counts.other = counts.other + 1 end
end
function done(summary, latency, requests)
  local c401, c503, other = 0, 0, 0
  for _, thread in ipairs(threads) do
    local counts = thread:get("counts")
    c401 = c401 + counts[401]; c503 = c503 + counts[503]; other = other + counts.other
  end
  io.write(string.format("STATUS 401=%%d 503=%%d other=%%d\n", c401, c503, other))
end
"""


def die(message):
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(2)


def users():
    table = [line.split() for line in USERS.strip().splitlines()]
    return [(user, password, bcrypt) for user, password, bcrypt in table]


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, authorization, source, limit=10.0):
    """GET path from the loopback address source: (status, seconds), with
    status 0 when no answer came within limit."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=limit,
                                      source_address=(source, 0)) as s:
            s.settimeout(limit)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      f"Authorization: {authorization}\r\nConnection: close\r\n\r\n".encode())
            raw = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                raw += chunk
        status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else 0
        return status, time.monotonic() - started, raw
    except OSError:
        return 0, time.monotonic() - started, b""


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build(work):
    """The release binaries: this tree's, and BASELINE_REV's if set."""
    print("== cargo build --release (this tree)", flush=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binaries = [("after", os.path.join(ROOT, "target", "release", "synack_exporter"))]
    rev = os.environ.get("BASELINE_REV")
    if rev:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--verify", f"{rev}^{{commit}}"],
                                capture_output=True, text=True)
        if commit.returncode != 0:
            die(f"BASELINE_REV={rev} is not a commit of {ROOT}")
        print(f"== cargo build --release of {rev} ({commit.stdout.strip()[:12]}), the baseline",
              flush=True)
        # Its own target directory and source tree, kept between runs: git
        # archive gives files the commit's time, so the same revision is
        # not built again.
        target = os.path.join(ROOT, "target", "baseline")
        tree = os.path.join(target, "tree")
        shutil.rmtree(tree, ignore_errors=True)
        os.makedirs(target, exist_ok=True)
        archive = subprocess.Popen(["git", "-C", ROOT, "archive", "--format=tar",
                                    "--prefix=tree/", rev], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", target], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            die(f"git archive {rev} failed")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=tree,
                       env=dict(os.environ, CARGO_TARGET_DIR=target), check=True)
        binaries.insert(0, ("before", os.path.join(ROOT, "target", "baseline", "release",
                                                   "synack_exporter")))
    return binaries


@contextlib.contextmanager
def exporter(binary, web_yml, log):
    port = free_port()
    with open(log, "w") as out:
        process = subprocess.Popen(
            [binary, "--web.listen-address", f"127.0.0.1:{port}", "--web.config.file", web_yml,
             "--log.level", "warn"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            status, _, _ = get(port, "/-/healthy", basic("scraper", "scraper-pw"), "127.0.0.3", 5)
            if status == 200:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                die(f"{binary} did not answer /-/healthy as scraper: {open(log).read()[-500:]}")
            time.sleep(0.2)
        yield process, port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def summary(samples):
    statuses = {}
    for status, _ in samples:
        statuses[status] = statuses.get(status, 0) + 1
    mix = " ".join(f"{status}x{count}" for status, count in sorted(statuses.items()))
    seconds = [latency for _, latency in samples]
    if not seconds:
        return "no samples"
    return (f"{mix:<14} median {statistics.median(seconds) * 1000:7.1f} ms   "
            f"max {max(seconds) * 1000:7.1f} ms")


def flood(name, binary, mode, args, work, fresh_users):
    lua = os.path.join(work, f"flood-{mode}.lua")
    with open(lua, "w") as f:
        f.write(FLOOD_LUA % {"mode": mode})
    with exporter(binary, os.path.join(work, "web.yml"),
                  os.path.join(work, f"{name}-{mode}.log")) as (process, port):
        wrk = ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "-s", lua,
               f"http://127.0.0.1:{port}/metrics"]
        load_before = open("/proc/loadavg").read().split()[0]
        cpu_before, wall_before = cpu_seconds(process.pid), time.monotonic()
        wrk_out = os.path.join(work, f"{name}-{mode}.wrk")
        with open(wrk_out, "w") as out:
            load = subprocess.Popen(wrk, stdout=out, stderr=subprocess.STDOUT)
        samples = {"scrape": [], "first": [], "first-same": []}
        time.sleep(2)
        deadline = wall_before + args.duration - 1
        while time.monotonic() < deadline and fresh_users:
            tick = time.monotonic()
            status, latency, _ = get(port, "/metrics", basic("scraper", "scraper-pw"),
                                     "127.0.0.3")
            samples["scrape"].append((status, latency))
            for kind, source in [("first", "127.0.0.3"), ("first-same", "127.0.0.1")]:
                if not fresh_users:
                    break
                user, password, _ = fresh_users.pop(0)
                status, latency, _ = get(port, "/-/healthy", basic(user, password), source)
                samples[kind].append((status, latency))
            time.sleep(max(0.0, 2 - (time.monotonic() - tick)))
        load.wait(args.duration + 30)
        cpu_after, wall_after = cpu_seconds(process.pid), time.monotonic()
        load_after = open("/proc/loadavg").read().split()[0]
        _, _, raw = get(port, "/metrics", basic("scraper", "scraper-pw"), "127.0.0.3")
    text = open(wrk_out).read()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    mix = re.search(r"STATUS (.*)", text)
    checks = re.search(rb"^synack_exporter_web_auth_bcrypt_checks_total (\S+)", raw, re.M)
    print(f"\n-- {name}, flood of {mode} wrong passwords: wrk {' '.join(wrk[1:4])}   "
          f"(machine load average {load_before} before, {load_after} after)")
    print(f"   exporter CPU over the flood: {(cpu_after - cpu_before) / (wall_after - wall_before):.2f}"
          f" cores ({cpu_after - cpu_before:.1f} s in {wall_after - wall_before:.1f} s)")
    print(f"   flood: {rate.group(1) if rate else '?'} requests/s, "
          f"{mix.group(1) if mix else '?'}"
          + (f", bcrypt checks run {checks.group(1).decode()}" if checks else
             ", (no bcrypt counter)"))
    for kind, label in [("scrape", "scrape, known login, 127.0.0.3"),
                        ("first", "first login, 127.0.0.3       "),
                        ("first-same", "first login, 127.0.0.1 (same)")]:
        print(f"   {label}: {summary(samples[kind])}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-d", "--duration", type=int, default=20, help="seconds of each flood")
    parser.add_argument("-c", "--connections", type=int, default=64)
    parser.add_argument("--modes", default="same,distinct")
    args = parser.parse_args()
    if not 5 <= args.duration <= 120:
        die("the duration is 5 to 120 seconds")
    modes = args.modes.split(",")
    if any(mode not in ("same", "distinct") for mode in modes):
        die("modes are same and distinct")
    for tool in ["wrk", "cargo", "git"]:
        if shutil.which(tool) is None:
            die(f"missing {tool}")
    work = tempfile.mkdtemp(prefix="synack_login_flood.")
    try:
        binaries = build(work)
        all_users = users()
        with open(os.path.join(work, "web.yml"), "w") as f:
            f.write("basic_auth_users:\n")
            for user, _, bcrypt in all_users:
                f.write(f"  {user}: '{bcrypt}'\n")
        print(f"\nnproc: {os.cpu_count()}   kernel: {os.uname().release}   "
              f"connections: {args.connections}   flood: {args.duration} s   bcrypt cost: 10")
        for mode in modes:
            for name, binary in binaries:
                # Users nobody logged in as yet, fresh for each exporter.
                flood(name, binary, mode, args, work,
                      [user for user in all_users if user[0] != "scraper"])
    finally:
        if os.environ.get("KEEP_DIR"):
            print(f"\nwork directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
