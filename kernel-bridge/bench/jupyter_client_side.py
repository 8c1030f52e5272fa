"""jupyter_client's half of bench/kernel-wire.ts: same kernel, same measurements.

Usage: python jupyter_client_side.py CONNECTION_FILE ROUNDS STREAM_BYTES [WARMUP]
Prints one JSON line: median and p90 execute round trip (ms), stream throughput (MB/s).
"""
import json
import statistics
import sys
import time

from jupyter_client import BlockingKernelClient


def run_until_idle(kc, code):
    msg_id = kc.execute(code)
    got = 0
    reply = idle = False
    while not (reply and idle):
        if not idle:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                got += len(msg["content"]["text"])
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
        else:
            kc.get_shell_msg(timeout=60)
            reply = True
    return got


def main():
    cf, rounds, stream_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    warmup = int(sys.argv[4]) if len(sys.argv) > 4 else 50
    kc = BlockingKernelClient(connection_file=cf)
    kc.load_connection_file()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    for _ in range(warmup):
        run_until_idle(kc, "pass")
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        run_until_idle(kc, "pass")
        times.append((time.perf_counter() - t) * 1000)
    code = f"import sys\nfor _ in range({stream_bytes // 10000}):\n    sys.stdout.write('x' * 9999 + '\\n')\nsys.stdout.flush()"
    t = time.perf_counter()
    got = run_until_idle(kc, code)
    dt = time.perf_counter() - t
    kc.stop_channels()
    times.sort()
    print(json.dumps({"median_ms": statistics.median(times), "p90_ms": times[int(len(times) * 0.9)], "mb_per_s": got / dt / 1e6, "bytes": got}))


main()
