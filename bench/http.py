#!/usr/bin/env python3
"""HTTP proxy benchmark (issue 14): the same upstream reached directly,
through nginx, and through the gatehouse identity-aware proxy.

Run as root: python3 bench/http.py [--gatehouse PATH] [--upstream PATH]
                 [--seconds 15] [--latency-seconds 10] [--stream-mib 1024]
                 [--stream-reps 3] [--idle 1000] [--only STEPS] [--out DIR]

Paths, all on 127.0.0.1, free ports, one machine:

- direct:    the upstream (sshd-test's `upstream` example);
- nginx:     Debian's nginx as a plain reverse proxy (keep-alive upstream
             pool of 64, HTTP/1.1, no buffering on the streaming paths);
- gatehouse: `gatehouse web` with one `http_routes` entry (allow everyone),
             the dev IdP, and a browser session signed in the way a browser
             does, so every request is really authorized (session lookup,
             policy, ES256 assertion).

Steps (`--only`): memory, rps, latency, stream. Needs nginx, wrk, curl,
node (dev/idp). Stdlib only; shares bench/run.py's helpers. Build first:
cargo build --release -p gatehouse &&
cargo build --release -p sshd-test --example upstream
See bench/README.md, section "HTTP proxy".
"""
import argparse
import json
import os
import re
import resource
import select
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (REPO, BenchError, descendants, free_port, kill_tree,  # noqa: E402
                 machine_info, mem_kib, tail)

PATHS = ["direct", "nginx", "gatehouse"]
STEPS = ["memory", "rps", "latency", "stream"]
MiB = 1 << 20
HOST = "app.localhost"
ECHO_PATH = "/bench/echo?x=1"
RPS_TARGET = 0.8          # gatehouse >= 0.8x direct
ADDED_P50_TARGET_US = 300  # gatehouse <= +300 us at p50
STREAM_TARGET = 1.0       # gatehouse >= nginx
NOFILE = 65536

WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"mean_us":%.1f,"stdev_us":%.1f,"max_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
"""


# ------------------------------------------------------------------ helpers

def find_binary(given, rel):
    """--flag, else $CARGO_TARGET_DIR/release/REL, else target/release/REL."""
    if given:
        return str(Path(given).resolve())
    roots = [os.environ.get("CARGO_TARGET_DIR"), str(REPO / "target")]
    for r in roots:
        if r and (Path(r) / "release" / rel).is_file():
            return str(Path(r) / "release" / rel)
    raise BenchError(f"no release/{rel}: build it, or pass its path")


def cpu_ticks(pids):
    """utime + stime (clock ticks) summed over pids."""
    total = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = f[f.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total


def machine_busy(seconds=3):
    """Share of all cores busy over `seconds` (from /proc/stat), measured
    before the benchmark starts anything: what other work on the machine
    takes from it."""
    def snap():
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = f[3] + f[4]
        return sum(f) - idle, sum(f)
    b0, t0 = snap()
    time.sleep(seconds)
    b1, t1 = snap()
    return round((b1 - b0) / max(1, t1 - t0), 3)


def loadavg():
    return Path("/proc/loadavg").read_text().split()[0]


def rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def read_line(p, errpath, pattern, timeout=30):
    """Reads p's stdout until a line matches; returns the match."""
    fd, buf, deadline = p.stdout.fileno(), b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in buf.decode(errors="replace").splitlines():
            m = re.search(pattern, line)
            if m:
                return m
        if not select.select([fd], [], [], max(0, deadline - time.monotonic()))[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    raise BenchError(f"no line matching {pattern!r} (rc={p.poll()}); stdout {buf[-400:]!r}; "
                     f"stderr:\n{tail(errpath)}")


def wait_port(port, p, errpath, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise BenchError(f"{what} exited {p.returncode}:\n{tail(errpath)}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{what} did not listen on {port}:\n{tail(errpath)}")


def redact(argv):
    """A command as the report shows it: the session cookie replaced."""
    s = " ".join(shlex.quote(str(a)) for a in argv)
    s = re.sub(r"[^\s']*gh-http-bench-[A-Za-z0-9_]+", "$TMP", s)
    return re.sub(r"__Host-gatehouse=[^'\s;]+", "__Host-gatehouse=$COOKIE", s)


# ------------------------------------------------------------------ environment

class Bench:
    """The upstream, nginx, the dev IdP and gatehouse; owns every child."""

    def __init__(self, tmp, gatehouse, upstream):
        self.tmp = Path(tmp)
        self.gatehouse = gatehouse
        self.upstream_bin = upstream
        self.daemons = []  # (name, Popen, stderr file)
        self.pid = {}
        self.port = {}
        self.cookie = None
        self.issuer = None

    def spawn(self, name, argv, **kw):
        errpath = self.tmp / f"{name}.stderr"
        err = open(errpath, "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=err, start_new_session=True, **kw)
        self.daemons.append((name, p, err))
        return p, errpath

    def setup(self):
        # Upstream.
        p, err = self.spawn("upstream", [self.upstream_bin, "--port", "0"])
        m = read_line(p, err, r"upstream listening on http://127\.0\.0\.1:(\d+)")
        self.port["direct"] = int(m.group(1))
        self.pid["direct"] = p.pid
        self.start_nginx()
        self.start_idp()
        self.start_gatehouse()
        self.sign_in()

    def start_nginx(self):
        port = free_port()
        d = self.tmp / "nginx"
        d.mkdir()
        up = self.port["direct"]
        user = "user root root;\n" if os.geteuid() == 0 else ""
        conf = f"""{user}daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile {NOFILE};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    upstream app {{
        server 127.0.0.1:{up};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /stream/ {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            client_max_body_size 0;
        }}
    }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        self.nginx_conf = conf
        p, err = self.spawn("nginx", ["nginx", "-p", str(d), "-c", str(d / "nginx.conf")])
        wait_port(port, p, err, "nginx")
        self.port["nginx"] = port
        self.pid["nginx"] = p.pid

    def start_idp(self):
        idp = REPO / "dev/idp"
        if not (idp / "node_modules").is_dir():
            r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(idp)],
                               capture_output=True, text=True, timeout=300)
            if r.returncode:
                raise BenchError(f"npm ci failed: {r.stderr[-600:]}")
        p, err = self.spawn("idp", ["node", "server.mjs", "--port", "0", "--interval", "1",
                                    "--redirect-uri", "http://127.0.0.1/auth/callback"], cwd=idp)
        m = read_line(p, err, r"listening on (http://127\.0\.0\.1:\d+)")
        self.issuer = m.group(1)

    def start_gatehouse(self):
        g = self.tmp / "gh"
        g.mkdir()
        r = subprocess.run([self.gatehouse, "ca", "init", "--key", str(g / "user_ca")],
                           capture_output=True, text=True, timeout=30)
        if r.returncode:
            raise BenchError(f"gatehouse ca init: {r.stderr}")
        port = free_port()
        web = f"http://127.0.0.1:{port}"
        config = (
            f"listen: 127.0.0.1:0\nuser_ca: {g / 'user_ca'}\nstate_dir: {g / 'state'}\n"
            f"idp:\n  issuer: {self.issuer}\n  client_id: gatehouse\n"
            "  scopes: [openid, email, profile, groups]\n"
            f"web:\n  listen: 127.0.0.1:{port}\n  public_url: {web}\n  plain_http: true\n"
            "http_routes:\n"
            f"  - from: {HOST}\n    name: app\n    to: http://127.0.0.1:{self.port['direct']}\n"
            "    policy: {rules: [{allow: everyone}]}\n"
            "routes: []\n")
        (g / "gatehouse.yaml").write_text(config)
        self.gatehouse_config = config
        p, err = self.spawn("gatehouse", [self.gatehouse, "web", "--config", str(g / "gatehouse.yaml")])
        read_line(p, err, r"listening on", timeout=60)
        wait_port(port, p, err, "gatehouse web")
        self.port["gatehouse"] = port
        self.pid["gatehouse"] = p.pid
        self.web = web

    # -- a browser, by hand --
    def fetch(self, url, jar, accept="text/html,application/xhtml+xml"):
        """GET url as a browser would (cookies of its host from jar), without
        following redirects; every host is on 127.0.0.1. (Raw sockets: this
        file's name hides the standard library's `http` package.)"""
        u = urllib.parse.urlsplit(url)
        lines = [f"GET {u.path or '/'}{'?' + u.query if u.query else ''} HTTP/1.1",
                 f"Host: {u.netloc}", f"Accept: {accept}", "Connection: close"]
        cookies = jar.get(u.hostname, {})
        if cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
        s = socket.create_connection(("127.0.0.1", u.port or 80), 30)
        try:
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            raw = read_response(s)
        finally:
            s.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        head = head.decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        loc = None
        for h in head[1:]:
            k, _, v = h.partition(":")
            k, v = k.strip().lower(), v.strip()
            if k == "set-cookie":
                name, _, value = v.split(";", 1)[0].partition("=")
                if value == "" or "max-age=0" in v.lower():
                    jar.setdefault(u.hostname, {}).pop(name, None)
                else:
                    jar.setdefault(u.hostname, {})[name] = value
            elif k == "location":
                loc = urllib.parse.urljoin(url, v)
        return status, loc, body

    def sign_in(self, login="alice@example.com", password="alice-pw"):
        """app URL -> web app handoff -> login -> IdP (approve.mjs) ->
        /auth/callback -> handoff -> the app's /.gatehouse/callback -> app
        URL, with the session cookie of the app's host."""
        app = f"http://{HOST}:{self.port['gatehouse']}/"
        jar, nxt, hops = {}, app, []
        for _ in range(12):
            status, loc, body = self.fetch(nxt, jar)
            if status not in (302, 303):
                raise BenchError(f"sign-in: {nxt}: {status} {body[:300]!r}")
            hops.append(f"{status} {urllib.parse.urlsplit(nxt).path}")
            if loc.startswith(self.issuer):
                out = subprocess.run(["node", "approve.mjs", "--issuer", self.issuer,
                                      "--authorize", loc, "--login", login,
                                      "--password", password],
                                     capture_output=True, text=True, timeout=60,
                                     cwd=REPO / "dev/idp")
                m = re.search(r"^callback (\S+)$", out.stdout, re.M)
                if out.returncode or not m:
                    raise BenchError(f"approve.mjs: {out.stdout}{out.stderr}")
                hops.append("IdP (approve.mjs)")
                nxt = m.group(1)
                continue
            if loc == app:
                break
            nxt = loc
        else:
            raise BenchError(f"sign-in did not come back to {app}: {hops}")
        value = jar.get(HOST, {}).get("__Host-gatehouse")
        if not value:
            raise BenchError(f"no __Host-gatehouse cookie for {HOST}: {jar.get(HOST)}")
        self.cookie = f"__Host-gatehouse={value}"
        self.signin_hops = hops

    # -- what each path's clients send --
    def authority(self, path):
        port = self.port[path]
        return f"{HOST}:{port}" if path == "gatehouse" else f"127.0.0.1:{port}"

    def headers(self, path):
        """Extra request headers for a path (Host and the session cookie)."""
        if path != "gatehouse":
            return []
        return [("Host", self.authority(path)), ("Cookie", self.cookie)]

    def probe(self, path, target=ECHO_PATH):
        """One request; (status, body bytes, full response bytes, parsed echo)."""
        s = socket.create_connection(("127.0.0.1", self.port[path]), 10)
        req = self.request_bytes(path, target)
        s.sendall(req)
        raw = read_response(s)
        s.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        try:
            echo = json.loads(body)
        except ValueError:
            echo = None
        return status, len(body), len(raw), echo

    def request_bytes(self, path, target=ECHO_PATH):
        lines = [f"GET {target} HTTP/1.1", f"Host: {self.authority(path)}"]
        lines += [f"{k}: {v}" for k, v in self.headers(path) if k != "Host"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def proxy_pids(self, path):
        """The processes whose memory/CPU count for a path: the upstream for
        direct, nginx's master and workers, the gatehouse process."""
        root = self.pid[path]
        if path == "nginx":
            return [root] + descendants(root)
        return [root]

    def close(self):
        for name, p, err in reversed(self.daemons):
            kill_tree(p)
            err.close()


def read_response(s):
    """Reads one HTTP/1.1 response with Content-Length (or chunked) from s."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise BenchError(f"connection closed before the response headers: {buf[:200]!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if m:
        n = int(m.group(1))
        while len(body) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise BenchError("connection closed in the response body")
            body += chunk
        return head + b"\r\n\r\n" + body
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        while not body.endswith(b"0\r\n\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise BenchError("connection closed in a chunked body")
            body += chunk
        return head + b"\r\n\r\n" + body
    raise BenchError(f"response without a length: {head[:300]!r}")


# ------------------------------------------------------------------ steps

def wrk(b, path, threads, conns, seconds, latency=False):
    """One wrk run; its summary (from the Lua done() hook) plus the CPU the
    path's server processes used during it."""
    lua = b.tmp / "report.lua"
    lua.write_text(WRK_LUA)
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "-s", str(lua)]
    if latency:
        argv.append("--latency")
    for k, v in b.headers(path):
        argv += ["-H", f"{k}: {v}"]
    argv.append(f"http://127.0.0.1:{b.port[path]}{ECHO_PATH}")
    pids = b.proxy_pids(path)
    up = [b.pid["direct"]]
    c0, u0 = cpu_ticks(pids), cpu_ticks(up) if path != "direct" else 0
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    c1, u1 = cpu_ticks(pids), cpu_ticks(up) if path != "direct" else 0
    m = re.search(r"^WRKJSON (.*)$", r.stdout, re.M)
    if r.returncode or not m:
        raise BenchError(f"wrk failed ({r.returncode}): {r.stdout[-600:]}{r.stderr[-600:]}")
    s = json.loads(m.group(1))
    s["rps"] = s["requests"] / (s["duration_us"] / 1e6)
    s["bytes_per_response"] = s["bytes"] / max(1, s["requests"])
    hz = os.sysconf("SC_CLK_TCK")
    s["server_cpu_s"] = (c1 - c0) / hz
    s["server_cpu_us_per_req"] = (c1 - c0) / hz * 1e6 / max(1, s["requests"])
    if path != "direct":
        s["upstream_cpu_us_per_req"] = (u1 - u0) / hz * 1e6 / max(1, s["requests"])
    s["command"] = redact(argv)
    s["threads_after"] = sum(len(os.listdir(f"/proc/{p}/task")) for p in pids
                             if os.path.isdir(f"/proc/{p}/task"))
    errs = sum(s[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    s["errors"] = errs
    return s


def check_responses(b, path, s, expect_len):
    """wrk counts 3xx as success: make sure every response had the size of
    the probe's 200 (a sign-in redirect would be far smaller)."""
    if s["errors"]:
        raise BenchError(f"{path}: wrk reported errors: {s}")
    if abs(s["bytes_per_response"] - expect_len) > 0.05 * expect_len:
        raise BenchError(f"{path}: {s['bytes_per_response']:.0f} bytes per response, "
                         f"the 200 is {expect_len}: not every response was the echo")


def wrk_runs(b, args, sizes, threads, conns, seconds, latency, label):
    """args.reps rounds over the paths, alternating, each after a short
    warm-up; per path the median of each figure, and every run."""
    keys = ("rps", "p50_us", "p90_us", "p99_us", "p999_us", "mean_us",
            "server_cpu_us_per_req", "upstream_cpu_us_per_req", "bytes_per_response",
            "threads_after")
    runs = {p: [] for p in PATHS}
    for rep in range(args.reps):
        for path in PATHS:
            wrk(b, path, threads, conns, 2 if not latency else 1)  # warm-up
            s = wrk(b, path, threads, conns, seconds, latency=latency)
            check_responses(b, path, s, sizes[path])
            runs[path].append(s)
            print(f"  {label} {path} #{rep + 1}: {s['rps']:,.0f} req/s, p50 {s['p50_us']} µs, "
                  f"p99 {s['p99_us']} µs, server CPU {s['server_cpu_us_per_req']:.1f} µs/req",
                  flush=True)
    out = {}
    for path, rs in runs.items():
        cell = {k: statistics.median(r[k] for r in rs) for k in keys if k in rs[0]}
        cell["command"] = rs[-1]["command"]
        cell["runs"] = [{k: v for k, v in r.items() if k != "command"} for r in rs]
        out[path] = cell
    return out


def step_rps(b, args, res, sizes):
    res["rps"] = wrk_runs(b, args, sizes, 2, args.conns, args.seconds, False, "rps")


def step_latency(b, args, res, sizes):
    res["latency"] = wrk_runs(b, args, sizes, 1, 1, args.latency_seconds, True, "latency")


def curl_base(b, path):
    port = b.port[path]
    if path == "gatehouse":
        return (["curl", "-sS", "--resolve", f"{HOST}:{port}:127.0.0.1", "-H", f"Cookie: {b.cookie}"],
                f"http://{HOST}:{port}")
    return ["curl", "-sS"], f"http://127.0.0.1:{port}"


def download(b, path, nbytes):
    base, origin = curl_base(b, path)
    argv = base + ["-o", "/dev/null", "-w", "%{http_code} %{size_download} %{speed_download}",
                   f"{origin}/stream/download?bytes={nbytes}"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30 + nbytes / MiB)
    code, size, speed = (r.stdout.split() + ["", "", ""])[:3]
    if r.returncode or code != "200" or int(size) != nbytes:
        raise BenchError(f"download {path}: rc={r.returncode} {r.stdout} {r.stderr[-300:]}")
    return float(speed) / MiB, redact(argv)


def upload(b, path, nbytes):
    base, origin = curl_base(b, path)
    body = b.tmp / "upload.json"
    # `Expect:` off: curl would otherwise wait for a 100 Continue on every
    # path alike; the servers here all stream the body as it comes.
    argv = base + ["-T", "-", "-H", "Expect:", "-o", str(body),
                   "-w", "%{http_code} %{size_upload} %{speed_upload}", f"{origin}/stream/upload"]
    head = subprocess.Popen(["head", "-c", str(nbytes), "/dev/zero"], stdout=subprocess.PIPE)
    try:
        r = subprocess.run(argv, stdin=head.stdout, capture_output=True, text=True,
                           timeout=30 + nbytes / MiB)
    finally:
        head.stdout.close()
        head.wait(10)
    code, size, speed = (r.stdout.split() + ["", "", ""])[:3]
    try:
        got = json.loads(body.read_text())["bytes"]
    except (OSError, ValueError, KeyError):
        got = None
    if r.returncode or code != "200" or got != nbytes:
        raise BenchError(f"upload {path}: rc={r.returncode} {r.stdout} upstream saw {got} "
                         f"{r.stderr[-300:]}")
    return float(speed) / MiB, f"head -c {nbytes} /dev/zero | " + redact(argv)


def step_stream(b, args, res):
    nbytes = args.stream_mib * MiB
    out = {d: {p: {"runs": []} for p in PATHS} for d in ("download", "upload")}
    for rep in range(args.stream_reps):
        for d, fn in (("download", download), ("upload", upload)):
            for path in PATHS:
                pids = b.proxy_pids(path)
                c0 = cpu_ticks(pids)
                mibps, cmd = fn(b, path, nbytes)
                cpu = (cpu_ticks(pids) - c0) / os.sysconf("SC_CLK_TCK")
                cell = out[d][path]
                cell["runs"].append(round(mibps, 1))
                cell.setdefault("server_cpu_s", []).append(round(cpu, 2))
                cell["command"] = cmd
                print(f"  {d} {path} #{rep + 1}: {mibps:,.0f} MiB/s", flush=True)
    for d in out:
        for path, cell in out[d].items():
            if cell["runs"]:
                cell["median_mibps"] = statistics.median(cell["runs"])
                cell["server_cpu_s_per_gib"] = (statistics.median(cell["server_cpu_s"])
                                                / (args.stream_mib / 1024))
    res["stream"] = out
    res["stream_mib"] = args.stream_mib


def step_memory(b, args, res):
    out = {}
    for path in PATHS:
        # Warm up: a few requests on one connection, so lazily built state
        # (policy, signing key, upstream pool) is not counted as growth.
        for _ in range(20):
            status, *_ = b.probe(path)
            if status != 200:
                raise BenchError(f"memory {path}: warm-up got {status}")
        time.sleep(1)
        pids = b.proxy_pids(path)
        before = sum(rss_kib(p) for p in pids)
        pss_before = sum(mem_kib(p)[0] for p in pids)
        socks = []
        try:
            req = b.request_bytes(path)
            for i in range(args.idle):
                s = socket.create_connection(("127.0.0.1", b.port[path]), 10)
                s.sendall(req)
                raw = read_response(s)
                if not raw.startswith(b"HTTP/1.1 200"):
                    raise BenchError(f"memory {path}: connection {i}: {raw[:120]!r}")
                socks.append(s)
            time.sleep(2)
            pids = b.proxy_pids(path)
            after = sum(rss_kib(p) for p in pids)
            pss_after = sum(mem_kib(p)[0] for p in pids)
            poll = select.poll()
            for s in socks:
                poll.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
            closed = len(poll.poll(0))  # readable while idle = closed by the server
        finally:
            for s in socks:
                s.close()
        cell = {"connections": args.idle, "rss_before_kib": before, "rss_after_kib": after,
                "rss_growth_kib_per_conn": (after - before) / args.idle,
                "pss_before_kib": pss_before, "pss_after_kib": pss_after,
                "pss_growth_kib_per_conn": (pss_after - pss_before) / args.idle,
                "closed_by_server_while_idle": closed, "processes": len(pids)}
        out[path] = cell
        print(f"  memory {path}: RSS {before:,} -> {after:,} KiB, "
              f"{cell['rss_growth_kib_per_conn']:.1f} KiB/conn ({closed} closed)", flush=True)
        time.sleep(1)
    res["memory"] = out


# ------------------------------------------------------------------ report

def fmt(v, nd=0):
    return "—" if v is None else v if isinstance(v, str) else f"{v:,.{nd}f}"


def ratio(a, b):
    return f"{a / b:.2f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "—"


def meets(a, b, op):
    """The target's verdict, or None when a value is missing."""
    num = lambda v: isinstance(v, (int, float))
    return op(a, b) if num(a) and num(b) else None


def rows(res):
    """(metric, unit, {path: value}, target text, verdict)."""
    out = []
    get = lambda step, k: {p: res.get(step, {}).get(p, {}).get(k) for p in PATHS}
    if "rps" in res:
        v = get("rps", "rps")
        ok = meets(v["gatehouse"], v["direct"], lambda g, d: g >= RPS_TARGET * d)
        out.append(("requests/s (wrk -t2 -c%d)" % res["conns"], "req/s", v,
                    f"gh/direct ≥ {RPS_TARGET}x", ok))
        out.append(("server CPU per request (direct: upstream)", "µs",
                    get("rps", "server_cpu_us_per_req"), "", None))
        out.append(("server threads after the run", "", get("rps", "threads_after"), "", None))
        out.append(("upstream CPU per request", "µs",
                    {p: res["rps"].get(p, {}).get("upstream_cpu_us_per_req" if p != "direct"
                                                   else "server_cpu_us_per_req") for p in PATHS},
                    "", None))
    if "latency" in res:
        v = get("latency", "p50_us")
        ok = meets(v["gatehouse"], v["direct"], lambda g, d: g - d <= ADDED_P50_TARGET_US)
        out.append(("latency p50 (wrk -t1 -c1)", "µs", v,
                    f"gh − direct ≤ +{ADDED_P50_TARGET_US} µs", ok))
        out.append(("latency p99 (wrk -t1 -c1)", "µs", get("latency", "p99_us"), "", None))
    if "stream" in res:
        for d in ("download", "upload"):
            v = {p: res["stream"][d][p].get("median_mibps") for p in PATHS}
            ok = meets(v["gatehouse"], v["nginx"], lambda g, n: g >= STREAM_TARGET * n)
            out.append((f"{d} {res['stream_mib']} MiB (median)", "MiB/s", v,
                        f"gh/nginx ≥ {STREAM_TARGET:.1f}x", ok))
            cpu = {p: res["stream"][d][p].get("server_cpu_s_per_gib") for p in PATHS}
            out.append((f"{d} server CPU (direct: upstream)", "s/GiB", cpu, "", None))
    if "memory" in res:
        out.append((f"RSS growth, {res['idle']} idle conns", "KiB/conn",
                    get("memory", "rss_growth_kib_per_conn"), "", None))
    return out


def render(info, res, errors, args):
    head = ["metric", "unit", "direct", "nginx", "gatehouse", "gh/direct", "gh/nginx", "target", "ok?"]
    table = [head]
    for name, unit, v, target, ok in rows(res):
        nd = 2 if unit == "s/GiB" else 1 if unit in ("KiB/conn", "µs") and "CPU" in name or unit == "KiB/conn" else 0
        table.append([name, unit] + [fmt(v[p], nd) for p in PATHS]
                     + [ratio(v["gatehouse"], v["direct"]), ratio(v["gatehouse"], v["nginx"]),
                        target, "" if ok is None else "ok" if ok else "MISSED"])
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table)
    md = ["# HTTP proxy benchmark (issue 14)", "",
          f"Run {time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Everything on one machine over "
          f"loopback: wrk/curl, the proxy and the upstream share its "
          f"{info['nproc']} cores.", "",
          "| machine | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in info.items()]
    md += ["", "## Summary", "",
           "Requests/s and MiB/s: higher is better; latency and memory: lower is better. "
           "Ratios are gatehouse's value divided by the other path's.", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in table[1:]]
    lat = res.get("latency")
    if lat:
        added = ", ".join(f"{p} {lat[p]['p50_us'] - lat['direct']['p50_us']:+.0f} µs (p99 "
                          f"{lat[p]['p99_us'] - lat['direct']['p99_us']:+.0f} µs)"
                          for p in ("nginx", "gatehouse") if p in lat and "direct" in lat)
        md += ["", f"Added latency over direct at p50: {added}."]
        text += f"\nadded latency vs direct (p50): {added}"
    every = []
    for path, c in res.get("rps", {}).items():
        every.append(f"| requests/s | {path} | " + ", ".join(f"{r['rps']:,.0f}" for r in c["runs"]) + " |")
    for path, c in res.get("latency", {}).items():
        every.append(f"| latency p50 / p99 µs | {path} | "
                     + ", ".join(f"{r['p50_us']} / {r['p99_us']}" for r in c["runs"]) + " |")
    for d, cells in res.get("stream", {}).items():
        for path, c in cells.items():
            every.append(f"| {d} MiB/s | {path} | " + ", ".join(f"{v:,.0f}" for v in c["runs"]) + " |")
    if every:
        md += ["", "### Every run", "", "Rounds alternate over the paths; the summary shows "
               "the median.", "", "| measure | path | runs |", "|---|---|---|"] + every
    mem = res.get("memory")
    if mem:
        md += ["", "### Memory with idle keep-alive connections", "",
               "RSS is VmRSS; for nginx the sum over master and workers (shared pages counted "
               "in each). PSS (smaps_rollup) for comparison.", "",
               "| path | processes | RSS before KiB | RSS after KiB | KiB/conn | PSS KiB/conn | closed while idle |",
               "|---|---|---|---|---|---|---|"]
        md += [f"| {p} | {c['processes']} | {c['rss_before_kib']:,} | {c['rss_after_kib']:,} | "
               f"{c['rss_growth_kib_per_conn']:.1f} | {c['pss_growth_kib_per_conn']:.1f} | "
               f"{c['closed_by_server_while_idle']} |" for p, c in mem.items()]
    if res.get("sizes"):
        md += ["", "Echo response size (headers + body, bytes): "
               + ", ".join(f"{p} {n}" for p, n in res["sizes"].items())
               + ". The gatehouse echo is larger: the upstream echoes the headers it got, "
               "including the assertion and X-Forwarded-*."]
    md += ["", "## Commands", "", "Ports and the temporary directory ($TMP) are this run's.", "", "```"]
    for step in ("rps", "latency"):
        for p, c in res.get(step, {}).items():
            md.append(c["command"])
    for d in ("download", "upload"):
        for p, c in res.get("stream", {}).get(d, {}).items():
            md.append(c["command"])
    md += ["```", "", "nginx.conf:", "", "```nginx", res.get("nginx_conf", "").strip(), "```", "",
           "gatehouse config:", "", "```yaml", res.get("gatehouse_config", "").strip(), "```"]
    if errors:
        md += ["", "## Errors", ""]
        for e in errors:
            md += [f"**{e['where']}**", "", "```", e["error"], "```", ""]
    md += ["", "## Raw results", "", "```json", json.dumps(res, indent=1), "```"]
    return text, "\n".join(md) + "\n"


def tool_versions():
    v = {}
    for name, argv in (("nginx", ["nginx", "-v"]), ("wrk", ["wrk", "-v"]),
                       ("curl", ["curl", "--version"]), ("node", ["node", "--version"])):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            v[name] = (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            v[name] = "missing"
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gatehouse")
    ap.add_argument("--upstream", help="sshd-test's upstream example binary")
    ap.add_argument("--seconds", type=int, default=15, help="wrk -d for requests/s")
    ap.add_argument("--conns", type=int, default=64, help="wrk -c for requests/s")
    ap.add_argument("--latency-seconds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=2, help="rounds of the wrk steps (median)")
    ap.add_argument("--stream-mib", type=int, default=1024)
    ap.add_argument("--stream-reps", type=int, default=3)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--only", default=",".join(STEPS))
    ap.add_argument("--out", default=str(REPO / "bench/out"))
    args = ap.parse_args()
    steps = [s for s in args.only.split(",") if s]
    bad = set(steps) - set(STEPS)
    if bad:
        ap.error(f"unknown steps {bad}; known: {STEPS}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(NOFILE, hard) if hard != resource.RLIM_INFINITY else NOFILE
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # children inherit it
    gatehouse = find_binary(args.gatehouse, "gatehouse")
    upstream = find_binary(args.upstream, "examples/upstream")
    info = machine_info(gatehouse)
    info.pop("openssh", None)
    info.update(tool_versions())
    info["upstream_binary"] = Path(upstream).name
    info["nofile_limit"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    info["busy_before_start"] = f"{machine_busy():.0%} of all cores (3 s, before starting anything)"
    info["loadavg_before_start"] = loadavg()
    res, errors = {"conns": args.conns, "idle": args.idle}, []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gh-http-bench-") as tmp:
        os.chmod(tmp, 0o755)
        b = Bench(tmp, gatehouse, upstream)
        try:
            b.setup()
            res["nginx_conf"] = b.nginx_conf.replace(tmp, "$TMP")
            res["gatehouse_config"] = b.gatehouse_config.replace(tmp, "$TMP")
            res["signin_hops"] = b.signin_hops
            sizes = {}
            for path in PATHS:
                status, _, n, echo = b.probe(path)
                if status != 200:
                    raise BenchError(f"{path}: probe got {status}")
                sizes[path] = n
            assertion = b.probe("gatehouse")[3].get("assertion", {})
            res["gatehouse_assertion_present"] = assertion.get("present")
            res["gatehouse_assertion_email"] = (assertion.get("claims") or {}).get("email")
            res["sizes"] = sizes
            print(f"signed in ({' -> '.join(b.signin_hops)}); echo sizes {sizes}", flush=True)
            for step in STEPS:
                if step not in steps:
                    continue
                res.setdefault("loadavg_at_step", {})[step] = loadavg()
                print(f"step {step} (load average {loadavg()})", flush=True)
                try:
                    if step == "memory":
                        step_memory(b, args, res)
                    elif step == "rps":
                        step_rps(b, args, res, sizes)
                    elif step == "latency":
                        step_latency(b, args, res, sizes)
                    elif step == "stream":
                        step_stream(b, args, res)
                except BenchError as e:
                    errors.append({"where": step, "error": str(e)})
                    print(f"  {step} failed: {e}", flush=True)
            for name, p, _ in b.daemons:
                if p.poll() is not None:
                    errors.append({"where": name, "error": f"exited {p.returncode} during the run:\n"
                                   f"{tail(Path(tmp) / (name + '.stderr'))}"})
        except BenchError as e:
            errors.append({"where": "setup", "error": str(e)})
            print(f"setup failed: {e}", flush=True)
        finally:
            b.close()
    info["runtime_s"] = round(time.monotonic() - started)
    text, md = render(info, res, errors, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "http.md").write_text(md)
    (out / "http.json").write_text(json.dumps({"machine": info, "results": res,
                                               "errors": errors}, indent=1) + "\n")
    print(text)
    print(f"wrote {out / 'http.md'} and {out / 'http.json'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
