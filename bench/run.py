#!/usr/bin/env python3
"""Gatehouse benchmark: direct OpenSSH vs `ssh -J` vs the gatehouse gateway.

Run as root: python3 bench/run.py [--gatehouse PATH] [--quick] [--out DIR]
                 [--only throughput,echo,connect,memory,recording,channels,edge,policy]
                 [--kex ALG]
                 [--ciphers C1,C2]
The `policy` step alone needs neither root nor sshd: it builds and runs the
policy crate's decision benchmark (cargo, release mode).
See bench/README.md for what each number means. Stdlib only.
"""
import argparse
import fcntl
import json
import math
import os
import pwd
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
USER = "ghbench"
ROUTE = "target"          # records (best_effort, the default)
NOREC_ROUTE = "norec"     # the same target with `record: off`
MiB = 1 << 20
CIPHERS = ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"]
PATHS = ["direct", "jump", "gatehouse"]
LABEL = {"direct": "direct", "jump": "ssh -J", "gatehouse": "gatehouse",
         "bound": "gatehouse, signed-in key"}
STEPS = ["throughput", "echo", "connect", "memory", "recording", "channels", "edge", "policy"]
# Steps that need the SSH environment (root, sshd, the ghbench user).
SSH_STEPS = [s for s in STEPS if s != "policy"]
# Issue 5's targets for the policy step.
POLICY_MEDIAN_TARGET_US = 5.0
POLICY_RECHECK_TARGET_MS = 50.0
GiB = 1 << 30


class BenchError(Exception):
    pass


def run(cmd, timeout=30, **kw):
    """subprocess.run that turns any failure into a BenchError with stderr."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout}s: {' '.join(map(str, cmd))}")
    if r.returncode != 0:
        raise BenchError(f"exit {r.returncode}: {' '.join(map(str, cmd))}\n{r.stderr.strip()}")
    return r.stdout


def free_port():
    # Racy in theory (the port is released before the server binds it), but
    # on an otherwise idle loopback it never collides in practice.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=15):
    try:
        text = re.sub(r"\x1b\[[0-9;]*m", "", Path(path).read_text(errors="replace"))
        return "\n".join(text.splitlines()[-n:])
    except OSError:
        return ""


def kill_tree(p, grace=3):
    """Stop a child we spawned (in its own session) plus its process group."""
    if p.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            pass


# ---------------------------------------------------------------- /proc helpers

def proc_table():
    """pid -> (ppid, comm) for every process."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        # comm may contain spaces/parens, so split around the last ')'.
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        table[int(d)] = (ppid, comm)
    return table


def descendants(root, table=None):
    table = table or proc_table()
    kids, out = {}, []
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    stack = [root]
    while stack:
        for c in kids.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def mem_kib(pid):
    """(PSS, private) in KiB from smaps_rollup; (0, 0) if the process is gone."""
    vals = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                vals[k] = int(v.split()[0])
    except OSError:
        return 0, 0
    return vals.get("Pss", 0), vals.get("Private_Clean", 0) + vals.get("Private_Dirty", 0)


def tree_mem(root):
    """Memory of a server's process tree, counting only the server binary
    itself (not the shells/commands its sessions run)."""
    table = proc_table()
    comm = table.get(root, (0, ""))[1]
    pids = [root] + [p for p in descendants(root, table) if table[p][1] == comm]
    pss = priv = 0
    for p in pids:
        a, b = mem_kib(p)
        pss, priv = pss + a, priv + b
    return pss, priv


# ---------------------------------------------------------------- environment

class Env:
    """Keys, two sshds, optionally the gateway; owns every child process."""

    def __init__(self, tmp, gatehouse, kex=None):
        self.tmp = Path(tmp)
        self.gatehouse = gatehouse
        self.kex = kex
        self.daemons = []          # (name, Popen, stderr file) stopped last
        self.gw = None             # gateway Popen, or None
        self.gw_error = None       # why the gateway row is missing
        self.gw_port = None
        self.configs = {}
        self.issuer = None         # the dev IdP's issuer, once started
        self.idp_error = None      # why the bound-key row is missing
        self.person_bound = False  # person_key has a login binding
        self.gw_state = self.tmp / "gw" / "state"
        self.recording_yaml = ""   # a `recording:` section; "" = defaults
        self.edge_port = None      # the one-port edge listener (issue 16)

    # -- setup --
    def setup(self, jump=True, idp=True):
        """Keys, the target sshd, and unless turned off the jump sshd and
        the dev IdP; then the gateway."""
        os.chmod(self.tmp, 0o755)
        os.makedirs("/run/sshd", exist_ok=True)
        if subprocess.run(["id", USER], capture_output=True).returncode != 0:
            run(["useradd", "-m", "-s", "/bin/bash", USER])
        run(["usermod", "-p", "*", USER])  # unlocked but no password
        t = self.tmp
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", t / "user_ca"])
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", t / "client_key"])
        # Baselines use a cert too, so every path does the same auth work
        # at the target sshd as the gateway's minted certificate does.
        run(["ssh-keygen", "-q", "-s", t / "user_ca", "-I", "bench", "-n", USER,
             "-V", "-1m:+1h", t / "client_key.pub"])
        # ssh silently loads <IdentityFile>-cert.pub; keep the cert elsewhere
        # so the gateway path offers only the plain key it has registered.
        os.rename(t / "client_key-cert.pub", t / "client_cert.pub")
        cas = [(t / "user_ca.pub").read_text().strip()]
        if self.gatehouse:
            try:
                cas.append(self.gateway_ca())
            except BenchError as e:
                self.gw_error = f"`gatehouse ca init` failed: {e}"
        (t / "trusted_cas").write_text("\n".join(cas) + "\n")
        self.target_port = self.start_sshd("target")
        if jump:
            self.jump_port = self.start_sshd("jump")
        if idp and self.gatehouse and not self.gw_error:
            try:
                self.start_idp()
            except BenchError as e:
                # The bound-key row needs it; the other rows do not.
                self.idp_error = str(e)
        if self.gatehouse and not self.gw_error:
            try:
                self.start_gateway()
            except BenchError as e:
                self.gw_error = str(e)

    def gateway_ca(self):
        key = self.tmp / "gw_user_ca"
        out = run([self.gatehouse, "ca", "init", "--key", key])
        # Prefer deriving the public half ourselves; fall back to the printout.
        try:
            return run(["ssh-keygen", "-y", "-f", key]).strip()
        except BenchError:
            for line in out.splitlines():
                m = re.search(r"(ssh-ed25519|ecdsa-sha2-\S+|ssh-rsa) [A-Za-z0-9+/=]+", line)
                if m:
                    return m.group(0)
        raise BenchError(f"could not find the gateway CA public key; output:\n{out}")

    def start_sshd(self, name):
        d = self.tmp / name
        d.mkdir(mode=0o755)
        os.chmod(d, 0o755)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "host_ed25519"])
        port = free_port()
        (d / "sshd_config").write_text(f"""\
ListenAddress 127.0.0.1
Port {port}
HostKey {d}/host_ed25519
PidFile {d}/sshd.pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile none
TrustedUserCAKeys {self.tmp}/trusted_cas
StrictModes no
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel ERROR
MaxStartups 1000:30:2000
MaxSessions 1000
UseDNS no
PrintMotd no
AllowTcpForwarding yes
""")
        err = open(d / "stderr", "wb")
        p = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", d / "sshd_config"],
                             stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                             start_new_session=True)
        self.daemons.append((name, p, err))
        setattr(self, f"{name}_proc", p)
        self.wait_banner(port, p, d / "stderr", f"{name} sshd")
        return port

    @staticmethod
    def wait_banner(port, p, errpath, what, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise BenchError(f"{what} exited with {p.returncode}:\n{tail(errpath)}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    if s.recv(64).startswith(b"SSH-2.0-"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise BenchError(f"{what} on port {port} not ready after {timeout}s:\n{tail(errpath)}")

    def restart_gateway(self):
        """A fresh gateway process: after gigabytes of throughput the old
        one's allocator holds freed buffers that new sessions would reuse,
        hiding their cost from a before/after memory comparison."""
        old = self.gw
        for d in [d for d in self.daemons if d[1] is old]:
            d[2].close()
        self.daemons = [d for d in self.daemons if d[1] is not old]
        old.terminate()
        try:
            old.wait(timeout=15)
        except subprocess.TimeoutExpired:
            old.kill()
            old.wait()
        self.start_gateway()

    def start_gateway(self):
        t, gw = self.tmp, self.tmp / "gw"
        self.gw_state.mkdir(parents=True, mode=0o755, exist_ok=True)
        q = json.dumps  # a JSON string is a valid YAML double-quoted scalar
        client_key = " ".join((t / "client_key.pub").read_text().split()[:2])
        host_key = " ".join((t / "target/host_ed25519.pub").read_text().split()[:2])
        (t / "gatehouse.yaml").write_text(f"""\
listen: 127.0.0.1:0
host_keys: [{q(str(gw / 'host_ed25519'))}]
user_ca: {q(str(t / 'gw_user_ca'))}
state_dir: {q(str(self.gw_state))}
{self.recording_yaml}{self.idp_section()}{self.edge_yaml()}identities:
  - name: bench
    email: bench@example.com
    groups: [bench]
    keys:
      - {q(client_key)}
policies:
  bench:
    rules:
      - allow: bench
        when: {{groups: [bench, sre]}}
routes:
  - name: {ROUTE}
    target: 127.0.0.1:{self.target_port}
    logins: [{USER}]
    host_key: {q(host_key)}
    policy: bench
  - name: {NOREC_ROUTE}
    target: 127.0.0.1:{self.target_port}
    logins: [{USER}]
    host_key: {q(host_key)}
    policy:
      include: [bench]
      obligations: {{record: "off"}}
""")
        self.gw_stderr = gw / "stderr"
        err = open(self.gw_stderr, "wb")
        p = subprocess.Popen([self.gatehouse, "serve", "--config", t / "gatehouse.yaml"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                             start_new_session=True, env={**os.environ, "NO_COLOR": "1"})
        self.daemons.append(("gatehouse", p, err))
        # Its first stdout line announces the bound port. Read raw bytes
        # under a deadline: readline() could block on a partial line forever.
        fd, line, deadline = p.stdout.fileno(), b"", time.monotonic() + 20
        while b"\n" not in line and select.select([fd], [], [], max(0, deadline - time.monotonic()))[0]:
            chunk = os.read(fd, 1)
            if not chunk:
                break
            line += chunk
        line = line.decode(errors="replace")
        m = re.match(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            p.poll()
            raise BenchError(f"gateway did not announce its port (rc={p.returncode}, "
                             f"first line {line!r}):\n{tail(self.gw_stderr)}")
        # Keep draining stdout so a chatty gateway never blocks on a full
        # pipe; the edge announces its port there too.
        edge_seen = threading.Event()

        def drain():
            for raw in p.stdout:
                if e := re.match(rb"edge listening on 127\.0\.0\.1:(\d+)", raw):
                    self.edge_port = int(e.group(1))
                    edge_seen.set()
        self.edge_port = None
        threading.Thread(target=drain, daemon=True).start()
        edge_seen.wait(10)
        self.gw, self.gw_port = p, int(m.group(1))
        self.wait_banner(self.gw_port, p, self.gw_stderr, "gateway")

    def edge_yaml(self):
        """The one-port edge listener with a self-signed certificate for
        127.0.0.1 (made once), and loopback exempt from penalties: the edge
        step opens hundreds of connections that never authenticate."""
        cert, key = self.tmp / "edge.crt", self.tmp / "edge.key"
        if not cert.exists():
            run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                 "-addext", "subjectAltName=IP:127.0.0.1",
                 # A leaf, not a CA: rustls refuses a CA as the server's certificate.
                 "-addext", "basicConstraints=critical,CA:FALSE", "-keyout", key, "-out", cert])
        q = json.dumps
        return (f"edge:\n  listen: 127.0.0.1:0\n  tls: {{cert: {q(str(cert))}, key: {q(str(key))}}}\n"
                "limits:\n  penalties: {exempt: [127.0.0.1]}\n")

    def start_idp(self):
        """The dev IdP (dev/idp), for the bound-key login row."""
        idp = REPO / "dev/idp"
        if not (idp / "node_modules").is_dir():
            run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", idp], timeout=300)
        err = open(self.tmp / "idp.stderr", "wb")
        p = subprocess.Popen(["node", "server.mjs", "--port", "0", "--interval", "1"], cwd=idp,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                             start_new_session=True)
        self.daemons.append(("idp", p, err))
        fd, line, deadline = p.stdout.fileno(), b"", time.monotonic() + 30
        while b"\n" not in line and select.select([fd], [], [], max(0, deadline - time.monotonic()))[0]:
            chunk = os.read(fd, 1)
            if not chunk:
                break
            line += chunk
        m = re.match(r"listening on (http://127\.0\.0\.1:\d+)", line.decode(errors="replace"))
        if not m:
            raise BenchError(f"dev IdP did not start:\n{tail(self.tmp / 'idp.stderr')}")
        self.issuer = m.group(1)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.tmp / "person_key"])

    def idp_section(self):
        if not self.issuer:
            return ""
        return (f"idp:\n  issuer: {self.issuer}\n  client_id: gatehouse\n"
                "  scopes: [openid, email, profile, groups]\n")

    def sign_in_person(self):
        """Signs alice in once with person_key, answering the device prompt
        the way a browser would, so the key gets a login binding."""
        if self.person_bound:
            return
        if not self.issuer:
            raise BenchError(self.idp_error or "no IdP")
        self.check_gateway()
        argv = ["ssh", "-F", "/dev/null", "-i", str(self.tmp / "person_key"),
                "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-p", str(self.gw_port),
                f"{USER}@{ROUTE}@127.0.0.1", "true"]
        c = Client(argv, stdin=subprocess.DEVNULL)
        try:
            deadline, err = time.monotonic() + 30, ""
            while not re.search(r" and enter \S+\n", err):
                if time.monotonic() > deadline or c.p.poll() is not None:
                    raise BenchError(f"no sign-in prompt; {c.stderr()}")
                time.sleep(0.05)
                c.err.seek(0)
                err = c.err.read().decode(errors="replace")
            code = re.search(r" and enter (\S+)\n", err).group(1)
            run(["node", "approve.mjs", "--issuer", self.issuer, "--user-code", code,
                 "--login", "alice@example.com", "--password", "alice-pw"],
                timeout=30, cwd=REPO / "dev/idp")
            if c.p.wait(timeout=30) != 0:
                raise BenchError(f"signed-in ssh failed: {c.stderr()}")
        finally:
            c.close()
        self.person_bound = True

    # -- clients --
    def ssh_config(self, cert, cipher):
        key = (cert, cipher)
        if key not in self.configs:
            path = self.tmp / f"ssh_config_{len(self.configs)}"
            lines = ["Host *", f"IdentityFile {self.tmp}/client_key", "IdentitiesOnly yes",
                     "StrictHostKeyChecking no", "UserKnownHostsFile /dev/null",
                     # INFO: ssh logs e.g. "no matching cipher" at INFO, and
                     # stderr is only read when something failed.
                     "BatchMode yes", "LogLevel INFO", "ConnectTimeout 15"]
            if cert:
                lines.append(f"CertificateFile {self.tmp}/client_cert.pub")
            if cipher:
                lines.append(f"Ciphers {cipher}")  # file, so the -J hop uses it too
            if self.kex:
                lines.append(f"KexAlgorithms {self.kex}")
            path.write_text("\n  ".join(lines) + "\n")
            self.configs[key] = path
        return self.configs[key]

    def ssh(self, path, cipher=None, tty=False, route=ROUTE):
        """argv prefix for an ssh client over `path`; append the command.
        `route` picks the gateway route (ROUTE records, NOREC_ROUTE not)."""
        if path == "bound":
            self.sign_in_person()
            argv = ["ssh", "-F", str(self.ssh_config(False, cipher)), "-i",
                    str(self.tmp / "person_key"), "-p", str(self.gw_port),
                    f"{USER}@{ROUTE}@127.0.0.1"]
            return argv[:1] + (["-tt"] if tty else []) + argv[1:]
        if path in ("gatehouse", "edge", "edge-tls"):
            self.check_gateway()
            # The gateway authenticates the registered plain key, no cert.
            port = self.gw_port if path == "gatehouse" else self.edge_port
            if port is None:
                raise BenchError("the gateway announced no edge listener")
            argv = ["ssh", "-F", str(self.ssh_config(False, cipher)), "-p", str(port)]
            if path == "edge-tls":
                argv += ["-o", f"ProxyCommand={self.gatehouse} tunnel --ca {self.tmp / 'edge.crt'} "
                         f"127.0.0.1:{port}"]
            argv.append(f"{USER}@{route}@127.0.0.1")
        else:
            argv = ["ssh", "-F", str(self.ssh_config(True, cipher)), "-p", str(self.target_port)]
            if path == "jump":
                # ProxyJump passes -F on to the hop ssh, so it shares the config.
                argv += ["-o", f"ProxyJump={USER}@127.0.0.1:{self.jump_port}"]
            argv.append(f"{USER}@127.0.0.1")
        return argv[:1] + (["-tt"] if tty else []) + argv[1:]

    def check_gateway(self):
        if self.gw is None:
            raise BenchError(self.gw_error or "gateway not running")
        if self.gw.poll() is not None:
            raise BenchError(f"gateway exited with {self.gw.returncode}:\n{tail(self.gw_stderr)}")

    def close(self):
        # Reverse start order: gateway, then sshds. Session children of sshd
        # call setsid(), so stop those by pid before the listener.
        for name, p, err in reversed(self.daemons):
            if p.poll() is None and name != "gatehouse":
                for pid in descendants(p.pid):
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            kill_tree(p)
            err.close()


class Client:
    """An ssh client subprocess with deadline-bounded, non-blocking pipe I/O."""

    def __init__(self, argv, stdin=subprocess.PIPE):
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=self.err,
                                  start_new_session=True)  # killpg reaches a -J hop ssh
        self.out = self.p.stdout.fileno()
        os.set_blocking(self.out, False)
        self.buf = b""

    def read_until(self, token, deadline):
        while token not in self.buf:
            r, _, _ = select.select([self.out], [], [], max(0, deadline - time.monotonic()))
            if not r:
                raise BenchError(f"timed out waiting for {token!r}; {self.stderr()}")
            chunk = os.read(self.out, 65536)
            if not chunk:
                try:  # let it exit, so the message carries its status
                    self.p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                raise BenchError(f"ssh closed before {token!r}; {self.stderr()}")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(token)
        return head

    def stderr(self):
        rc = self.p.poll()
        self.err.seek(0)
        msg = self.err.read().decode(errors="replace").strip()[-600:]
        return f"ssh rc={rc}, stderr: {msg or '(empty)'}"

    def close(self):
        kill_tree(self.p, grace=1)
        self.err.close()
        self.p.stdout.close()
        if self.p.stdin:
            self.p.stdin.close()


# ---------------------------------------------------------------- measurements

def pct(xs, q):
    """Nearest-rank percentile."""
    return sorted(xs)[max(0, math.ceil(q * len(xs)) - 1)]


def transfer_budget(mib):
    return 30 + mib / 5  # seconds; generous even for a 5 MiB/s path


def download(env, path, cipher, mib, command=None, route=ROUTE):
    """MiB/s from the first received byte to EOF, excluding connection setup.
    `command` must print exactly `mib` MiB (default: zeros)."""
    command = command or f"head -c {mib * MiB} /dev/zero"
    c = Client(env.ssh(path, cipher, route=route) + [command], stdin=subprocess.DEVNULL)
    null = os.open("/dev/null", os.O_WRONLY)
    try:
        # On 2 cores a Python reader copying every byte steals CPU from ssh;
        # a 1 MiB pipe plus splice() makes the reader nearly free.
        fcntl.fcntl(c.out, fcntl.F_SETPIPE_SZ, MiB)
        deadline = time.monotonic() + transfer_budget(mib)
        got = first = 0
        t0 = None
        while True:
            r, _, _ = select.select([c.out], [], [], max(0, deadline - time.monotonic()))
            if not r:
                raise BenchError(f"download timed out after {got} bytes; {c.stderr()}")
            n = os.splice(c.out, null, MiB)  # zero-copy: count bytes, don't touch them
            if n == 0:
                break
            if t0 is None:
                t0, first = time.perf_counter(), n
            got += n
        t1 = time.perf_counter()
        if c.p.wait(timeout=15) != 0 or got != mib * MiB:
            raise BenchError(f"download got {got} of {mib * MiB} bytes; {c.stderr()}")
        return (got - first) / MiB / (t1 - t0)
    finally:
        os.close(null)
        c.close()


def upload(env, path, cipher, mib):
    """MiB/s from the first byte sent until the remote `wc -c` reports."""
    c = Client(env.ssh(path, cipher) + ["echo GH_READY; wc -c"])
    try:
        deadline = time.monotonic() + transfer_budget(mib)
        c.read_until(b"GH_READY\n", time.monotonic() + 30)
        fd = c.p.stdin.fileno()
        os.set_blocking(fd, False)
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, MiB)
        zero = os.open("/dev/zero", os.O_RDONLY)
        block, left = memoryview(bytes(MiB)), mib * MiB
        t0 = time.perf_counter()
        try:
            while left:
                _, w, _ = select.select([], [fd], [], max(0, deadline - time.monotonic()))
                if not w:
                    raise BenchError(f"upload stalled with {left} bytes left; {c.stderr()}")
                try:  # splice from /dev/zero (Linux >= 6.x) spares the copy
                    left -= os.splice(zero, fd, min(left, MiB))
                except BlockingIOError:
                    pass
                except OSError:
                    left -= os.write(fd, block[:min(left, MiB)])
        finally:
            os.close(zero)
        c.p.stdin.close()
        count = c.read_until(b"\n", deadline).strip()
        t1 = time.perf_counter()
        if c.p.wait(timeout=15) != 0 or count != str(mib * MiB).encode():
            raise BenchError(f"upload: remote counted {count!r} of {mib * MiB} bytes; {c.stderr()}")
        return mib / (t1 - t0)
    finally:
        c.close()


def throughput(env, path, cipher, direction, mib, reps):
    fn = download if direction == "download" else upload
    runs = []
    for _ in range(reps):
        t = time.monotonic()
        runs.append(fn(env, path, cipher, mib))
        # A very slow path must not blow the total runtime budget.
        if time.monotonic() - t > 40:
            break
    return {"median_mibps": statistics.median(runs), "runs_mibps": runs}


def echo(env, path, keys):
    """Per-keystroke round trip through a remote pty in raw mode, with `cat`
    echoing each byte back like a shell's line editor would."""
    c = Client(env.ssh(path, tty=True) + ["stty raw -echo && echo GH_READY && exec cat"])
    try:
        c.read_until(b"GH_READY", time.monotonic() + 30)
        time.sleep(0.2)
        c.buf = b""  # drop the newline after the marker
        fd = c.p.stdin.fileno()
        samples = []
        for i in range(keys):
            ch = bytes([ord("a") + i % 26])
            t0 = time.perf_counter_ns()
            os.write(fd, ch)
            c.read_until(ch, time.monotonic() + 10)
            samples.append((time.perf_counter_ns() - t0) / 1000)
            time.sleep(0.005)
        return {"p50_us": pct(samples, 0.5), "p99_us": pct(samples, 0.99),
                "max_us": max(samples), "samples": len(samples)}
    finally:
        c.close()


def connect(env, path, n):
    """Wall time of `ssh host true`: TCP + kex + auth + session + exit."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        run(env.ssh(path) + ["true"], timeout=30)
        times.append((time.perf_counter() - t0) * 1000)
    # Key exchange dominates setup cost and differs per path (OpenSSH pairs
    # pick a post-quantum hybrid; russh may not share one), so record it.
    argv = env.ssh(path)
    log = subprocess.run(argv[:1] + ["-v"] + argv[1:] + ["true"], capture_output=True,
                         text=True, timeout=30).stderr
    kex = re.findall(r"kex: algorithm: (\S+)", log)
    ciphers = re.findall(r"kex: server->client cipher: (\S+)", log)
    return {"median_ms": statistics.median(times), "p90_ms": pct(times, 0.9), "runs": n,
            "client_kex": kex, "client_cipher": ciphers}


def memory(env, path, m, route=ROUTE):
    """Memory growth per idle interactive session of the server that
    terminates the client's connection, plus target sshd cost as context."""
    ssh = lambda **kw: env.ssh(path, route=route, **kw)
    run(ssh() + ["true"], timeout=30)  # warm lazily-initialised state
    # Sessions of earlier steps may still be tearing down; they would skew
    # the baseline. Wait until none are left or the count holds still for
    # 2 s; what remains is reported, since a leak is a finding in itself.
    count = lambda: len(descendants(env.target_proc.pid)) + len(descendants(env.jump_proc.pid))
    deadline, lingering, still = time.monotonic() + 15, count(), 0
    while lingering and still < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
        now = count()
        still, lingering = (still + 1 if now == lingering else 0), now
    time.sleep(0.5)
    if path == "gatehouse":
        env.restart_gateway()
        run(ssh() + ["true"], timeout=30)  # warm the fresh process
        time.sleep(0.5)
    front = {"direct": env.target_proc, "jump": env.jump_proc, "gatehouse": env.gw}[path]
    before, tgt_before = tree_mem(front.pid), tree_mem(env.target_proc.pid)
    clients = []
    try:
        for i in range(m):
            clients.append(Client(ssh(tty=True) + ["sleep 600"]))
            if i % 10 == 9:
                time.sleep(0.3)  # don't trip MaxStartups-style throttling
        # Established once every session's `sleep` runs on the target.
        deadline = time.monotonic() + 60 + m
        while True:
            table = proc_table()
            up = sum(table[p][1] == "sleep" for p in descendants(env.target_proc.pid, table))
            if up >= m:
                break
            dead = [c for c in clients if c.p.poll() is not None]
            if dead:
                raise BenchError(f"{len(dead)} idle sessions died; {dead[0].stderr()}")
            if time.monotonic() > deadline:
                raise BenchError(f"only {up}/{m} idle sessions came up")
            time.sleep(0.3)
        time.sleep(1)  # let allocators and page accounting settle
        after, tgt_after = tree_mem(front.pid), tree_mem(env.target_proc.pid)
    finally:
        for c in clients:
            c.close()
    per = lambda a, b, k: (a[k] - b[k]) / m
    res = {"front_pss_kib": per(after, before, 0), "front_private_kib": per(after, before, 1),
           "target_pss_kib": per(tgt_after, tgt_before, 0), "sessions": m,
           "lingering_processes_before": lingering}
    if path == "direct":  # the front end *is* the target
        res["target_pss_kib"] = res["front_pss_kib"]
    return res


# ---------------------------------------------------------------- recording (issue 4)

def proc_cpu_s(pid):
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    f = stat[stat.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def sessions_index(env):
    """The gateway's session index: one dict per session (newest first)."""
    out = run([env.gatehouse, "sessions", "list", "--config", env.tmp / "gatehouse.yaml",
               "--json"], timeout=30)
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def wait_sealed(env, known, n=1, timeout=180):
    """Waits until `n` sessions not in `known` (ids) have ended recording
    (sealed, interrupted or failed) and returns them."""
    deadline = time.monotonic() + timeout
    while True:
        new = [s for s in sessions_index(env) if s["session_id"] not in known]
        done = [s for s in new if s["status"] in ("sealed", "interrupted", "failed")]
        if len(done) >= n and len(done) == len(new):
            return done
        if time.monotonic() > deadline:
            raise BenchError(f"recordings not sealed after {timeout}s: "
                             + ", ".join(f"{s['session_id']}={s['status']}" for s in new))
        time.sleep(0.25)


def stored_sizes(env, session):
    """Bytes in file storage for one sealed session: the sealed .cast.zst
    (or .stream.zst) objects, the segments (.part.zst, or .part before segments were
    compressed), meta.json, and meta's own byte counts."""
    root = env.gw_state / "recordings" / session["prefix"]
    sizes = {"sealed_bytes": 0, "segment_bytes": 0, "meta_bytes": 0, "segments": 0}
    for f in root.rglob("*"):
        # `.stream.zst`: a channel without a pty, recorded as a byte stream
        # (issue 15).
        if f.name.endswith(".cast.zst") or f.name.endswith(".stream.zst"):
            sizes["sealed_bytes"] += f.stat().st_size
        elif f.name.endswith(".part") or f.name.endswith(".part.zst"):
            sizes["segment_bytes"] += f.stat().st_size
            sizes["segments"] += 1
        elif f.name == "meta.json":
            sizes["meta_bytes"] += f.stat().st_size
    meta = json.loads((root / "meta.json").read_text())["meta"]
    sizes["output_bytes"] = sum(c["output_bytes"] for c in meta["channels"])
    sizes["cast_bytes"] = sum(c["cast_bytes"] for c in meta["channels"])
    return sizes


def make_payloads(env, mib):
    """Two files of exactly `mib` MiB the target cats: random bytes (worst
    case for the recorder's UTF-8 decoder and JSON escaping) and base64 text
    in 100-column lines (plain terminal-like text). Pre-generated, so the
    transfers cost the target sshd no generation CPU."""
    import base64
    files = {}
    rnd = env.tmp / "payload_random"
    with open(rnd, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MiB))
    txt = env.tmp / "payload_text"
    with open(rnd, "rb") as src, open(txt, "wb") as f:
        left = mib * MiB
        while left:
            lines = base64.b64encode(src.read(75 * 1000))  # 100 chars per 75 bytes
            chunk = b"\n".join(lines[i:i + 100] for i in range(0, len(lines), 100)) + b"\n"
            chunk = chunk[:left]
            f.write(chunk)
            left -= len(chunk)
            if not chunk:
                src.seek(0)
    for p in (rnd, txt):
        os.chmod(p, 0o644)
    return {"random": rnd, "text": txt}


def sftp_download(env, path, mib, route, times=2):
    """MiB/s of `sftp -b` getting `path` (`mib` MiB) `times` times to
    /dev/null; wall time of the whole sftp run, connection included."""
    batch = env.tmp / "sftp_batch"
    batch.write_text(f"get {path} /dev/null\n" * times)
    argv = ["sftp", "-F", str(env.ssh_config(False, CIPHERS[0])), "-P", str(env.gw_port),
            "-b", str(batch), f"{USER}@{route}@127.0.0.1"]
    t0 = time.perf_counter()
    run(argv, timeout=transfer_budget(mib * times))
    return mib * times / (time.perf_counter() - t0)


def rec_throughput(env, mib, reps):
    """Download `mib` MiB through the recorded route and the `norec` route,
    alternating, for each workload: MiB/s plus the gateway's CPU seconds per
    GiB, counted from before the session until its recording is sealed.
    Terminal output (`cat` in an exec channel) is recorded byte for byte;
    an sftp transfer is recorded as file operations, not contents."""
    files = make_payloads(env, mib)
    cipher = CIPHERS[0]
    out = {}
    workloads = [(wl, path, mib) for wl, path in files.items()]
    workloads.append(("sftp get, random", files["random"], 2 * mib))
    for wl, path, total in workloads:
        runs = {"on": [], "off": []}
        for _ in range(reps):
            for mode, route in (("on", ROUTE), ("off", NOREC_ROUTE)):
                env.check_gateway()
                known = {s["session_id"] for s in sessions_index(env)}
                time.sleep(0.3)
                cpu0 = proc_cpu_s(env.gw.pid)
                if wl.startswith("sftp"):
                    mibps = sftp_download(env, path, mib, route, times=total // mib)
                else:
                    mibps = download(env, "gatehouse", cipher, mib, f"cat {path}", route)
                cpu1 = proc_cpu_s(env.gw.pid)
                r = {"mibps": mibps, "cpu_transfer_s": cpu1 - cpu0}
                if mode == "on":
                    s = wait_sealed(env, known)[0]
                    if s["status"] != "sealed":
                        raise BenchError(f"recording {s['session_id']} is {s['status']}: "
                                         f"{s.get('reason')}")
                    r["cpu_s"] = proc_cpu_s(env.gw.pid) - cpu0
                    r["stored"] = stored_sizes(env, s)
                else:  # the same settle time as a quick seal, so teardown counts
                    time.sleep(1)
                    r["cpu_s"] = proc_cpu_s(env.gw.pid) - cpu0
                runs[mode].append(r)
        res = {"mib": total, "cipher": cipher, "runs": runs}
        for mode in ("on", "off"):
            res[f"{mode}_mibps"] = statistics.median(r["mibps"] for r in runs[mode])
            res[f"{mode}_cpu_s_per_gib"] = statistics.median(r["cpu_s"] for r in runs[mode]) * GiB / (total * MiB)
            res[f"{mode}_cpu_transfer_s_per_gib"] = statistics.median(
                r["cpu_transfer_s"] for r in runs[mode]) * GiB / (total * MiB)
        res["ratio"] = res["on_mibps"] / res["off_mibps"]
        res["cpu_overhead_pct"] = 100 * (res["on_cpu_s_per_gib"] / res["off_cpu_s_per_gib"] - 1)
        res["cpu_transfer_overhead_pct"] = 100 * (res["on_cpu_transfer_s_per_gib"]
                                                  / res["off_cpu_transfer_s_per_gib"] - 1)
        st = runs["on"][0]["stored"]
        # An sftp recording holds file operations: no terminal output.
        res["stored_over_raw"] = st["sealed_bytes"] / st["output_bytes"] if st["output_bytes"] else None
        out[wl] = res
    for p in files.values():
        p.unlink()
    return out


TEXT_SESSION = ("find /usr /etc /var/lib -ls 2>/dev/null; "
                "ls -laR --color=always /usr 2>/dev/null; echo GH_DONE")


def rec_stored(env):
    """A terminal session (pty) printing tens of MiB of directory listings;
    once sealed, the sealed .cast.zst bytes vs the raw bytes the client got."""
    known = {s["session_id"] for s in sessions_index(env)}
    c = Client(env.ssh("gatehouse", tty=True) + [TEXT_SESSION])
    null = os.open("/dev/null", os.O_WRONLY)
    try:
        got, deadline = 0, time.monotonic() + 300
        while True:
            r, _, _ = select.select([c.out], [], [], max(0, deadline - time.monotonic()))
            if not r:
                raise BenchError(f"text session timed out after {got} bytes; {c.stderr()}")
            n = os.splice(c.out, null, MiB)
            if n == 0:
                break
            got += n
        if c.p.wait(timeout=15) != 0:
            raise BenchError(f"text session failed; {c.stderr()}")
    finally:
        os.close(null)
        c.close()
    s = wait_sealed(env, known)[0]
    if s["status"] != "sealed":
        raise BenchError(f"recording {s['session_id']} is {s['status']}: {s.get('reason')}")
    st = stored_sizes(env, s)
    return {"command": TEXT_SESSION, "client_bytes": got, **st,
            "sealed_over_raw": st["sealed_bytes"] / st["output_bytes"],
            "cast_over_raw": st["cast_bytes"] / st["output_bytes"],
            "segments_over_raw": st["segment_bytes"] / st["output_bytes"],
            "at_rest_over_raw": (st["sealed_bytes"] + st["segment_bytes"] + st["meta_bytes"])
            / st["output_bytes"]}


class S3Server:
    """SeaweedFS `weed mini` on loopback (as sshd-test/src/s3.rs): every
    port free, its own data dir, one identity; stopped by its Popen handle."""
    AK, SK, REGION = "gatehouse-bench", "gatehouse-bench-secret-key", "us-east-1"
    FLAGS = ["s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port",
             "volume.port.grpc", "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc"]

    def __init__(self, tmp, bucket="bench"):
        self.dir, self.bucket, self.p, self.err = Path(tmp) / "s3", bucket, None, None
        (self.dir / "data").mkdir(parents=True)
        (self.dir / "s3.json").write_text(json.dumps({"identities": [{
            "name": "gatehouse", "credentials": [{"accessKey": self.AK, "secretKey": self.SK}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        self.credentials = self.dir / "credentials"
        self.credentials.write_text(f"[default]\naws_access_key_id = {self.AK}\n"
                                    f"aws_secret_access_key = {self.SK}\n")

    def start(self):
        if not shutil.which("weed"):
            raise BenchError("weed (SeaweedFS) not on PATH: run dev/install-deps")
        fails = []
        for attempt in range(3):
            ports = set()
            while len(ports) < len(self.FLAGS):
                ports.add(free_port())
            ports = dict(zip(self.FLAGS, ports))
            self.port = ports["s3.port"]
            self.err = open(self.dir / f"weed.{attempt}.log", "wb")
            argv = ["weed", "mini", f"-dir={self.dir / 'data'}", f"-s3.config={self.dir / 's3.json'}",
                    "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                    *[f"-{k}={v}" for k, v in ports.items()],
                    "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0",
                    "-s3.port.lance=0", "-master.telemetry=false"]
            self.p = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                                      stdout=self.err, stderr=self.err, start_new_session=True)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.p.poll() is None:
                # Creating the bucket needs S3, the filer and a good signature.
                if self.request("PUT", f"/{self.bucket}")[0] in (200, 409):
                    return
                time.sleep(0.1)
            fails.append(f"attempt {attempt + 1}:\n{tail(self.dir / f'weed.{attempt}.log')}")
            self.stop()
        raise BenchError("weed mini did not become ready:\n" + "\n".join(fails))

    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def request(self, method, path):
        """(HTTP status, body bytes) of a SigV4-signed request made by curl."""
        r = subprocess.run(["curl", "-s", "-X", method, "--max-time", "5",
                            "--aws-sigv4", f"aws:amz:{self.REGION}:s3",
                            "--user", f"{self.AK}:{self.SK}", "-w", "\n%{http_code}",
                            self.endpoint() + path], capture_output=True)
        body, _, code = r.stdout.rpartition(b"\n")
        try:
            return int(code), body
        except ValueError:
            return 0, body

    def list_keys(self, prefix):
        import urllib.parse
        keys, token = [], None
        while True:
            q = f"list-type=2&prefix={urllib.parse.quote(prefix, safe='')}"
            if token:
                q += f"&continuation-token={urllib.parse.quote(token, safe='')}"
            code, body = self.request("GET", f"/{self.bucket}?{q}")
            if code != 200:
                raise BenchError(f"S3 list gave {code}: {body[:300]!r}")
            text = body.decode()
            keys += [html_unescape(k) for k in re.findall(r"<Key>(.*?)</Key>", text)]
            m = re.search(r"<NextContinuationToken>(.*?)</NextContinuationToken>", text)
            if "<IsTruncated>true</IsTruncated>" not in text or not m:
                return keys
            token = html_unescape(m.group(1))

    def get(self, key):
        import urllib.parse
        code, body = self.request("GET", f"/{self.bucket}/{urllib.parse.quote(key)}")
        if code != 200:
            raise BenchError(f"S3 get {key} gave {code}")
        return body

    def stop(self):
        if self.p is not None:
            kill_tree(self.p, grace=5)
            self.p = None
        if self.err:
            self.err.close()
            self.err = None


def html_unescape(s):
    import html
    return html.unescape(s)


def lag_run(env, s3, prefix, interval, seconds, period=0.2, poll=0.1):
    """One session printing a numbered marker every `period` s for `seconds`
    s through a gateway that records to s3://bucket/prefix. A poller lists
    the prefix every `poll` s; each new .part segment is fetched and the time
    of the listing that first showed it is when its markers became durable.
    Returns the lags (durable - received by the client) in seconds."""
    env.gw_state = env.tmp / "gw" / f"state-{prefix}"
    env.recording_yaml = (f"recording:\n  storage: s3://{s3.bucket}/{prefix}\n"
                          f"  s3_endpoint: {s3.endpoint()}\n  s3_region: {s3.REGION}\n"
                          f"  s3_credentials_file: {json.dumps(str(s3.credentials))}\n"
                          f"  segment_interval: {interval}\n")
    env.restart_gateway()
    n = int(seconds / period)
    received, durable, seen, stop = {}, {}, set(), threading.Event()
    errors = []

    def poller():
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                keys = s3.list_keys(prefix + "/")
                t_seen = time.monotonic()
                for k in keys:
                    if (k.endswith(".part") or k.endswith(".part.zst")) and k not in seen:
                        seen.add(k)
                        body = s3.get(k)
                        if k.endswith(".zst"):
                            # One zstd frame; the zstd CLI ships with Debian.
                            body = subprocess.run(["zstd", "-dc"], input=body,
                                                  capture_output=True, check=True).stdout
                        for m in re.findall(rb"GHMARK(\d{5})", body):
                            durable.setdefault(int(m), t_seen)
                stop.wait(max(0, poll - (time.monotonic() - t0)))
        except Exception as e:  # reported by the caller
            errors.append(e)

    th = threading.Thread(target=poller, daemon=True)
    th.start()
    cmd = f"for i in $(seq 1 {n}); do printf 'GHMARK%05d\\n' $i; sleep {period}; done"
    c = Client(env.ssh("gatehouse") + [cmd])
    try:
        deadline = time.monotonic() + seconds * 3 + 30
        while len(received) < n:
            line = c.read_until(b"\n", deadline)
            m = re.search(rb"GHMARK(\d{5})", line)
            if m:
                received.setdefault(int(m.group(1)), time.monotonic())
        c.p.wait(timeout=15)
    finally:
        c.close()
    deadline = time.monotonic() + 90  # the last markers arrive with the seal
    while len(durable) < n and time.monotonic() < deadline and not errors and th.is_alive():
        time.sleep(0.1)
    stop.set()
    th.join(timeout=15)
    if errors:
        raise BenchError(f"S3 poller failed: {errors[0]}")
    missing = [i for i in received if i not in durable]
    if missing:
        raise BenchError(f"{len(missing)} of {n} markers never appeared in S3 "
                         f"({len(seen)} segments seen)")
    lags = sorted(durable[i] - received[i] for i in received)
    return {"segment_interval": interval, "markers": n, "segments_seen": len(seen),
            "poll_s": poll, "p50_s": pct(lags, 0.5), "p99_s": pct(lags, 0.99),
            "max_s": lags[-1], "min_s": lags[0]}


def rec_lag(env, intervals, seconds):
    s3 = S3Server(env.tmp)
    saved = env.gw_state, env.recording_yaml
    try:
        s3.start()
        return {iv: lag_run(env, s3, f"lag-{iv}", iv, seconds) for iv in intervals}
    finally:
        env.gw_state, env.recording_yaml = saved
        try:
            if env.gw is not None:
                env.restart_gateway()
        finally:
            s3.stop()


def recording(env, cell, mib, reps, idle, lag_seconds):
    """Issue 4: recording on (route `target`) vs off (route `norec`)."""
    res = {"throughput": cell("recording throughput", rec_throughput, env, mib, reps),
           "stored": cell("recording stored bytes", rec_stored, env), "memory": {}}
    for mode, route in (("on", ROUTE), ("off", NOREC_ROUTE)):
        known = {s["session_id"] for s in sessions_index(env)}
        res["memory"][mode] = m = cell(f"recording memory {mode}", memory, env, "gatehouse",
                                       idle, route)
        if "error" not in m:  # were the idle sessions really recorded (or not)?
            time.sleep(2)
            m["recordings"] = len([s for s in sessions_index(env) if s["session_id"] not in known])
    res.update({
           "lag": cell("recording lag to S3", rec_lag, env, ["5s", "1s"], lag_seconds)})
    return res


# ---------------------------------------------------------------- every channel kind (issue 15)

# The four ways the `channels` step reaches the target: OpenSSH direct and
# `ssh -J`, and the gateway's recorded (`target`) and unrecorded (`norec`)
# routes.
CHANNEL_PATHS = ["direct", "jump", "gatehouse", "norec"]
CHANNEL_LABEL = {"direct": "direct", "jump": "ssh -J", "gatehouse": "recorded",
                 "norec": "unrecorded"}
# Issue 15's targets.
STREAM_VS_NOREC, STREAM_VS_JUMP = 0.9, 1.0   # rsync, tar, git clone, cat of random bytes
PTY_VS_NOREC = 0.8                           # cat of text to a pty
DOWNLOAD_VS_JUMP = 1.0                       # the throughput step's download, both ciphers
ECHO_ADDED_US = 150.0                        # echo p50 over direct, recorded route
WORDS = ("the of and to in is that for it as with was on be by at this are from or an "
         "have not which but all were when there can more if will one about so into "
         "some other than then now only its also after use two how our work first well "
         "way even new want because any these give day most us fn let mut self struct "
         "impl return match Some None Ok Err pub use mod const static async await loop "
         "while for in if else true false String Vec Option Result error config route "
         "session channel gateway target record spool segment upload seal index").split()


def chan_ssh(env, path, tty=False):
    """(argv without the destination, login, host) for a path of the
    channels step; `norec` is the gateway's unrecorded route."""
    argv = (env.ssh("gatehouse", tty=tty, route=NOREC_ROUTE) if path == "norec"
            else env.ssh(path, tty=tty))
    login, _, host = argv[-1].rpartition("@")
    return argv[:-1], login, host


def ssh_command(env, path):
    """One string for `rsync -e` and `GIT_SSH_COMMAND`: the path's ssh with
    the login given by `-l` (rsync and git append the host)."""
    import shlex
    argv, login, host = chan_ssh(env, path)
    return shlex.join(argv + ["-l", login]), host


def text_lines(rng, n_words):
    """About `n_words` words of prose-and-code-like text, ~70-column lines."""
    words = rng.choices(WORDS + ["\n"], weights=[1] * len(WORDS) + [12], k=n_words)
    return " ".join(words).replace(" \n ", "\n").encode() + b"\n"


def log_text(rng, size):
    """`size` bytes of log-like lines: timestamps, levels, components, ids,
    paths, prose. Compresses like real logs (about 0.2x at zstd -1)."""
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
    comps = ["api", "db", "auth", "scheduler", "cache", "worker", "proxy", "mailer"]
    out, total, t = [], 0, 1_700_000_000.0
    while total < size:
        n = 20000
        lv, cp = rng.choices(levels, k=n), rng.choices(comps, k=n)
        ids = rng.choices(range(1 << 30), k=n)
        wds = rng.choices(WORDS, k=n * 8)
        lines = []
        for i in range(n):
            t += rng.random() * 0.01
            lines.append(f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t))}.{int(t * 1000) % 1000:03d}Z "
                         f"{lv[i]:5} {cp[i]}[{ids[i] % 30000}]: {' '.join(wds[i * 8:i * 8 + 1 + ids[i] % 8])} "
                         f"req={ids[i]:08x} path=/v1/{cp[i]}/{ids[i] % 977} took={ids[i] % 900}ms\n")
        chunk = "".join(lines).encode()
        out.append(chunk)
        total += len(chunk)
    return b"".join(out)[:size]


def make_git_repo(repo, commits, binary_every, binary_mib, rng):
    """A bare repository with `commits` commits: 200 text files edited a few
    at a time, and a random binary blob every `binary_every` commits, built
    with `git fast-import` and repacked."""
    stream = repo.parent / "fast-import"
    files = {f"src/mod{i:03d}/file{i:03d}.rs": text_lines(rng, 1200).split(b"\n")
             for i in range(200)}
    with open(stream, "wb") as f:
        mark = 0

        def blob(data):
            nonlocal mark
            mark += 1
            f.write(b"blob\nmark :%d\ndata %d\n" % (mark, len(data)) + data + b"\n")
            return mark
        for c in range(commits):
            changes = []
            names = list(files) if c == 0 else rng.sample(list(files), 5)
            for name in names:
                lines = files[name]
                if c:
                    for _ in range(10):
                        lines[rng.randrange(len(lines))] = text_lines(rng, 10).rstrip(b"\n")
                    lines += text_lines(rng, 50).split(b"\n")
                changes.append((name, blob(b"\n".join(lines))))
            if c % binary_every == binary_every - 1:
                changes.append((f"assets/blob{c:04d}.bin",
                                blob(rng.randbytes(int(binary_mib * MiB)))))
            msg = f"commit {c}: edit {len(changes)} files\n".encode()
            ts = 1_700_000_000 + c * 3600
            f.write(b"commit refs/heads/main\n"
                    b"author Bench <bench@example.com> %d +0000\n"
                    b"committer Bench <bench@example.com> %d +0000\n"
                    b"data %d\n%s" % (ts, ts, len(msg), msg))
            for name, m in changes:
                f.write(b"M 100644 :%d %s\n" % (m, name.encode()))
            f.write(b"\n")
    run(["git", "init", "-q", "--bare", "--initial-branch=main", repo])
    with open(stream, "rb") as f:
        r = subprocess.run(["git", "-C", repo, "fast-import", "--quiet"], stdin=f,
                           capture_output=True, timeout=600)
    if r.returncode:
        raise BenchError(f"git fast-import failed: {r.stderr.decode(errors='replace')}")
    stream.unlink()
    run(["git", "-C", repo, "repack", "-a", "-d", "-f", "-q"], timeout=600)
    packs = list((repo / "objects/pack").glob("*.pack"))
    return sum(p.stat().st_size for p in packs)


def tree_bytes(root):
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


def make_channel_data(env, sizes):
    """The files the channels step moves, on the target side (owned by
    ghbench): a tree (one big random file and many small text files), a
    git repository, random bytes and log text. Written once, before any
    timing."""
    import random
    rng = random.Random(15)
    root = env.tmp / "chan"
    tree = root / "tree"
    (tree / "text").mkdir(parents=True)
    with open(tree / "big.bin", "wb") as f:
        for _ in range(sizes["tree_big_mib"]):
            f.write(os.urandom(MiB))
    for i in range(sizes["tree_files"]):
        d = tree / "text" / f"d{i // 100:03d}"
        d.mkdir(exist_ok=True)
        (d / f"f{i:05d}.txt").write_bytes(text_lines(rng, rng.randrange(1000, 10000)))
    random_file = root / "random.bin"
    with open(random_file, "wb") as f:
        for _ in range(sizes["cat_mib"]):
            f.write(os.urandom(MiB))
    text_file = root / "log.txt"
    text_file.write_bytes(log_text(rng, sizes["pty_mib"] * MiB))
    repo = root / "repo.git"
    pack = make_git_repo(repo, sizes["git_commits"], 20, 2.5, rng)
    (root / "incoming").mkdir()
    run(["chown", "-R", f"{USER}:{USER}", root])
    client = env.tmp / "chan-client"   # the client's side (root)
    client.mkdir()
    return {"root": root, "tree": tree, "tree_bytes": tree_bytes(tree),
            "tree_files": sizes["tree_files"] + 1, "random": random_file,
            "random_bytes": random_file.stat().st_size, "text": text_file,
            "text_bytes": text_file.stat().st_size, "repo": repo, "pack_bytes": pack,
            "commits": sizes["git_commits"], "incoming": root / "incoming", "client": client}


def channel_workloads(data):
    """name -> (bytes moved, direction, recording kind, runner). A runner
    gets (env, path, n) and returns (argv, env vars, stdout file or None,
    check(), cleanup()); the command's wall time is the measurement."""
    import shlex
    bash = lambda s: ["bash", "-o", "pipefail", "-c", s]

    def dest(n):
        d = data["incoming"] / f"run{n}"
        return d

    def local(n):
        return data["client"] / f"run{n}"

    def rm(p):
        return lambda: (shutil.rmtree(p, ignore_errors=True) if Path(p).is_dir()
                        else Path(p).unlink(missing_ok=True))

    def same_tree(p):
        def check():
            got = tree_bytes(p)
            if got != data["tree_bytes"]:
                raise BenchError(f"{p}: {got} bytes, expected {data['tree_bytes']}")
        return check

    def rsync_up(env, path, n):
        e, host = ssh_command(env, path)
        return (["rsync", "-a", "-e", e, f"{data['tree']}/", f"{host}:{dest(n)}/"], None,
                None, same_tree(dest(n)), rm(dest(n)))

    def rsync_down(env, path, n):
        e, host = ssh_command(env, path)
        return (["rsync", "-a", "-e", e, f"{host}:{data['tree']}/", f"{local(n)}/"], None,
                None, same_tree(local(n)), rm(local(n)))

    def tar_up(env, path, n):
        argv, login, host = chan_ssh(env, path)
        d = dest(n)
        d.mkdir()
        pw = pwd.getpwnam(USER)
        os.chown(d, pw.pw_uid, pw.pw_gid)
        ssh = shlex.join(argv + ["-l", login, host, f"tar x -C {shlex.quote(str(d))}"])
        return (bash(f"tar c -C {shlex.quote(str(data['tree']))} . | {ssh}"), None, None,
                same_tree(d), rm(d))

    def tar_down(env, path, n):
        argv, login, host = chan_ssh(env, path)
        out = local(n).with_suffix(".tar")
        ssh = shlex.join(argv + ["-l", login, host,
                                 f"tar c -C {shlex.quote(str(data['tree']))} ."])

        def check():
            if out.stat().st_size < data["tree_bytes"]:
                raise BenchError(f"tar download: {out.stat().st_size} bytes")
        return bash(f"{ssh} > {shlex.quote(str(out))}"), None, out, check, rm(out)

    def git_clone(env, path, n):
        e, host = ssh_command(env, path)
        d = local(n).with_suffix(".git")

        def check():
            count = int(run(["git", "-C", d, "rev-list", "--count", "--all"]).strip())
            if count != data["commits"]:
                raise BenchError(f"git clone: {count} commits, expected {data['commits']}")
        return (["git", "clone", "-q", "--bare", f"{host}:{data['repo']}", str(d)],
                {"GIT_SSH_COMMAND": e}, None, check, rm(d))

    def cat_random(env, path, n):
        argv, login, host = chan_ssh(env, path)
        out = local(n).with_suffix(".bin")
        ssh = shlex.join(argv + ["-l", login, host, f"cat {shlex.quote(str(data['random']))}"])

        def check():
            if out.stat().st_size != data["random_bytes"]:
                raise BenchError(f"cat: {out.stat().st_size} of {data['random_bytes']} bytes")
        return bash(f"{ssh} > {shlex.quote(str(out))}"), None, out, check, rm(out)

    def pty_text(env, path, n):
        argv, login, host = chan_ssh(env, path, tty=True)
        ssh = shlex.join(argv + ["-l", login, host, f"cat {shlex.quote(str(data['text']))}"])
        # stdin stays an open pipe (see chan_run), so the pty sees no EOF.
        return bash(f"{ssh} > /dev/null"), None, None, lambda: None, lambda: None

    return {
        "rsync upload": (data["tree_bytes"], "up", "stream", rsync_up),
        "rsync download": (data["tree_bytes"], "down", "stream", rsync_down),
        "tar c | ssh tar x (upload)": (data["tree_bytes"], "up", "stream", tar_up),
        "ssh tar c > file (download)": (data["tree_bytes"], "down", "stream", tar_down),
        "git clone": (data["pack_bytes"], "down", "stream", git_clone),
        "cat random > file": (data["random_bytes"], "down", "stream", cat_random),
        "cat text, pty": (data["text_bytes"], "down", "pty", pty_text),
    }


class TreeCpu:
    """CPU seconds of the processes below `pid` (the jump sshd's
    per-connection processes), sampled every 50 ms while they live: sshd's
    post-auth child is not reaped into its parent's cutime, so the
    listener's own counters miss it. A process's last <= 50 ms is lost."""

    def __init__(self, pid):
        self.pid, self.last, self.stop = pid, {}, threading.Event()
        self.th = threading.Thread(target=self.loop, daemon=True)
        self.th.start()

    @staticmethod
    def tree(pid):
        """`pid`'s descendants from /proc/PID/task/TID/children: cheaper
        than a scan of /proc, so the sampler steals little CPU from -J."""
        out, stack = [], [pid]
        while stack:
            p = stack.pop()
            try:
                tids = os.listdir(f"/proc/{p}/task")
            except OSError:
                continue
            for t in tids:
                try:
                    kids = [int(k) for k in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
                except OSError:
                    continue
                out += kids
                stack += kids
        return out

    def loop(self):
        while True:
            for p in self.tree(self.pid):
                try:
                    self.last[p] = proc_cpu_s(p)
                except (OSError, ValueError, IndexError):
                    pass
            if self.stop.wait(0.05):
                return

    def total(self):
        self.stop.set()
        self.th.join()
        return sum(self.last.values())


def front_cpu_s(env, path):
    """CPU seconds so far of the gateway process (all threads), for the
    gateway's routes; None for the OpenSSH paths (see TreeCpu)."""
    if path in ("gatehouse", "norec"):
        return proc_cpu_s(env.gw.pid)
    return None


def wait_no_children(proc, timeout=10):
    deadline = time.monotonic() + timeout
    while descendants(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def chan_run(env, path, wl, spec, n, verify_export=False):
    """One run of one workload over one path: wall time, front CPU and, on
    the recorded route, what the recording holds."""
    nbytes, direction, kind, runner = spec
    argv, extra_env, out, check, cleanup = runner(env, path, n)
    if path in ("gatehouse", "norec"):
        env.check_gateway()
    known = {s["session_id"] for s in sessions_index(env)} if path == "gatehouse" else set()
    if path == "jump":
        wait_no_children(env.jump_proc)
    time.sleep(0.3)
    cpu0 = front_cpu_s(env, path)
    sampler = TreeCpu(env.jump_proc.pid) if path == "jump" else None
    errf = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errf,
                         env={**os.environ, **(extra_env or {})}, start_new_session=True)
    try:
        rc = p.wait(timeout=transfer_budget(nbytes / MiB) + 60)
    except subprocess.TimeoutExpired:
        kill_tree(p)
        rc = "timeout"
    secs = time.perf_counter() - t0
    if sampler:
        wait_no_children(env.jump_proc)
        cpu0, cpu1 = 0.0, sampler.total()
    else:
        cpu1 = front_cpu_s(env, path)
    p.stdin.close()
    errf.seek(0)
    err = errf.read().decode(errors="replace").strip()[-600:]
    errf.close()
    try:
        if rc != 0:
            raise BenchError(f"{wl} over {path}: exit {rc}: {err or '(no stderr)'}")
        check()
        r = {"seconds": secs, "mibps": nbytes / MiB / secs}
        if path == "gatehouse":
            s = wait_sealed(env, known)
            cpu2 = proc_cpu_s(env.gw.pid)
            st = [stored_sizes(env, x) for x in s]
            meta = [json.loads((env.gw_state / "recordings" / x["prefix"] / "meta.json")
                               .read_text())["meta"] for x in s]
            chans = [c for m in meta for c in m["channels"]]
            r["recording"] = {
                "sessions": len(s), "status": [x["status"] for x in s],
                "reason": [x.get("reason") for x in s if x.get("reason")],
                "channels": [{k: c.get(k) for k in ("kind", "command", "output_bytes",
                                                    "cast_bytes", "sealed_bytes")}
                             | {"segments": len(c.get("segments", []))} for c in chans],
                "output_bytes": sum(x["output_bytes"] for x in st),
                "stored_bytes": sum(x["sealed_bytes"] + x["segment_bytes"] + x["meta_bytes"]
                                    for x in st)}
            rec = r["recording"]
            # A download's bytes must all be in the recording; a recording
            # that stopped early (spool full, error) makes the run cheaper
            # than a recorded one, so it is flagged.
            rec["complete"] = (all(x == "sealed" for x in rec["status"]) and not rec["reason"]
                               and (direction == "up" or rec["output_bytes"] >= nbytes))
            if verify_export and out is not None and len(s) == 1:
                exp = env.tmp / "export.bin"
                run([env.gatehouse, "recordings", "export", "--config", env.tmp / "gatehouse.yaml",
                     s[0]["session_id"], "--stream", "stdout", "-o", exp], timeout=600)
                same = file_sha256(exp) == file_sha256(out)
                exp.unlink()
                rec["export_matches_client"] = same
                if not same:
                    raise BenchError(f"{wl}: `recordings export --stream stdout` differs from "
                                     "what the client received")
            # The stored copies are not needed again; keep the disk from
            # filling (and writing back) over the step.
            for x in s:
                shutil.rmtree(env.gw_state / "recordings" / x["prefix"], ignore_errors=True)
        elif path == "norec":
            time.sleep(1)  # the same settle time as a quick seal, so teardown counts
            cpu2 = proc_cpu_s(env.gw.pid)
        elif path == "jump":
            cpu2 = cpu1
        else:
            cpu2 = None
        if cpu0 is not None:
            r["front_cpu_transfer_s"] = cpu1 - cpu0
            r["front_cpu_s"] = cpu2 - cpu0
        return r
    finally:
        cleanup()


def file_sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def setup_time(env, path, n=5):
    """Median wall time of `ssh host true` on a path, to take connection
    setup out of a transfer's wall time."""
    argv, login, host = chan_ssh(env, path)
    run(argv + ["-l", login, host, "true"], timeout=30)  # warm up
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        run(argv + ["-l", login, host, "true"], timeout=30)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def channels(env, cell, sizes, reps):
    """Issue 15: rsync, tar, git clone and cat through the recorded route,
    the unrecorded route, `ssh -J` and direct, with the front's CPU."""
    data = make_channel_data(env, sizes)
    res = {"sizes": {k: v for k, v in data.items() if k.endswith(("_bytes", "files"))}
           | {"commits": data["commits"]},
           "loadavg_before": os.getloadavg(), "setup_s": {}, "workloads": {}}
    for path in CHANNEL_PATHS:
        res["setup_s"][path] = cell(f"channels setup time {path}", setup_time, env, path)
    n = 0
    for wl, spec in channel_workloads(data).items():
        runs = {p: [] for p in CHANNEL_PATHS}
        errs = {}
        verified = False
        for rep in range(reps):
            # Alternate the order, so no path always runs after the same one.
            order = CHANNEL_PATHS if rep % 2 == 0 else CHANNEL_PATHS[::-1]
            for path in order:
                if path in errs:
                    continue
                n += 1
                verify = (path == "gatehouse" and not verified and spec[1] == "down"
                          and spec[2] == "stream")
                r = cell(f"{wl} {CHANNEL_LABEL[path]} #{rep + 1}", chan_run, env, path, wl,
                         spec, n, verify)
                if "error" in r:
                    errs[path] = r["error"]
                else:
                    runs[path].append(r)
                    verified |= verify
        out = {"bytes": spec[0], "direction": spec[1], "recording": spec[2], "runs": runs,
               "loadavg": os.getloadavg()}
        for path, rs in runs.items():
            if path in errs:
                out[path] = {"error": errs[path]}
                continue
            setup = res["setup_s"].get(path)
            setup = setup if isinstance(setup, float) else 0.0
            med = statistics.median(r["seconds"] for r in rs)
            cell_ = {"mibps": spec[0] / MiB / med, "runs_mibps": [r["mibps"] for r in rs],
                     # Connection setup differs by path (kex, -J's second
                     # hop, the gateway's leg); this leaves it out.
                     "mibps_excl_setup": spec[0] / MiB / max(med - setup, 1e-3)}
            if rs and "front_cpu_s" in rs[0]:
                gib = spec[0] / GiB
                cell_["cpu_s_per_gib"] = statistics.median(r["front_cpu_s"] for r in rs) / gib
                cell_["cpu_transfer_s_per_gib"] = statistics.median(
                    r["front_cpu_transfer_s"] for r in rs) / gib
                cell_["runs_cpu_s_per_gib"] = [r["front_cpu_s"] / gib for r in rs]
            if path == "gatehouse":
                cell_["recordings_complete"] = all(r["recording"]["complete"] for r in rs)
                cell_["recorded_bytes"] = [r["recording"]["output_bytes"] for r in rs]
                cell_["stored_bytes"] = [r["recording"]["stored_bytes"] for r in rs]
                cell_["export_matches_client"] = next(
                    (r["recording"]["export_matches_client"] for r in rs
                     if "export_matches_client" in r["recording"]), None)
            out[path] = cell_
        res["workloads"][wl] = out
    shutil.rmtree(data["root"], ignore_errors=True)
    shutil.rmtree(data["client"], ignore_errors=True)
    res["loadavg_after"] = os.getloadavg()
    return res


def channel_verdicts(res):
    """(row, measured, target, met) for every issue-15 target the run has."""
    out = []
    ok = lambda c: isinstance(c, dict) and "error" not in c
    for wl, w in res.get("channels", {}).get("workloads", {}).items():
        rec, norec, jump = w.get("gatehouse"), w.get("norec"), w.get("jump")
        if not ok(rec):
            continue
        if ok(norec):
            target = PTY_VS_NOREC if w["recording"] == "pty" else STREAM_VS_NOREC
            v = rec["mibps"] / norec["mibps"]
            out.append((f"{wl}: recorded / unrecorded", v, f">= {target:.1f}x", v >= target))
        if w["recording"] == "stream" and ok(jump):
            v = rec["mibps"] / jump["mibps"]
            out.append((f"{wl}: recorded / ssh -J", v, f">= {STREAM_VS_JUMP:.1f}x",
                        v >= STREAM_VS_JUMP))
    for cipher, dirs in res.get("throughput", {}).items():
        cells = dirs.get("download", {})
        if ok(cells.get("gatehouse")) and ok(cells.get("jump")):
            v = cells["gatehouse"]["median_mibps"] / cells["jump"]["median_mibps"]
            out.append((f"download {cipher.split('@')[0]} (recorded): gatehouse / ssh -J", v,
                        f">= {DOWNLOAD_VS_JUMP:.1f}x", v >= DOWNLOAD_VS_JUMP))
    e = res.get("echo", {})
    if all(ok(e.get(p)) for p in ("direct", "jump", "gatehouse")):
        gh = e["gatehouse"]["p50_us"] - e["direct"]["p50_us"]
        j = e["jump"]["p50_us"] - e["direct"]["p50_us"]
        out.append(("echo p50 added over direct (recorded route), µs", gh,
                    f"<= +{ECHO_ADDED_US:.0f}", gh <= ECHO_ADDED_US))
        out.append((f"echo p50 added: gatehouse vs ssh -J (+{j:.0f} µs), µs", gh,
                    f"<= +{j:.0f}", gh <= j))
    return out


def render_channels(res):
    ch = res.get("channels", {})
    ok = lambda c: isinstance(c, dict) and "error" not in c
    head = ["workload", "MiB", "direct", "ssh -J", "recorded", "unrecorded", "rec/unrec",
            "rec/-J", "rec/-J excl. setup", "CPU s/GiB rec", "CPU s/GiB unrec",
            "CPU s/GiB -J sshd", "recording"]
    table = [head]
    for wl, w in ch.get("workloads", {}).items():
        v = {p: (w[p]["mibps"] if ok(w.get(p)) else "ERR") for p in CHANNEL_PATHS}
        x = {p: (w[p].get("mibps_excl_setup") if ok(w.get(p)) else None) for p in CHANNEL_PATHS}
        cpu = lambda p: w[p].get("cpu_s_per_gib") if ok(w.get(p)) else None
        rec = w.get("gatehouse") if ok(w.get("gatehouse")) else {}
        if not rec:
            note = "—"
        elif w["direction"] == "up":
            note = "complete (input not recorded)" if rec.get("recordings_complete") else "INCOMPLETE"
        else:
            note = ("complete" if rec.get("recordings_complete") else "INCOMPLETE")
            if rec.get("export_matches_client"):
                note += ", export = client's bytes"
        table.append([wl, fmt(w["bytes"] / MiB, 0), fmt(v["direct"]), fmt(v["jump"]),
                      fmt(v["gatehouse"]), fmt(v["norec"]), ratio(v["gatehouse"], v["norec"]),
                      ratio(v["gatehouse"], v["jump"]) if w["recording"] == "stream" else "—",
                      ratio(x["gatehouse"], x["jump"]) if w["recording"] == "stream" else "—",
                      fmt(cpu("gatehouse"), 2), fmt(cpu("norec"), 2), fmt(cpu("jump"), 2), note])
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table)
    md = ["", "## Every channel kind (issue 15)", "",
          "MiB/s over the whole command's wall time (median of the runs), connection "
          "setup included; \"excl. setup\" subtracts each path's median `ssh host true` time. "
          "CPU: the gateway process (or the jump sshd and its reaped children for -J), "
          "utime + stime per GiB moved, counted until the recording is sealed.", "",
          "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in table[1:]]
    verdicts = channel_verdicts(res)
    if verdicts:
        vt = [["target (issue 15)", "measured", "target", "verdict"]]
        for name, val, target, met in verdicts:
            vt.append([name, f"{val:+.0f}" if "µs" in name else f"{val:.3f}x", target,
                       "met" if met else "NOT MET"])
        widths = [max(len(r[i]) for r in vt) for i in range(4)]
        text += "\n\n" + "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in vt)
        md += ["", "| " + " | ".join(vt[0]) + " |", "|---|---|---|---|"]
        md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in vt[1:]]
    if ch.get("setup_s"):
        md += ["", "Setup (`ssh host true`, median of 5): " + ", ".join(
            f"{CHANNEL_LABEL[p]} {s * 1000:.0f} ms" if isinstance(s, float) else f"{CHANNEL_LABEL[p]} ERR"
            for p, s in ch["setup_s"].items())]
    if ch.get("loadavg_before"):
        md += ["", "Load average before / after the step: "
               + " / ".join(", ".join(f"{x:.2f}" for x in ch[k]) for k in ("loadavg_before", "loadavg_after")
                            if ch.get(k))]
    return text, "\n".join(md) + "\n"


# ---------------------------------------------------------------- the edge (issue 16)

EDGE_ADDED_P50_MS = 1.0   # the classifier's added connect latency, issue 16


def banner_ms(port):
    """Milliseconds from connect() to the server's SSH banner, after
    sending ours first as OpenSSH does: on the edge, the classifier reads
    our banner before the SSH server starts."""
    import socket
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"SSH-2.0-bench\r\n")
        got = b""
        while b"\n" not in got:
            chunk = s.recv(256)
            if not chunk:
                raise BenchError(f"port {port} closed before its banner ({got!r})")
            got += chunk
        ms = (time.perf_counter() - t0) * 1000
    if not got.startswith(b"SSH-2.0-"):
        raise BenchError(f"port {port} answered {got[:40]!r}")
    return ms


def edge_latency(env, n):
    """The banner time through the SSH listener and through the edge,
    alternating, n each."""
    listen, edge = [], []
    for _ in range(n):
        listen.append(banner_ms(env.gw_port))
        edge.append(banner_ms(env.edge_port))
    out = {}
    for name, xs in (("listen", listen), ("edge", edge)):
        out[name] = {"p50_ms": statistics.median(xs), "p90_ms": pct(xs, 0.9),
                     "p99_ms": pct(xs, 0.99), "runs": n}
    out["added_p50_ms"] = out["edge"]["p50_ms"] - out["listen"]["p50_ms"]
    return out


def edge_step(env, cell, mib, reps, conns):
    """Issue 16: the classifier's added connect latency, `ssh true` on
    each way in, and download throughput through the TLS tunnel vs plain."""
    if env.edge_port is None:
        raise BenchError("the gateway announced no edge listener")
    res = {"banner": cell("edge banner latency", edge_latency, env, max(conns * 25, 200))}
    ways = ["gatehouse", "edge", "edge-tls"]
    res["connect"] = {w: cell(f"edge connect {w}", connect, env, w, conns) for w in ways}
    cipher = CIPHERS[0]
    res["download"] = {w: cell(f"edge download {w}", throughput, env, w, cipher, "download",
                               mib, reps) for w in ways}
    return res


def render_edge(res):
    e = res.get("edge", {})
    ok = lambda c: isinstance(c, dict) and "error" not in c
    label = {"gatehouse": "SSH listener", "edge": "edge, plain SSH",
             "edge-tls": "edge, SSH in TLS (gatehouse tunnel)"}
    md = ["", "## The one-port edge (issue 16)", ""]
    b = e.get("banner")
    if ok(b):
        added = b["added_p50_ms"]
        md += [f"Connect to the server's SSH banner ({b['listen']['runs']} each, alternating): "
               f"SSH listener p50 {b['listen']['p50_ms']:.3f} ms (p99 {b['listen']['p99_ms']:.3f}), "
               f"edge p50 {b['edge']['p50_ms']:.3f} ms (p99 {b['edge']['p99_ms']:.3f}): "
               f"the classifier adds **{added:+.3f} ms** at p50 (target < {EDGE_ADDED_P50_MS:.0f} ms: "
               f"{'met' if added < EDGE_ADDED_P50_MS else 'NOT MET'}).", ""]
    head = ["way in", "ssh true median ms", "p90 ms", f"download {CIPHERS[0].split('@')[0]} MiB/s",
            "vs SSH listener"]
    rows = [head]
    base = e.get("download", {}).get("gatehouse")
    for w in ("gatehouse", "edge", "edge-tls"):
        c = e.get("connect", {}).get(w)
        d = e.get("download", {}).get(w)
        rows.append([label[w], fmt(c["median_ms"]) if ok(c) else "ERR",
                     fmt(c["p90_ms"]) if ok(c) else "ERR",
                     fmt(d["median_mibps"]) if ok(d) else "ERR",
                     ratio(d["median_mibps"], base["median_mibps"]) if ok(d) and ok(base) else "—"])
    md += ["| " + " | ".join(r) + " |" for r in rows[:1]] + ["|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)
    return text, "\n".join(md) + "\n"


# ---------------------------------------------------------------- policy

def policy_bench():
    """Builds and runs `cargo run -p policy --release --example bench` and
    returns its `key=value` figures. Pure CPU: no SSH, no root. Cargo's
    usual CARGO_TARGET_DIR applies."""
    cargo = shutil.which("cargo")
    if not cargo:
        raise BenchError("cargo not found: install Rust (https://rustup.rs) to run the policy step")
    # Build first with its own (longer) budget, so the run is timed alone.
    run([cargo, "build", "--quiet", "--release", "-p", "policy", "--example", "bench"],
        timeout=1800, cwd=REPO)
    out = run([cargo, "run", "--quiet", "--release", "-p", "policy", "--example", "bench"],
              timeout=300, cwd=REPO)
    figures = {}
    for line in out.splitlines():
        m = re.fullmatch(r"(policy_\w+)=(\S+)", line.strip())
        if m:
            v = m.group(2)
            figures[m.group(1)[len("policy_"):]] = float(v) if "." in v else int(v)
    need = ("decision_median_ns", "decision_p99_ns", "recheck_median_ms")
    if missing := [k for k in need if k not in figures]:
        raise BenchError(f"the policy bench printed no {', '.join(missing)}; output:\n{out}")
    median_us = figures["decision_median_ns"] / 1e3
    recheck_ms = figures["recheck_median_ms"]
    figures.update({
        "decision_median_us": median_us,
        "decision_p99_us": figures["decision_p99_ns"] / 1e3,
        "median_target_us": POLICY_MEDIAN_TARGET_US,
        "recheck_target_ms": POLICY_RECHECK_TARGET_MS,
        "median_ok": median_us <= POLICY_MEDIAN_TARGET_US,
        "recheck_ok": recheck_ms <= POLICY_RECHECK_TARGET_MS,
    })
    return figures


def render_policy(pol):
    head = ["policy (issue 5)", "unit", "value", "target", "verdict"]
    if "error" in pol:
        table = [head, ["policy bench", "", "ERR", "", pol["error"][:80]]]
    else:
        verdict = lambda ok: "ok" if ok else "MISSED"
        table = [head,
                 ["decision median", "µs", f"{pol['decision_median_us']:.2f}",
                  f"<= {pol['median_target_us']:g}", verdict(pol["median_ok"])],
                 ["decision p99", "µs", f"{pol['decision_p99_us']:.2f}", "", ""],
                 [f"re-check {pol.get('recheck_sessions', 10000):,} sessions, median of "
                  f"{pol.get('recheck_sweeps', '?')} sweeps", "ms",
                  f"{pol['recheck_median_ms']:.2f}", f"<= {pol['recheck_target_ms']:g}",
                  verdict(pol["recheck_ok"])],
                 ["re-check, worst sweep", "ms", fmt(pol.get("recheck_worst_ms"), 2), "", ""]]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table)
    md = ["", "## Policy decisions (issue 5)", ""]
    if "error" not in pol:
        md += [f"`cargo run -p policy --release --example bench`: {pol.get('routes')} routes, "
               f"{pol.get('rules')} distinct rules ({pol.get('rule_applications')} rule "
               f"applications), {pol.get('decision_samples'):,} single decisions on random "
               f"routes, identities, sources and times of one week "
               f"({pol.get('decision_allowed_pct')} % allowed).", ""]
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in table[1:]]
    return text, "\n".join(md) + "\n"


# ---------------------------------------------------------------- reporting

def machine_info(gatehouse):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "unknown")
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    git = lambda *a: subprocess.run(["git", "-C", REPO, *a], capture_output=True,
                                    text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "none (no commits)"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (dirty)"
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem / 1024 / 1024, 1),
            "kernel": os.uname().release,
            "openssh": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip(),
            "gatehouse_binary": repo_relative(gatehouse) if gatehouse else None,
            "gatehouse_commit": commit}


def repo_relative(path):
    """A path as the report shows it: relative to the repository when inside
    it, so reports name no directory of the machine they ran on."""
    try:
        return str(Path(path).resolve().relative_to(Path(REPO).resolve()))
    except ValueError:
        return Path(path).name


def fmt(v, nd=1):
    return v if isinstance(v, str) else "—" if v is None else f"{v:,.{nd}f}"


def ratio(a, b):
    ok = lambda v: isinstance(v, (int, float))
    return f"{a / b:.2f}x" if ok(a) and ok(b) and b else "—"


def summary_rows(res):
    """(metric, unit, {path: value}) rows for the headline table."""
    rows = []
    val = lambda cell, k: None if cell is None else "ERR" if "error" in cell else cell[k]
    for cipher, dirs in res.get("throughput", {}).items():
        for d, cells in dirs.items():
            rows.append((f"{d} {cipher.split('@')[0]}", "MiB/s",
                         {p: val(cells.get(p), "median_mibps") for p in PATHS}))
    if "echo" in res:
        for k in ("p50_us", "p99_us"):
            rows.append((f"echo {k[:3]}", "µs", {p: val(res["echo"].get(p), k) for p in PATHS}))
    if "connect" in res:
        for k in ("median_ms", "p90_ms"):
            rows.append((f"connect {k.split('_')[0]}", "ms",
                         {p: val(res["connect"].get(p), k) for p in PATHS}))
    if "bound" in res.get("connect", {}):
        c = res["connect"]
        rows.append(("connect median, signed-in key", "ms",
                      {"direct": val(c.get("direct"), "median_ms"),
                       "jump": val(c.get("jump"), "median_ms"),
                       "gatehouse": val(c.get("bound"), "median_ms")}))
    if "memory" in res:
        rows.append(("memory/session (front)", "KiB PSS",
                     {p: val(res["memory"].get(p), "front_pss_kib") for p in PATHS}))
        rows.append(("memory/session (target sshd)", "KiB PSS",
                     {p: val(res["memory"].get(p), "target_pss_kib") for p in PATHS}))
    return rows


def render(info, res, errors, args):
    head = ["metric", "unit", "direct", "ssh -J", "gatehouse", "-J/direct", "gh/direct", "gh/-J"]
    table = [head]
    for name, unit, v in summary_rows(res):
        table.append([name, unit, fmt(v["direct"]), fmt(v["jump"]), fmt(v["gatehouse"]),
                      ratio(v["jump"], v["direct"]), ratio(v["gatehouse"], v["direct"]),
                      ratio(v["gatehouse"], v["jump"])])
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table)
    md = ["# Gatehouse benchmark", "",
          f"Run {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, mode: {'quick' if args.quick else 'full'}, "
          f"client kex: {args.kex or 'OpenSSH default'}.", "",
          "| machine | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in info.items()]
    md += ["", "## Summary", "", "Throughput: higher is better. Latency and memory: lower is better.",
           "Ratios are the first path's value divided by the second's.", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in table[1:]]
    p50 = {p: c.get("p50_us") for p, c in res.get("echo", {}).items()}
    if p50.get("direct") is not None:
        added = [f"{LABEL[p]} +{p50[p] - p50['direct']:,.0f} µs"
                 for p in ("jump", "gatehouse") if p50.get(p) is not None]
        md += ["", "Added keystroke latency (p50 vs direct): " + (", ".join(added) or "—")]
        text += "\nadded echo p50 vs direct: " + (", ".join(added) or "—")
    conn = {p: c for p, c in res.get("connect", {}).items() if "client_kex" in c}
    if conn:
        md += ["", "Negotiated by the client (outer connection first for -J; the gateway's "
               "own leg to the target is not visible here):", ""]
        md += [f"- {LABEL[p]}: kex {', '.join(c['client_kex'])}; default cipher "
               f"{', '.join(c['client_cipher'])}" for p, c in conn.items()]
    if errors:
        md += ["", "## Errors", ""]
        for e in errors:
            md += [f"**{e['where']}**", "", "```", e["error"], "```", ""]
    md += ["", "## Raw results", "", "```json", json.dumps(res, indent=1), "```"]
    return text, "\n".join(md) + "\n"


def recording_rows(rec):
    """(metric, unit, on, off, note) rows for the recording table."""
    rows = []
    ok = lambda c: isinstance(c, dict) and "error" not in c
    tp = rec.get("throughput")
    for wl, r in (tp.items() if ok(tp) else []):
        rows.append((f"download {wl} {r['mib']} MiB", "MiB/s", r["on_mibps"], r["off_mibps"],
                     f"ratio {r['ratio']:.2f}x"))
        rows.append((f"gateway CPU incl. seal, {wl}", "CPU s/GiB", r["on_cpu_s_per_gib"],
                     r["off_cpu_s_per_gib"], f"overhead {r['cpu_overhead_pct']:+.0f} %"))
        rows.append((f"gateway CPU during transfer, {wl}", "CPU s/GiB",
                     r["on_cpu_transfer_s_per_gib"], r["off_cpu_transfer_s_per_gib"],
                     f"overhead {r['cpu_transfer_overhead_pct']:+.0f} %"))
        if r["stored_over_raw"] is not None:
            rows.append((f"sealed .cast.zst / raw, {wl}", "x", r["stored_over_raw"], None, ""))
    st = rec.get("stored")
    if ok(st):
        rows.append((f"text session raw output", "MiB", st["output_bytes"] / MiB, None,
                     "pty, directory listings"))
        rows.append(("sealed .cast.zst / raw", "x", st["sealed_over_raw"], None,
                     f"{st['sealed_bytes'] / MiB:.2f} MiB"))
        rows.append(("segments / raw", "x", st["segments_over_raw"], None,
                     f"{st['segments']} segments, one zstd frame each"))
        rows.append(("everything stored / raw", "x", st["at_rest_over_raw"], None,
                     "sealed + segments + meta.json"))
    mem = rec.get("memory", {})
    if mem:
        v = lambda m: mem[m]["front_pss_kib"] if ok(mem.get(m)) else "ERR"
        n = lambda m: mem[m].get("recordings", "?") if ok(mem.get(m)) else "?"
        rows.append(("memory/idle session (gateway)", "KiB PSS", v("on"), v("off"),
                     f"recordings opened: on {n('on')}, off {n('off')}"))
    lag = rec.get("lag")
    for iv, r in (lag.items() if ok(lag) else []):
        rows.append((f"output -> S3 segment p50, interval {iv}", "s", r["p50_s"], None,
                     f"{r['markers']} markers"))
        rows.append((f"output -> S3 segment p99, interval {iv}", "s", r["p99_s"], None,
                     f"max {r['max_s']:.2f} s"))
    for name, c in [("throughput", tp), ("stored bytes", st), ("lag", lag)] + \
            [(f"memory {m}", c) for m, c in mem.items()]:
        if isinstance(c, dict) and "error" in c:
            rows.append((f"{name}", "", "ERR", None, c["error"][:80]))
    return rows


def render_recording(rec):
    head = ["recording (issue 4)", "unit", "on", "off", "note"]
    nd = lambda v: fmt(v, 2) if isinstance(v, float) and abs(v) < 10 else fmt(v)
    table = [head] + [[m, u, nd(a), nd(b), n] for m, u, a, b, n in recording_rows(rec)]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table)
    md = ["", "## Recording (issue 4)", "",
          "`on` is route `target` (record: best_effort), `off` is route `norec` (record: off).",
          "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in table[1:]]
    return text, "\n".join(md) + "\n"


# ---------------------------------------------------------------- main

def find_gatehouse(arg):
    if arg:
        return str(Path(arg).resolve())
    for cand in (REPO / "target/release/gatehouse", Path("/tmp/bench-target/release/gatehouse")):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gatehouse", help="gatehouse binary (default: target/release or "
                    "/tmp/bench-target/release if built)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    ap.add_argument("--out", default=str(REPO / "bench/out"), help="report directory")
    ap.add_argument("--only", help="comma-separated subset of: " + ",".join(STEPS))
    ap.add_argument("--kex", help="force the clients' KexAlgorithms, e.g. curve25519-sha256, "
                    "to compare paths with the same key exchange")
    ap.add_argument("--ciphers", default=",".join(CIPHERS),
                    help="comma-separated ciphers for the throughput step (default: %(default)s)")
    args = ap.parse_args()
    steps = args.only.split(",") if args.only else STEPS
    if bad := [s for s in steps if s not in STEPS]:
        ap.error(f"unknown step(s) {bad}; choose from {STEPS}")
    needs_ssh = any(s in SSH_STEPS for s in steps)
    if needs_ssh and os.geteuid() != 0:
        sys.exit("run as root: it starts sshd and creates the ghbench user "
                 "(only `--only policy` runs without)")
    q = args.quick
    mib, reps, keys, conns, idle = (256, 1, 100, 10, 20) if q else (1024, 3, 300, 20, 50)
    rec_mib, lag_s = (64, 15) if q else (256, 30)
    # Issue 15's channels step: at least two runs of everything, even --quick.
    chan_sizes = ({"tree_big_mib": 64, "tree_files": 1000, "cat_mib": 256, "pty_mib": 64,
                   "git_commits": 100} if q else
                  {"tree_big_mib": 256, "tree_files": 4000, "cat_mib": 1024, "pty_mib": 256,
                   "git_commits": 300})
    chan_reps = 2 if q else 3

    # SIGTERM/SIGHUP must unwind through the finally blocks that stop children.
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda *_: sys.exit(130))
    gatehouse = find_gatehouse(args.gatehouse)
    info = machine_info(gatehouse)
    info["loadavg_at_start"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    res, errors = {}, []
    tmp = tempfile.mkdtemp(prefix="gh-bench-")
    env = Env(tmp, gatehouse, args.kex)
    started = time.monotonic()
    try:
        # The policy step is pure CPU; the others need sshd and the user.
        if needs_ssh:
            env.setup()
            if not gatehouse:
                env.gw_error = ("no gatehouse binary (pass --gatehouse or build "
                                "target/release/gatehouse); gateway rows skipped")
            if env.gw_error:
                errors.append({"where": "gatehouse setup", "error": env.gw_error})
                print("gateway unavailable:", env.gw_error.splitlines()[0], file=sys.stderr)
        paths = PATHS if env.gw else PATHS[:2]

        def cell(where, fn, *a):
            """One measurement; a failure becomes an error cell, not a crash."""
            print(f"  {where} ...", end="", flush=True, file=sys.stderr)
            t = time.monotonic()
            try:
                out = fn(*a)
                print(f" {time.monotonic() - t:.1f}s", file=sys.stderr)
                return out
            except Exception as e:  # BenchError, or e.g. a wait() timeout
                print(" FAILED", file=sys.stderr)
                msg = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
                if "gatehouse" in where and env.gw and "gateway exited" not in msg:
                    msg += f"\n--- gateway stderr tail ---\n{tail(env.gw_stderr)}"
                errors.append({"where": where, "error": msg})
                return {"error": (msg.splitlines() or ["?"])[0]}

        if "throughput" in steps:
            res["throughput"] = {c: {d: {p: cell(f"{d} {c} {p}", throughput, env, p, c, d, mib, reps)
                                         for p in paths}
                                     for d in ("download", "upload")}
                                 for c in args.ciphers.split(",")}
        if "echo" in steps:
            res["echo"] = {p: cell(f"echo {p}", echo, env, p, keys) for p in paths}
        if "connect" in steps:
            res["connect"] = {p: cell(f"connect {p}", connect, env, p, conns) for p in paths}
            if env.gw:
                # A person's key with a login binding: publickey, binding
                # lookup, policy, target. The sign-in itself happens once,
                # before timing.
                res["connect"]["bound"] = cell("connect gatehouse bound key", connect, env,
                                               "bound", conns)
        if "memory" in steps:
            res["memory"] = {p: cell(f"memory {p}", memory, env, p, idle) for p in paths}
        if "recording" in steps:
            if env.gw:
                res["recording"] = recording(env, cell, rec_mib, reps, idle, lag_s)
            else:
                errors.append({"where": "recording", "error": "needs the gateway"})
        if "channels" in steps:
            if env.gw:
                try:
                    res["channels"] = channels(env, cell, chan_sizes, chan_reps)
                except Exception as e:  # the data set up, say; the other steps stand
                    msg = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
                    errors.append({"where": "channels", "error": msg})
                    res["channels"] = {"error": msg.splitlines()[0] if msg else "?"}
            else:
                errors.append({"where": "channels", "error": "needs the gateway"})
        if "edge" in steps:
            if env.gw:
                try:
                    res["edge"] = edge_step(env, cell, mib, reps, conns)
                except BenchError as e:
                    errors.append({"where": "edge", "error": str(e)})
            else:
                errors.append({"where": "edge", "error": "needs the gateway"})
        if "policy" in steps:
            res["policy"] = cell("policy decisions", policy_bench)
    except BenchError as e:
        sys.exit(f"setup failed: {e}")
    finally:
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)
    info["runtime_s"] = round(time.monotonic() - started)
    text, md = render(info, res, errors, args)
    if "recording" in res:
        rtext, rmd = render_recording(res["recording"])
        text += "\n\n" + rtext
        md = md.replace("\n## Raw results", rmd + "\n## Raw results", 1)
    if "channels" in res:
        ctext, cmd = render_channels(res)
        text += "\n\n" + ctext
        md = md.replace("\n## Raw results", cmd + "\n## Raw results", 1)
    if "edge" in res:
        etext, emd = render_edge(res)
        text += "\n\n" + etext
        md = md.replace("\n## Raw results", emd + "\n## Raw results", 1)
    if "policy" in res:
        ptext, pmd = render_policy(res["policy"])
        text += "\n\n" + ptext
        md = md.replace("\n## Raw results", pmd + "\n## Raw results", 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(md)
    (out / "report.json").write_text(json.dumps(
        {"machine": info, "params": {"mib": mib, "reps": reps, "keystrokes": keys,
                                     "connects": conns, "idle_sessions": idle,
                                     "recording_mib": rec_mib, "lag_seconds": lag_s,
                                     "channels": chan_sizes, "channel_reps": chan_reps,
                                     "ciphers": args.ciphers, "kex": args.kex or "default"},
         "results": res, "errors": errors}, indent=2) + "\n")
    print(text.lstrip("\n") if summary_rows(res) else text.split("\n\n", 1)[-1])
    print(f"\n{len(errors)} error(s); report: {out / 'report.md'}")
    # A missing gateway binary is reported, but is not a failure of the run.
    return 1 if any(e["where"] != "gatehouse setup" or gatehouse for e in errors) else 0


if __name__ == "__main__":
    sys.exit(main())
