"""Per-call latency of MCP tools/call over the Streamable HTTP transport:
the Python `mcp` SDK's streamable_http_client calling `echo` on the
TypeScript SDK's Streamable HTTP server directly, and through `writ
mcp-proxy --listen ... --upstream ...` (HTTPS and HTTP fronts), rounds
interleaved; then the floor in the same run: one fdatasync (4 KB) on the
data dir's disk, one loopback HTTP round trip to the authority, and one
HTTPS round trip to the proxy's front on a kept-alive TLS connection.
Called by scripts/bench-mcp-http, which sets the environment up."""

from mcp_floor import fdatasync_p50, p50
import asyncio, json, os, socket, ssl, statistics, sys, time, urllib.parse
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

job = json.loads(sys.argv[1])
N, WARM = job["calls"], job["warmup"]


async def measure(name, url, token, ca=None):
    headers = {"Authorization": "Bearer " + token}
    verify = ssl.create_default_context(cafile=ca) if ca else True
    lat = []
    async with httpx2.AsyncClient(headers=headers, verify=verify, timeout=httpx2.Timeout(30, read=300)) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                await session.list_tools()
                for i in range(WARM + N):
                    t0 = time.perf_counter()
                    r = await session.call_tool("echo", {"text": "hello"})
                    dt = time.perf_counter() - t0
                    if getattr(r, "is_error", None) or getattr(r, "isError", False):
                        raise SystemExit(f"{name}: the call failed: {r.content}")
                    if i >= WARM:
                        lat.append(dt * 1000)
    lat.sort()
    return {"name": name, "calls": len(lat), "median_ms": statistics.median(lat),
            "p90_ms": lat[int(len(lat) * 0.9)]}


def round_trip(sock, raw):
    """Send `raw`, read one answer with a content-length."""
    sock.sendall(raw)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    n = [int(l.split(b":", 1)[1]) for l in head.split(b"\r\n")[1:] if l.lower().startswith(b"content-length:")]
    while len(body) < (n[0] if n else 0):
        body += sock.recv(65536)


def floor():
    fsync_ms = fdatasync_p50(job["data_dir"])
    url = urllib.parse.urlsplit(job["server"])
    s = socket.create_connection((url.hostname, url.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtt_ms = p50(lambda: round_trip(s, f"GET /healthz HTTP/1.1\r\nhost: {url.netloc}\r\n\r\n".encode()))
    s.close()
    # One round trip on a kept-alive TLS connection to the front (a path it
    # answers 404 at once, before any session work).
    front = urllib.parse.urlsplit(job["front_tls"])
    ctx = ssl.create_default_context(cafile=job["ca"])
    raw = socket.create_connection((front.hostname, front.port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t = ctx.wrap_socket(raw, server_hostname=front.hostname)
    tls_ms = p50(lambda: round_trip(t, f"GET /nothing HTTP/1.1\r\nhost: {front.netloc}\r\n\r\n".encode()))
    t.close()
    return {"name": "floor", "fdatasync_4k_p50_ms": fsync_ms, "http_round_trip_p50_ms": rtt_ms,
            "tls_round_trip_p50_ms": tls_ms}


async def main():
    rounds = []
    for _ in range(job["rounds"]):
        rounds.append(await measure("direct", job["upstream"], "none"))
        rounds.append(await measure("writ --listen https", job["front_tls"], job["token"], job["ca"]))
        rounds.append(await measure("writ --listen http", job["front_plain"], job["token"]))
    fl = floor()
    rounds.append(fl)
    json.dump(rounds, sys.stdout, indent=1)
    print()
    direct = [r["median_ms"] for r in rounds if r["name"] == "direct"]
    lines = []
    for name in ("writ --listen https", "writ --listen http"):
        added = [r["median_ms"] - d for r, d in zip([r for r in rounds if r["name"] == name], direct)]
        lines.append(f"{name}: added per round " + " / ".join(f"{a:+.2f}" for a in added)
                     + f" ms, median {statistics.median(added):+.2f} ms")
    lines.append("direct: per round " + " / ".join(f"{d:.3f}" for d in direct) + " ms")
    f = fl["fdatasync_4k_p50_ms"] + fl["http_round_trip_p50_ms"]
    lines.append(f"floor: fdatasync {fl['fdatasync_4k_p50_ms']:.3f} + HTTP round trip {fl['http_round_trip_p50_ms']:.3f}"
                 f" = {f:.3f} ms; TLS round trip {fl['tls_round_trip_p50_ms']:.3f} ms;"
                 f" target (2x floor + TLS round trip) {2 * f + fl['tls_round_trip_p50_ms']:.3f} ms")
    print("\n".join(lines), file=sys.stderr)


asyncio.run(main())
