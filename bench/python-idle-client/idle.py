#!/usr/bin/python3
"""An independent client for the relay's memory per idle connection: opens N
WebSocket connections with Python's `websockets` (Debian's
python3-websockets), with at most IN_FLIGHT handshakes at once, subscribes
each to the anonymous channel (rtet-relay's protocol; --no-subscribe for a
peer without one), and prints the relay process's VmRSS before, 2 s after the
last one opened, and after --hold seconds more. With --send-bytes N, each
connection then sends one frame of about N bytes (an `unsubscribe` whose
channel name is N bytes long, which rtet-relay reads whole and refuses) and
reads the answer, and the RSS is printed again 2 s later: what the relay
keeps of a client's large frame.

    idle.py --url ws://127.0.0.1:PORT/ws --pid RELAY_PID --count 15000 --in-flight 256

Loopback only. Raise the fd limit first (ulimit -n) for large counts.
"""
import argparse
import asyncio
import json
import time
from urllib.parse import urlparse

import websockets


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def open_one(args, gate):
    async with gate:
        ws = await websockets.connect(
            args.url,
            ping_interval=args.ping_interval,
            compression=None,
            max_size=2**16,
            open_timeout=60,
        )
        if args.subscribe:
            await ws.send(json.dumps({"type": "subscribe", "channel": args.channel}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame.get("type") == "subscribed":
                    break
                if frame.get("type") == "error":
                    raise RuntimeError(f"subscribe refused: {frame}")
        return ws


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--count", type=int, default=15000)
    p.add_argument("--in-flight", type=int, default=256)
    p.add_argument("--hold", type=float, default=0)
    p.add_argument("--channel", default="public")
    p.add_argument("--no-subscribe", dest="subscribe", action="store_false")
    p.add_argument("--ping-interval", type=float, default=None,
                   help="seconds between the client's pings (default: none)")
    p.add_argument("--send-bytes", type=int, default=0,
                   help="then send one frame of about this size per connection (default: none)")
    args = p.parse_args()
    host = urlparse(args.url).hostname
    if not host or not host.startswith("127."):
        raise SystemExit("loopback addresses only")
    before = rss_kib(args.pid)
    gate = asyncio.Semaphore(args.in_flight)
    start = time.monotonic()
    conns = await asyncio.gather(*(open_one(args, gate) for _ in range(args.count)))
    opened = time.monotonic() - start
    await asyncio.sleep(2)
    after = rss_kib(args.pid)
    n = len(conns)
    print(f"{n} connections ({args.in_flight} in flight) in {opened:.1f} s; "
          f"relay RSS {before} KiB -> {after} KiB: {(after - before) / n:.2f} KiB per connection")
    if args.hold > 0:
        await asyncio.sleep(args.hold)
        held = rss_kib(args.pid)
        print(f"after {args.hold:.0f} s more: {held} KiB: {(held - before) / n:.2f} KiB per connection")
    if args.send_bytes > 0:
        frame = json.dumps({"type": "unsubscribe", "channel": "x" * args.send_bytes})
        answers = await asyncio.gather(*(send_large(ws, frame, gate) for ws in conns))
        refused = sum(1 for a in answers if a.get("type") == "error")
        await asyncio.sleep(2)
        sent = rss_kib(args.pid)
        print(f"after one frame of {len(frame)} bytes from each ({refused} of {n} answered "
              f"with an error): {sent} KiB: {(sent - before) / n:.2f} KiB per connection")
    for ws in conns:
        await ws.close()


async def send_large(ws, frame, gate):
    async with gate:
        await ws.send(frame)
        return json.loads(await asyncio.wait_for(ws.recv(), 30))


asyncio.run(main())
