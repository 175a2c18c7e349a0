"""Per-call latency of MCP tools/call: direct to the server, through
`writ mcp-proxy`, and through the Agent Governance Toolkit's `agentmesh
proxy`, with the same client (the Python `mcp` SDK), the same server
(@modelcontextprotocol/server-filesystem) and the same call, in one run.
Called by scripts/bench-mcp, which sets the environment up."""

from mcp_floor import fdatasync_p50, p50
import asyncio, json, os, socket, statistics, sys, time, urllib.parse
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

job = json.loads(sys.argv[1])
N, WARM = job["calls"], job["warmup"]
# Idle time between two calls, as an agent thinking between tool calls
# leaves it (0: one call right after the other).
PAUSE = job.get("pause_ms", 0) / 1000


async def measure(name, command, args):
    params = StdioServerParameters(command=command, args=args, env=dict(os.environ))
    lat = []
    async with stdio_client(params) as s:
        async with ClientSession(s[0], s[1]) as session:
            await session.initialize()
            await session.list_tools()
            for i in range(WARM + N):
                t0 = time.perf_counter()
                r = await session.call_tool("read_text_file", {"path": job["file"]})
                dt = time.perf_counter() - t0
                if getattr(r, "is_error", None) or getattr(r, "isError", False):
                    raise SystemExit(f"{name}: the call failed: {r.content}")
                if i >= WARM:
                    lat.append(dt * 1000)
                if PAUSE:
                    await asyncio.sleep(PAUSE)
    lat.sort()
    return {
        "name": name,
        "calls": len(lat),
        "median_ms": statistics.median(lat),
        "p90_ms": lat[int(len(lat) * 0.9)],
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


def floor():
    """What every governed call costs before any work of writ's: one
    fdatasync on the data dir's filesystem (the decision is durable before
    its writ exists; 4 KB overwritten in a preallocated file, as the store
    overwrites its preallocated WAL) and one HTTP round trip to the
    authority on loopback (a raw keep-alive socket, the request bytes built
    once), next to the round trip of the authorize request the proxy sends
    for a call (a child of a session, started on issue)."""
    fsync_ms = fdatasync_p50(job["data_dir"])

    url = urllib.parse.urlsplit(job["server"])
    s = socket.create_connection((url.hostname, url.port or 80), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(method, path, body=None):
        head = f"{method} {path} HTTP/1.1\r\nhost: {url.netloc}\r\nauthorization: Bearer {os.environ['WRIT_TOKEN']}\r\n"
        if body is None:
            return (head + "\r\n").encode()
        data = json.dumps(body).encode()
        return (head + f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n").encode() + data

    def more(buf):
        got = s.recv(65536)
        if not got:
            raise RuntimeError("the writ server closed the connection")
        return buf + got

    def exchange(raw):
        s.sendall(raw)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf = more(buf)
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        lengths = [l.split(b":", 1)[1] for l in lines[1:] if l.lower().startswith(b"content-length:")]
        if not lengths:
            raise RuntimeError(f"an answer without content-length: {head[:200]!r}")
        while len(body) < int(lengths[0]):
            body = more(body)
        if not lines[0].startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{lines[0]!r} {body[:200]!r}")
        return json.loads(body)

    health = request("GET", "/healthz")
    rtt_ms = p50(lambda: exchange(health))
    # The session and the call as `writ mcp-proxy --name filesystem` asks for them.
    session = exchange(request("POST", "/v1/authorize", {
        "action": 'Action::"mcp_session"', "resource": 'McpServer::"filesystem"',
        "request": {"server": "filesystem", "argv": ["node", job["server_js"], job["root"]]},
        "audience": "mcp:filesystem", "lifetime_secs": 600, "start": True}))
    args = {"path": job["file"]}
    call = request("POST", "/v1/authorize", {
        "action": 'Action::"call_tool"', "resource": 'Tool::"filesystem/read_text_file"',
        "context": {"server": "filesystem", "tool": "read_text_file", "arguments": args},
        "request": {"name": "read_text_file", "arguments": args},
        "audience": "mcp:filesystem", "parent": session["jti"], "start": True})
    authorize_ms = p50(lambda: exchange(call))
    s.close()
    return {"name": "floor", "fdatasync_4k_p50_ms": fsync_ms, "http_round_trip_p50_ms": rtt_ms,
            "authorize_call_p50_ms": authorize_ms}


def summary(rounds, fl):
    """Medians per configuration and what each adds over direct, per round."""
    lines = []
    direct = [r for r in rounds if r["name"] == "direct"]
    for name in ("writ mcp-proxy", "agentmesh proxy"):
        rs = [r for r in rounds if r["name"] == name]
        if any("median_ms" not in r for r in rs):
            lines.append(f"{name}: a round failed: " + "; ".join(r.get("error", "") for r in rs if "error" in r))
            continue
        added = [r["median_ms"] - d["median_ms"] for r, d in zip(rs, direct)]
        lines.append(f"{name}: added per round " + " / ".join(f"{a:+.2f}" for a in added)
                     + f" ms, median {statistics.median(added):+.2f} ms")
    lines.append(f"direct: per round " + " / ".join(f"{d['median_ms']:.3f}" for d in direct) + " ms")
    if "error" in fl:
        lines.append(f"floor: not measured: {fl['error']}")
    else:
        lines.append(f"floor: fdatasync (4 KB) {fl['fdatasync_4k_p50_ms']:.3f} ms + HTTP round trip "
                     f"{fl['http_round_trip_p50_ms']:.3f} ms = {fl['fdatasync_4k_p50_ms'] + fl['http_round_trip_p50_ms']:.3f} ms "
                     f"(target for all that writ adds: 0.3 ms); authorize round trip of a call "
                     f"{fl['authorize_call_p50_ms']:.3f} ms")
    return "\n".join(lines)


async def main():
    server = ["node", job["server_js"], job["root"]]
    rounds = []
    for r in range(job["rounds"]):
        rounds.append(await measure("direct", server[0], server[1:]))
        rounds.append(await measure("writ mcp-proxy", job["writ"], ["mcp-proxy", "--name", "filesystem", "--"] + server))
        if job.get("agentmesh"):
            args = ["proxy", "--no-footer", "--policy", job["agentmesh_policy"]]
            for a in server:
                args += ["--target", a]
            try:
                rounds.append(await measure("agentmesh proxy", job["agentmesh"], args))
            except BaseException as e:  # report, keep the other figures
                rounds.append({"name": "agentmesh proxy", "error": repr(e)})
    try:
        fl = floor()
    except Exception as e:  # report, keep the rounds
        fl = {"name": "floor", "error": repr(e)}
    rounds.append(fl)
    json.dump(rounds, sys.stdout, indent=1)
    print(file=sys.stdout)
    print(summary(rounds, fl), file=sys.stderr)


asyncio.run(main())
