"""The floor parts the MCP benchmarks (bench_mcp.py, bench_mcp_http.py)
measure in their own run: the median of a function's time, and one
fdatasync of 4 KB overwritten in a preallocated file on the data dir's
filesystem (as the store overwrites its preallocated WAL)."""

import os, statistics, time


def p50(f, n=1000, warm=50):
    lat = []
    for i in range(warm + n):
        t0 = time.perf_counter()
        f()
        if i >= warm:
            lat.append((time.perf_counter() - t0) * 1000)
    return statistics.median(lat)


def fdatasync_p50(data_dir):
    span = 4 << 20
    path = os.path.join(data_dir, "floor.probe")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.pwrite(fd, bytes(span), 0)
        os.fsync(fd)
        block, at = os.urandom(4096), [0]

        def sync():
            os.pwrite(fd, block, at[0])
            at[0] = (at[0] + 4096) % span
            os.fdatasync(fd)

        return p50(sync)
    finally:
        os.close(fd)
        os.unlink(path)
