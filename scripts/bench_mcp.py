"""Per-call latency of MCP tools/call: direct to the server, through
`writ mcp-proxy`, and through the Agent Governance Toolkit's `agentmesh
proxy`, with the same client (the Python `mcp` SDK), the same server
(@modelcontextprotocol/server-filesystem) and the same call, in one run.
Called by scripts/bench-mcp, which sets the environment up."""

import asyncio, json, os, statistics, sys, time
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

job = json.loads(sys.argv[1])
N, WARM = job["calls"], job["warmup"]


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
    lat.sort()
    return {
        "name": name,
        "calls": len(lat),
        "median_ms": statistics.median(lat),
        "p90_ms": lat[int(len(lat) * 0.9)],
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


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
    json.dump(rounds, sys.stdout, indent=1)


asyncio.run(main())
