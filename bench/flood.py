#!/usr/bin/env python3
"""Pre-auth flood: how long a legitimate `ssh ... true` takes, and how much
memory the gateway holds, while strangers flood it before logging in.

Run as root: python3 bench/flood.py [--gatehouse PATH] [--seconds 60]
                 [--samples 40] [--stalled 2000] [--authfail-rate 200]
                 [--junk 100] [--out DIR]

Everything is on loopback and bounded in time and count. The flood comes
from 127.0.0.2-127.0.0.254, the legitimate client from 127.0.0.1 (not
exempt from anything), against a gateway with default limits:

- stalled: STALLED connections that connect and then send nothing, each
  reconnecting 100 ms after the gateway closes it;
- authfail: SSH clients (russh's, from gateway/examples/authfail_flood.rs)
  that offer an unregistered key, started at AUTHFAIL_RATE per second (at
  most 400 at a time);
- junk: JUNK connections that send a version line and then a stream of
  SSH_MSG_IGNORE and PING packets before key exchange, or plain garbage.

Each load runs in a process of its own.

The legitimate client logs in SAMPLES times before the flood (its normal
time) and SAMPLES times during it. The report gives p50/p99 of both, their
ratio (the target is <= 2x), the gateway's peak RSS (target <= 256 MiB),
what the flood achieved, and what the gateway counted and audited. See
bench/README.md. Stdlib only; uses bench/run.py's environment. Build first:
cargo build --release -p gatehouse && cargo build --release -p gateway
--example authfail_flood.
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import REPO, Env, find_gatehouse, machine_info, pct, run  # noqa: E402

SOURCES = [f"127.0.0.{i}" for i in range(2, 255)]
LEGIT_TIMEOUT = 60
RSS_TARGET_MIB = 256
RATIO_TARGET = 2.0


# ------------------------------------------------------------------ flood

def ssh_packet(payload):
    """An unencrypted SSH binary packet (block size 8, >= 4 padding)."""
    pad = 8 - (len(payload) + 5) % 8
    if pad < 4:
        pad += 8
    return struct.pack(">IB", len(payload) + pad + 1, pad) + payload + b"\0" * pad


def ssh_string(b):
    return struct.pack(">I", len(b)) + b


IGNORE = ssh_packet(bytes([2]) + ssh_string(b"x" * 1024))
PING = ssh_packet(bytes([192]) + ssh_string(b"ping"))  # OpenSSH 9.8 SSH2_MSG_PING
VERSION = b"SSH-2.0-flood\r\n"


async def connect_from(port, source):
    return await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 5)


async def stalled(port, n, stop_at, stats):
    async def one(i):
        source = SOURCES[i % len(SOURCES)]
        while time.monotonic() < stop_at:
            try:
                r, w = await connect_from(port, source)
            except (OSError, asyncio.TimeoutError):
                stats["stalled_connect_errors"] += 1
                await asyncio.sleep(0.1)
                continue
            stats["stalled_connections"] += 1
            started = time.monotonic()
            try:
                while time.monotonic() < stop_at:
                    chunk = await asyncio.wait_for(r.read(4096), max(0.05, stop_at - time.monotonic()))
                    if not chunk:
                        break
            except (OSError, asyncio.TimeoutError):
                pass
            stats["stalled_held_s"] += time.monotonic() - started
            w.close()
            await asyncio.sleep(0.1)
    await asyncio.gather(*(one(i) for i in range(n)))


async def junk(port, n, stop_at, stats):
    rng = random.Random(7)

    async def one(i):
        source = SOURCES[(i * 7 + 3) % len(SOURCES)]
        garbage = i % 3 == 2
        while time.monotonic() < stop_at:
            try:
                r, w = await connect_from(port, source)
            except (OSError, asyncio.TimeoutError):
                stats["junk_connect_errors"] += 1
                await asyncio.sleep(0.1)
                continue
            stats["junk_connections"] += 1
            try:
                if garbage:
                    payload = rng.randbytes(16 * 1024)
                else:
                    w.write(VERSION)
                    payload = (IGNORE * 15 + PING) * 1
                while time.monotonic() < stop_at:
                    w.write(payload)
                    await asyncio.wait_for(w.drain(), 5)
                    stats["junk_bytes"] += len(payload)
            except (OSError, asyncio.TimeoutError, ConnectionError):
                pass
            w.close()
            await asyncio.sleep(0.1)
    await asyncio.gather(*(one(i) for i in range(n)))


def authfail_binary(gatehouse):
    """The failed-authentication generator (gateway/examples/authfail_flood.rs),
    next to the gateway binary it is built with."""
    cand = Path(gatehouse).parent / "examples" / "authfail_flood"
    return str(cand) if cand.is_file() and os.access(cand, os.X_OK) else None


def authfail(port, rate, seconds, binary):
    """Failed authentications at RATE/s, from the generator's own process
    (russh clients: a process per `ssh` would need more CPU than 2 cores)."""
    out = subprocess.run([binary, str(port), str(rate), str(seconds), "400"],
                         capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"authfail_flood failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_main(kind, port, seconds, n, binary, out):
    """One load, in a process of its own, so each gets its share of the
    CPU and the measuring side keeps a core."""
    stats = {k: 0 for k in [
        "stalled_connections", "stalled_connect_errors", "stalled_held_s",
        "junk_connections", "junk_connect_errors", "junk_bytes"]}
    stop_at = time.monotonic() + seconds
    if kind == "stalled":
        asyncio.run(stalled(port, n, stop_at, stats))
    elif kind == "junk":
        asyncio.run(junk(port, n, stop_at, stats))
    else:
        stats = authfail(port, n, seconds, binary)
    out.put((kind, stats))


def start_flood(port, args, binary):
    """Starts the three loads; returns their processes and result queue."""
    q = multiprocessing.Queue()
    procs = []
    for kind, n in (("stalled", args.stalled), ("junk", args.junk),
                    ("authfail", args.authfail_rate)):
        if n <= 0:
            continue
        p = multiprocessing.Process(target=load_main,
                                    args=(kind, port, args.seconds, n, binary, q))
        p.start()
        procs.append(p)
    return procs, q


def collect_flood(procs, q, seconds):
    stats = {k: 0 for k in [
        "stalled_connections", "stalled_connect_errors", "stalled_held_s",
        "junk_connections", "junk_connect_errors", "junk_bytes",
        "authfail_started", "authfail_refused", "authfail_got_in", "authfail_closed",
        "authfail_connect_errors", "authfail_timed_out", "authfail_skipped"]}
    for _ in procs:
        _, got = q.get(timeout=seconds + 120)
        for k, v in got.items():
            if k in stats:
                stats[k] += v
    for p in procs:
        p.join(30)
    stats["seconds"] = seconds
    return stats


# ------------------------------------------------------------ measurement

def login_times(env, n, stop_at=None):
    """Wall-clock seconds of `ssh ... true` through the gateway from
    127.0.0.1, and how many failed."""
    argv = env.ssh("gatehouse") + ["true"]
    times, failures = [], []
    for _ in range(n):
        if stop_at and time.monotonic() > stop_at:
            break
        t = time.monotonic()
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=LEGIT_TIMEOUT)
        dt = time.monotonic() - t
        if p.returncode == 0:
            times.append(dt)
        else:
            failures.append(p.stderr.decode(errors="replace").strip()[-200:])
        time.sleep(0.2)
    return times, failures


def rss_kib(pid):
    """VmRSS of `pid` in KiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid, period=0.25):
        super().__init__(daemon=True)
        self.pid, self.period, self.peak, self.samples = pid, period, 0, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            self.samples += 1
            self.stop.wait(self.period)


def audit_counts(stderr_path):
    """What the gateway audited: aggregate refusals and drops by limit or
    reason (summing their `count`), and penalties by cause."""
    text = Path(stderr_path).read_text(errors="replace")
    counts = {}
    for line in text.splitlines():
        m = re.search(r'event="(connection\.refused|connection\.dropped|source\.penalized)"', line)
        if not m:
            continue
        event = m.group(1)
        if event == "source.penalized":
            cause = re.search(r'cause="?([a-z_]+)', line)
            k = f"source.penalized {cause.group(1) if cause else '?'}"
            counts[k] = counts.get(k, 0) + 1
            continue
        what = re.search(r'(?:limit|reason)="?([a-z_]+)', line)
        n = re.search(r"\bcount=(\d+)", line)
        k = f"{event} {what.group(1) if what else '?'}"
        counts[k] = counts.get(k, 0) + (int(n.group(1)) if n else 1)
    return counts


def summarize(times):
    if not times:
        return {"n": 0}
    return {"n": len(times), "p50_s": pct(times, 0.5), "p99_s": pct(times, 0.99),
            "max_s": max(times)}


def render(info, args, base, during, fails, rss_base, rss_peak, flood, audit, elapsed):
    def ms(v):
        return f"{v * 1000:.0f} ms" if v is not None else "n/a"
    lines = [
        "# Pre-auth flood (bench/flood.py)", "",
        f"Machine: {info['nproc']} x {info['cpu']}, kernel {info['kernel']}; "
        f"gatehouse at {info['gatehouse_commit']}; default limits; "
        f"{args.seconds} s of flood, run took {elapsed:.0f} s.", "",
        "| legitimate `ssh ... true` from 127.0.0.1 | logins | failed | p50 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, s, f in (("before the flood", base, fails[0]), ("during the flood", during, fails[1])):
        lines.append(f"| {label} | {s['n']} | {len(f)} | {ms(s.get('p50_s'))} | "
                     f"{ms(s.get('p99_s'))} | {ms(s.get('max_s'))} |")
    r50 = during["p50_s"] / base["p50_s"] if during.get("n") and base.get("n") else None
    r99 = during["p99_s"] / base["p99_s"] if during.get("n") and base.get("n") else None
    ok_ratio = r99 is not None and r99 <= RATIO_TARGET and not fails[1]
    ok_rss = rss_peak / 1024 <= RSS_TARGET_MIB
    lines += [
        "",
        f"- p50 ratio during/before: **{r50:.2f}x**; p99 ratio: **{r99:.2f}x** "
        f"(target <= {RATIO_TARGET}x, no failed login): **{'met' if ok_ratio else 'NOT met'}**"
        if r99 is not None else "- ratio: n/a (no successful logins)",
        f"- gateway RSS: {rss_base / 1024:.1f} MiB before, peak **{rss_peak / 1024:.1f} MiB** "
        f"during (target <= {RSS_TARGET_MIB} MiB): **{'met' if ok_rss else 'NOT met'}**",
        "",
        "What the flood did (from 127.0.0.2-254):", "",
        "| load | configured | achieved |", "|---|---|---|",
        f"| stalled connections | {args.stalled} at a time | "
        f"{flood['stalled_connections']} connections made, {flood['stalled_connect_errors']} "
        f"connect errors, held {flood['stalled_held_s'] / max(1, flood['stalled_connections']):.1f} s "
        f"on average before the gateway closed them |",
        f"| failed authentications | {args.authfail_rate}/s | "
        f"{flood['authfail_started']} SSH clients started "
        f"({flood['authfail_started'] / args.seconds:.0f}/s): {flood['authfail_refused']} "
        f"authenticated and were refused, {flood['authfail_closed']} closed by the gateway "
        f"before authenticating, {flood['authfail_got_in']} got in, "
        f"{flood['authfail_connect_errors']} connect errors, "
        f"{flood['authfail_timed_out']} timed out, "
        f"{flood['authfail_skipped']} skipped (400 running) |",
        f"| IGNORE/PING and garbage floods | {args.junk} at a time | "
        f"{flood['junk_connections']} connections, {flood['junk_bytes'] / (1 << 20):.0f} MiB sent "
        f"before the gateway cut them off |",
        "",
        "What the gateway counted (aggregate audit events, summed):", "",
        "| event | count |", "|---|---:|",
    ]
    for k in sorted(audit):
        lines.append(f"| `{k}` | {audit[k]} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gatehouse", help="gatehouse binary (default: target/release)")
    ap.add_argument("--seconds", type=int, default=60, help="flood duration (default 60)")
    ap.add_argument("--samples", type=int, default=40, help="legitimate logins per phase")
    ap.add_argument("--stalled", type=int, default=2000)
    ap.add_argument("--authfail-rate", type=int, default=200)
    ap.add_argument("--junk", type=int, default=100)
    ap.add_argument("--out", default=str(REPO / "bench/out"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: it starts sshd and creates the ghbench user")
    gatehouse = find_gatehouse(args.gatehouse)
    if not gatehouse:
        sys.exit("build the gateway first: cargo build --release -p gatehouse")
    binary = authfail_binary(gatehouse)
    if args.authfail_rate > 0 and not binary:
        sys.exit("build the generator first: cargo build --release -p gateway "
                 "--example authfail_flood")
    # 2,000 sockets here and as many in the gateway (which inherits this).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda *_: sys.exit(130))
    info = machine_info(gatehouse)
    tmp = tempfile.mkdtemp(prefix="gh-flood-")
    env = Env(tmp, gatehouse)
    started = time.monotonic()
    flood = None
    try:
        env.setup(jump=False, idp=False)
        if env.gw_error:
            sys.exit(f"gateway unavailable: {env.gw_error}")
        login_times(env, 3)  # warm up
        print(f"normal logins ({args.samples}) ...", file=sys.stderr)
        base, base_fail = login_times(env, args.samples)
        rss_base = rss_kib(env.gw.pid)
        sampler = RssSampler(env.gw.pid)
        sampler.start()
        flood, q = start_flood(env.gw_port, args, binary)
        time.sleep(min(10, args.seconds / 4))  # let the flood fill every pool
        print(f"logins during the flood ({args.samples}) ...", file=sys.stderr)
        during, during_fail = login_times(env, args.samples, stop_at=started + 10**9)
        flood_stats = collect_flood(flood, q, args.seconds)
        sampler.stop.set()
        sampler.join()
        env.check_gateway()
        time.sleep(6)  # the gateway writes its aggregate events every 5 s
        audit = audit_counts(env.gw_stderr)
        report = render(info, args, summarize(base), summarize(during),
                        (base_fail, during_fail), rss_base, sampler.peak, flood_stats, audit,
                        time.monotonic() - started)
        os.makedirs(args.out, exist_ok=True)
        Path(args.out, "flood.md").write_text(report)
        Path(args.out, "flood.json").write_text(json.dumps({
            "before": base, "during": during, "failures": [base_fail, during_fail],
            "rss_kib": [rss_base, sampler.peak], "flood": flood_stats, "audit": audit},
            indent=1))
        print(report)
    finally:
        for p in flood or []:
            if p.is_alive():
                p.kill()
        env.close()


if __name__ == "__main__":
    main()
