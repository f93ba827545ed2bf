#!/usr/bin/env python3
"""Interop check: drives rtet-relay with Python's `websockets` (a client no one
in this project wrote) through a publish, a subscribe with a token, and a
replay with `since`.

Usage: python_client.py ws://127.0.0.1:PORT   (API key in $RTET_API_KEY)

Exits 0 when every check passed; prints what failed otherwise. The HS256 token
is signed here with the standard library, so the relay's token check is tested
against an independent JWT implementation too.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time

import websockets


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign_token(key: str, sub: str, channels, ttl: int = 300) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    claims = {"sub": sub, "channels": channels, "iat": now, "exp": now + ttl}
    body = b64url(json.dumps(claims).encode())
    mac = hmac.new(key.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(mac)}"


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout=10))


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def main(base: str, key: str) -> None:
    channel = "user.42"
    auth = {"Authorization": f"Bearer {key}"}

    # A publisher without a key is refused before the upgrade.
    try:
        async with websockets.connect(f"{base}/publish"):
            raise AssertionError("publish without a key was accepted")
    except websockets.exceptions.InvalidStatusCode as e:
        check(e.status_code == 401, f"expected 401, got {e.status_code}")

    async with websockets.connect(f"{base}/publish", extra_headers=auth) as pub:
        # Three pipelined publishes, then their acks, in order.
        for i in range(1, 4):
            await pub.send(json.dumps({
                "type": "publish", "id": f"py-{i}", "channel": channel,
                "event": "py_event", "data": {"n": i, "text": "héllo"},
            }))
        acks = [await recv_json(pub) for _ in range(3)]
        check([a["type"] for a in acks] == ["ack"] * 3, f"acks: {acks}")
        check([a["id"] for a in acks] == ["py-1", "py-2", "py-3"], f"ack ids: {acks}")
        seqs = [a["seq"] for a in acks]
        check(seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2], f"seqs not consecutive: {seqs}")

        token = sign_token(key, "42", ["public", channel])
        async with websockets.connect(f"{base}/ws") as sub:
            # Without a token, user.42 is not open.
            await sub.send(json.dumps({"type": "subscribe", "channel": channel}))
            err = await recv_json(sub)
            check(err["type"] == "error" and err["code"] == "unauthorized", f"no-token subscribe: {err}")

            await sub.send(json.dumps({"type": "auth", "token": token}))
            ok = await recv_json(sub)
            check(ok["type"] == "auth_ok" and ok["sub"] == "42", f"auth: {ok}")
            await sub.send(json.dumps({"type": "subscribe", "channel": channel}))
            subscribed = await recv_json(sub)
            check(subscribed["type"] == "subscribed", f"subscribe: {subscribed}")
            check(subscribed["seq"] == seqs[2], f"subscribed seq: {subscribed}")
            epoch = subscribed["epoch"]

            # A live event arrives with the publisher's data.
            await pub.send(json.dumps({
                "type": "publish", "id": "py-4", "channel": channel,
                "event": "py_event", "data": {"n": 4},
            }))
            ack = await recv_json(pub)
            check(ack["type"] == "ack" and ack["seq"] == seqs[2] + 1, f"ack 4: {ack}")
            event = await recv_json(sub)
            check(event["type"] == "event" and event["id"] == "py-4", f"live event: {event}")
            check(event["data"] == {"n": 4} and event["seq"] == ack["seq"], f"live event: {event}")

    # Replay: a new connection resumes after the first event.
    async with websockets.connect(f"{base}/ws") as sub:
        await sub.send(json.dumps({"type": "auth", "token": token}))
        check((await recv_json(sub))["type"] == "auth_ok", "re-auth")
        await sub.send(json.dumps({
            "type": "subscribe", "channel": channel,
            "since": {"epoch": epoch, "seq": seqs[0]},
        }))
        subscribed = await recv_json(sub)
        check(subscribed["recovered"] is True, f"recovered: {subscribed}")
        replay = [await recv_json(sub) for _ in range(3)]
        check([e["id"] for e in replay] == ["py-2", "py-3", "py-4"], f"replay: {replay}")
        check(replay[0]["data"] == {"n": 2, "text": "héllo"}, f"replayed data: {replay[0]}")

        # A replay from another epoch is refused as not recovered, with nothing replayed.
        await sub.send(json.dumps({
            "type": "subscribe", "channel": "public",
            "since": {"epoch": "not-" + epoch, "seq": 1},
        }))
        other = await recv_json(sub)
        check(other["type"] == "subscribed" and other["recovered"] is False, f"other epoch: {other}")

    print("interop: all checks passed")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.environ.get("RTET_API_KEY"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(main(sys.argv[1].rstrip("/"), os.environ["RTET_API_KEY"]))
    except AssertionError as e:
        print(f"interop check failed: {e}", file=sys.stderr)
        sys.exit(1)
