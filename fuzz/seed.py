#!/usr/bin/env python3
"""Writes the starting corpus of every fuzz target into fuzz/corpus/<target>/.

Seeds are files named seed-*; what libFuzzer adds lives beside them and
`dev/fuzz --minimize` keeps the corpus small. The pre-auth seeds are what a
real OpenSSH client sends first: this script plays a server that announces
itself and offers a key exchange, and records the client's answer
(loopback only, bounded in time).

Usage: fuzz/seed.py            (needs `ssh` for the pre-auth capture)
"""

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def readme_blocks(lang):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"```" + lang + r"\n(.*?)```", text, re.S)


def config_seeds():
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0zkMA1xRUxC4Oq6tvU3ICV6hmh9rVe9ZVs9CW6xbW"
    base = (
        "listen: 127.0.0.1:2222\nuser_ca: user_ca\nstate_dir: state\n"
        "identities:\n  - name: alice\n    email: alice@example.com\n    groups: [ops]\n"
        f"    keys: [\"{key}\"]\n"
        "routes:\n  - name: t\n    target: 127.0.0.1:22\n    logins: [root]\n"
        f"    host_key: \"{key}\"\n"
        "    policy: {rules: [{allow: ops, when: {groups: ops}}]}\n"
    )
    write("config", "minimal", base)
    write("config", "limits", base + "limits:\n  max_unauthenticated: 64\n  handshake_timeout: 10s\n"
          "  penalties: {authfail: 5s, max: 10m, exempt: [10.0.0.0/8]}\n")
    write("config", "idp", base + "idp:\n  issuer: https://idp.example.com\n  client_id: gatehouse\n"
          "  scopes: [openid, email]\n  allowed_domains: [example.com]\n")
    write("config", "recording", base + "recording:\n  storage: s3://recordings/gh\n"
          "  s3_endpoint: http://127.0.0.1:8333\n  segment_interval: 5s\n")
    for i, block in enumerate(readme_blocks("yaml")):
        write("config", f"readme-{i}", block)


def policy_seeds():
    with open(os.path.join(ROOT, "policy/examples/policy.yaml"), encoding="utf-8") as f:
        write("policy", "example", f.read())
    write("policy", "windows", "routes:\n  db:\n    rules:\n      - allow: ops\n        when: {groups: ops, "
          "time: {days: [mon, tue], hours: \"09:00-17:00\", tz: Europe/Berlin}}\n"
          "    obligations: {record: strict, max_session: 8h, reauth_every: 1h}\n")
    write("policy", "claims", "routes:\n  db:\n    rules:\n      - deny: contractors\n"
          "        when: {claim.department: sales}\n      - allow: all\n        when: {email_domain: example.com}\n")


def user_name_seeds():
    for i, name in enumerate(["alice@prod-db", "a@b@prod-db", "alice", "@", "alice@",
                              "x\x1b]0;title\x07@route", "j\u00fcrgen@z\u00fcrich", "a" * 300 + "@r"]):
        write("user_name", str(i), name)


def sign_in_prompt_seeds():
    write("sign_in_prompt", "complete",
          "https://idp.example.com/device?user_code=WDJB-MJHT\0https://idp.example.com/device\0WDJB-MJHT\0600")
    write("sign_in_prompt", "plain", "\0https://idp.example.com/device\0ABCD\0x")
    write("sign_in_prompt", "hostile",
          "https://e\x1b[2J\x1b]52;c;aGk=\x07\0\u202ehttps://\u0430pple.com\0\u00fc\u0000\t\r\0\xff")


def token_response_seeds():
    def resp(status, body):
        return struct.pack(">H", (status - 100) % 500) + json.dumps(body).encode()
    write("token_response", "ok", resp(200, {"id_token": "a.b.c", "refresh_token": "r", "token_type": "Bearer"}))
    write("token_response", "no-id-token", resp(200, {"access_token": "x"}))
    for e in ["authorization_pending", "slow_down", "access_denied", "expired_token"]:
        write("token_response", e, resp(400, {"error": e}))
    write("token_response", "server-error", resp(503, {"error": "temporarily_unavailable"}))
    write("token_response", "invalid-client", resp(401, {"error": "invalid_client",
                                                            "error_description": "client authentication failed"}))
    write("token_response", "claims", resp(200, {"email": "Alice@Example.COM", "groups": ["ops", 3, None],
                                                  "sub": "1", "nested": {"a": [1, 2]}}))
    write("token_response", "garbage", b"\x01\x90<html>502 Bad Gateway</html>")


def asciicast_seeds():
    v3 = [{"version": 3, "term": {"cols": 80, "rows": 24, "type": "xterm-256color"}, "timestamp": 1767225600,
           "command": "bash"},
          [0.1, "o", "hello \u001b[31mred\u001b[0m\r\n"], [0.05, "i", "ls\r"], [0.2, "r", "100x30"],
          [0.01, "m", "file: upload /tmp/x"], [0.3, "x", "0"]]
    write("asciicast", "v3", "\n".join(json.dumps(x) for x in v3) + "\n")
    v2 = [{"version": 2, "width": 80, "height": 24, "timestamp": 1767225600},
          [0.5, "o", "hi\r\n"], [1.0, "o", "\u00e9\u4e2d"], [1.5, "r", "90x20"]]
    write("asciicast", "v2", "\n".join(json.dumps(x) for x in v2) + "\n")
    write("asciicast", "truncated", '{"version": 3, "term": {"cols": 80, "rows": 24}}\n[0.1, "o", "par')


def sftp_packet(kind, body):
    return struct.pack(">IB", len(body) + 1, kind) + body


def sstr(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def frame(direction, data):
    """Cuts `data` into the target's pieces: header byte, then <=127 bytes."""
    out = b""
    while data:
        piece, data = data[:127], data[127:]
        out += bytes([(len(piece) << 1) | direction]) + piece
    return out


def sftp_seeds():
    c, s = 0, 1
    attrs = struct.pack(">I", 0)
    session = b"".join([
        frame(c, sftp_packet(1, struct.pack(">I", 3))),
        frame(s, sftp_packet(2, struct.pack(">I", 3))),
        frame(c, sftp_packet(3, struct.pack(">I", 1) + sstr("/tmp/upload.txt") + struct.pack(">I", 0x1a) + attrs)),
        frame(s, sftp_packet(102, struct.pack(">I", 1) + sstr(b"h1"))),
        frame(c, sftp_packet(6, struct.pack(">I", 2) + sstr(b"h1") + struct.pack(">Q", 0) + sstr(b"x" * 200))),
        frame(s, sftp_packet(101, struct.pack(">II", 2, 0) + sstr("") + sstr(""))),
        frame(c, sftp_packet(4, struct.pack(">I", 3) + sstr(b"h1"))),
        frame(s, sftp_packet(101, struct.pack(">II", 3, 0) + sstr("") + sstr(""))),
        frame(c, sftp_packet(18, struct.pack(">I", 4) + sstr("/tmp/a") + sstr("/tmp/b"))),
        frame(s, sftp_packet(101, struct.pack(">II", 4, 2) + sstr("no such file") + sstr(""))),
        frame(c, sftp_packet(13, struct.pack(">I", 5) + sstr("/tmp/c"))),
        frame(c, sftp_packet(14, struct.pack(">I", 6) + sstr("/tmp/d") + attrs)),
        frame(s, sftp_packet(101, struct.pack(">II", 6, 0) + sstr("") + sstr(""))),
    ])
    write("sftp", "session", session)
    write("sftp", "open-unclosed", frame(c, sftp_packet(3, struct.pack(">I", 9) + sstr("/etc/x") +
                                                     struct.pack(">I", 1) + attrs)) +
          frame(s, sftp_packet(102, struct.pack(">I", 9) + sstr(b"hh"))))
    write("sftp", "oversized", frame(c, struct.pack(">IB", 0x7fffffff, 3)))


def scp_seeds():
    write("scp", "upload", "scp -t -- /tmp/x\n" + "".join(chr(c) for c in range(0, 120, 3)))
    write("scp", "download", "/usr/bin/scp -r -f /etc\n\x01\x7f\x10")
    write("scp", "not-scp", "rsync --server -e.iLsfxC . /tmp\n")


def ssh_packet(payload, block=8):
    pad = block - (len(payload) + 5) % block
    if pad < 4:
        pad += block
    return struct.pack(">IB", len(payload) + pad + 1, pad) + payload + b"\0" * pad


def name_list(names):
    return sstr(",".join(names))


def server_kexinit():
    payload = bytes([20]) + os.urandom(16)
    payload += name_list(["curve25519-sha256", "curve25519-sha256@libssh.org", "ext-info-s",
                          "kex-strict-s-v00@openssh.com"])
    payload += name_list(["ssh-ed25519"])
    for _ in range(2):
        payload += name_list(["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com"])
    for _ in range(2):
        payload += name_list(["hmac-sha2-256-etm@openssh.com", "hmac-sha2-256"])
    for _ in range(2):
        payload += name_list(["none"])
    payload += name_list([]) + name_list([]) + b"\0" + struct.pack(">I", 0)
    return ssh_packet(payload)


def capture_openssh_first_flight():
    """What `ssh` sends to a server that offers a key exchange: its version
    line, its KEXINIT and its KEX_ECDH_INIT."""
    ssh = shutil.which("ssh")
    if not ssh:
        return None
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    port = srv.getsockname()[1]
    got = bytearray()

    def serve():
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        conn.settimeout(3)
        conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n" + server_kexinit())
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got.extend(chunk)
        except OSError:
            pass
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    subprocess.run([ssh, "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-p", str(port), "fuzz@127.0.0.1", "true"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
    t.join(10)
    srv.close()
    return bytes(got)


def preauth_seeds():
    flight = capture_openssh_first_flight()
    if flight:
        write("preauth", "openssh-first-flight", flight)
        # The same with an all-zero X25519 public key (a russh advisory).
        i = flight.rfind(struct.pack(">I", 32))
        if i > 0:
            write("preauth", "zero-x25519", flight[:i + 4] + b"\0" * 32 + flight[i + 36:])
        version = flight.split(b"\r\n", 1)[0] + b"\r\n"
    else:
        version = b"SSH-2.0-OpenSSH_9.2p1\r\n"
    write("preauth", "version-only", version)
    write("preauth", "banner-lines", b"hello\r\nthis is not ssh\r\n" + version)
    write("preauth", "ignore-flood", version + ssh_packet(bytes([2]) + sstr(b"x" * 64)) * 50)
    write("preauth", "garbage", os.urandom(512))
    write("preauth", "huge-length", version + struct.pack(">IB", 0x40000000, 4) + b"\0" * 64)


def auth_seeds():
    def s(text):
        b = text.encode()
        return bytes([len(b)]) + b
    user = "ghtest@t"
    write("auth", "registered-key", bytes([0]) + s(user) + bytes([3]) + s(user))
    write("auth", "stranger-key", bytes([0x83]) + s(user) + bytes([1]) + s("") + s(user) + bytes([2, 0]))
    write("auth", "no-route", bytes([0]) + s("alice") + bytes([1]) + s("") + s("alice") + bytes([2, 1]) + s("x"))
    write("auth", "sign-in", bytes([0x83]) + s(user) + bytes([1]) + s("") + s(user) + bytes([2, 2]) + s("a") + s("b"))
    write("auth", "unknown-route", bytes([3]) + s("ghtest@nowhere") + bytes([1]) + s("pam") + s("root@nowhere"))


def main():
    config_seeds()
    policy_seeds()
    user_name_seeds()
    sign_in_prompt_seeds()
    token_response_seeds()
    asciicast_seeds()
    sftp_seeds()
    scp_seeds()
    preauth_seeds()
    auth_seeds()
    for t in sorted(os.listdir(os.path.join(HERE, "corpus"))):
        print(t, len(os.listdir(os.path.join(HERE, "corpus", t))))


if __name__ == "__main__":
    sys.exit(main())
