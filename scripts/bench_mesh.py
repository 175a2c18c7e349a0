"""Driver for scripts/bench-mesh (see there). Standard library only."""
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

WRIT, SECONDS, REVOCATIONS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tmp = tempfile.mkdtemp(prefix="writ-bench-mesh-")
procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def bindir():
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
    if out.returncode == 0 and os.path.exists(os.path.join(out.stdout.strip(), "initdb")):
        return out.stdout.strip()
    for d in ["/usr/local/bin", "/usr/lib/postgresql/15/bin"]:
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    sys.exit("PostgreSQL's initdb is not installed")


def as_pg(args):
    return (["runuser", "-u", "postgres", "--"] + args) if os.geteuid() == 0 else args


pg_port = free_port()
data = os.path.join(tmp, "pg")
if os.geteuid() == 0:
    shutil.chown(tmp, "postgres", "postgres")
bd = bindir()
subprocess.run(as_pg([f"{bd}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8"]),
               check=True, capture_output=True)
subprocess.run(as_pg([f"{bd}/pg_ctl", "-D", data, "-l", f"{data}/log", "-w", "-o",
                      f"-p {pg_port} -c listen_addresses=127.0.0.1 -k {data} -c max_connections=200",
                      "start"]), check=True, capture_output=True)


def cleanup():
    for p in procs:
        p.kill()
    subprocess.run(as_pg([f"{bd}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]),
                   capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)


def writ(*args, **kw):
    return subprocess.run([WRIT, *args], capture_output=True, text=True, **kw)


def request(port, method, path, token=None, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = {"content-type": "application/json"}
    if token:
        h["authorization"] = f"Bearer {token}"
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse()
    out = r.status, r.read()
    c.close()
    return out


def node_start(i, store):
    port = free_port()
    d = os.path.join(tmp, f"node{i}")
    log = open(os.path.join(tmp, f"node{i}.log"), "w")
    p = subprocess.Popen([WRIT, "--dir", d, "serve", "--rate-limit", "0", "--listen", f"127.0.0.1:{port}", "--store", store],
                         stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
    procs.append(p)
    for _ in range(300):
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                return port
        except OSError:
            time.sleep(0.05)
    sys.exit(f"node {i} did not start")


def wrk(port, token, seconds, out):
    lua = os.path.join(tmp, "authorize.lua")
    body = json.dumps({"action": "Action::\"exec\"", "resource": "Command::\"/usr/bin/true\"",
                       "request": {"argv": ["/usr/bin/true"]}, "audience": "bench"})
    with open(lua, "w") as f:
        f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                f'wrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    r = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-s", lua,
                        f"http://127.0.0.1:{port}/v1/authorize"], capture_output=True, text=True)
    out.append(r.stdout)


def rps(text):
    for line in text.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    return 0.0


def p99(text):
    for line in text.splitlines():
        if line.strip().startswith("99%"):
            return line.split()[1]
    return "?"


try:
    store = f"postgres://postgres@127.0.0.1:{pg_port}/postgres"
    init = writ("--dir", os.path.join(tmp, "node1"), "init", "--store", store, "--json")
    if init.returncode != 0:
        sys.exit(init.stderr)
    token = json.loads(init.stdout)["admin_token"]
    ports = [node_start(1, store)]
    pol = os.path.join(tmp, "policy")
    os.makedirs(pol)
    with open(os.path.join(pol, "policy.cedar"), "w") as f:
        f.write('@id("all")\npermit (principal, action, resource);\n')
    r = writ("--dir", os.path.join(tmp, "node1"), "policy", "activate", pol,
             env={**os.environ, "WRIT_SERVER": f"http://127.0.0.1:{ports[0]}", "WRIT_TOKEN": token})
    if r.returncode != 0:
        sys.exit(r.stderr)
    print(f"machine: {os.cpu_count()} cores; PostgreSQL {subprocess.run(as_pg([f'{bd}/postgres', '--version']), capture_output=True, text=True).stdout.strip()}")
    print(f"throughput: wrk -t1 -c32 -d{SECONDS}s POST /v1/authorize on every node at once")
    for n in (1, 2, 3):
        while len(ports) < n:
            ports.append(node_start(len(ports) + 1, store))
        time.sleep(1.5)  # let the new node sync
        outs = []
        ts = [threading.Thread(target=wrk, args=(p, token, SECONDS, outs)) for p in ports]
        [t.start() for t in ts]
        [t.join() for t in ts]
        total = sum(rps(o) for o in outs)
        print(f"  {n} node(s): {total:,.0f} decisions/s aggregate "
              f"(per node: {', '.join(f'{rps(o):,.0f}' for o in outs)}; p99 per node: {', '.join(p99(o) for o in outs)})")
    # The peer in the same run: one node on the embedded SQLite store.
    local = os.path.join(tmp, "sqlite-node")
    li = writ("--dir", local, "init", "--json")
    if li.returncode != 0:
        sys.exit(li.stderr)
    ltoken = json.loads(li.stdout)["admin_token"]
    lport = free_port()
    llog = open(os.path.join(tmp, "sqlite-node.log"), "w")
    lp = subprocess.Popen([WRIT, "--dir", local, "serve", "--rate-limit", "0", "--listen", f"127.0.0.1:{lport}"],
                          stdout=llog, stderr=llog, env={**os.environ, "RUST_LOG": "warn"})
    procs.append(lp)
    for _ in range(300):
        try:
            if request(lport, "GET", "/healthz")[0] == 200:
                break
        except OSError:
            time.sleep(0.05)
    r = writ("--dir", local, "policy", "activate", pol,
             env={**os.environ, "WRIT_SERVER": f"http://127.0.0.1:{lport}", "WRIT_TOKEN": ltoken})
    if r.returncode != 0:
        sys.exit(r.stderr)
    # Only the SQLite node runs now (the mesh nodes idle).
    outs = []
    wrk(lport, ltoken, SECONDS, outs)
    print(f"  peer, 1 node on the embedded SQLite store: {rps(outs[0]):,.0f} decisions/s (p99 {p99(outs[0])})")
    lp.kill()
    # Revocation propagation: node 1 revokes, node 3's stream hears it.
    seen = {}
    ready = threading.Event()

    def listen():
        c = http.client.HTTPConnection("127.0.0.1", ports[2], timeout=120)
        c.request("GET", "/v1/revocations/stream", headers={"authorization": f"Bearer {token}"})
        r = c.getresponse()
        ready.set()
        while True:
            line = r.fp.readline()
            if not line:
                return
            if line.startswith(b"data:"):
                try:
                    ev = json.loads(line[5:])
                except ValueError:
                    continue
                now = time.monotonic()
                for j in ev.get("jtis", []):
                    seen.setdefault(j, now)

    threading.Thread(target=listen, daemon=True).start()
    ready.wait(10)
    time.sleep(0.3)
    lat = []
    for k in range(REVOCATIONS):
        st, b = request(ports[0], "POST", "/v1/authorize", token,
                        {"action": "Action::\"exec\"", "resource": "Command::\"/usr/bin/true\"",
                         "request": {"argv": ["/usr/bin/true", str(k)]}, "audience": "bench"})
        jti = json.loads(b)["jti"]
        t0 = time.monotonic()
        st, b = request(ports[0], "POST", "/v1/revocations", token, {"jti": jti, "reason": "bench"})
        if st != 200:
            sys.exit(f"revoke failed: {st} {b!r}")
        deadline = t0 + 5
        while jti not in seen and time.monotonic() < deadline:
            time.sleep(0.0005)
        if jti not in seen:
            sys.exit(f"revocation {k} never reached node 3")
        lat.append((seen[jti] - t0) * 1000)
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print(f"revocation propagation, node 1 revoke (POST /v1/revocations sent) -> event on node 3's "
          f"/v1/revocations/stream, {len(lat)} revocations: p50 {q(0.5):.1f} ms, p90 {q(0.9):.1f} ms, "
          f"p99 {q(0.99):.1f} ms, max {lat[-1]:.1f} ms")
finally:
    cleanup()
