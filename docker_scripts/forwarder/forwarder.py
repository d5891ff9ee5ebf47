"""Relay TCP connections on the run's loopback to the tracking gateway's unix socket.

Runs in the forwarder container, which has no network but loopback; the run container shares that
loopback. Each accepted connection opens the socket anew, so a restarted gateway is picked up.
"""

import asyncio
import os
import sys

LISTEN_HOST = os.environ.get("FORWARD_LISTEN_HOST", "127.0.0.1")
LISTEN_PORT = int(os.environ.get("FORWARD_LISTEN_PORT", "3001"))
SOCKET_PATH = os.environ.get("FORWARD_SOCKET", "/gateway/gateway.sock")
CHUNK = 64 * 1024


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
    try:
        # O_NOFOLLOW semantics: refuse a socket path that has been swapped for a link.
        if os.path.islink(SOCKET_PATH):
            raise ConnectionError("gateway socket is a link")
        upstream_reader, upstream_writer = await asyncio.open_unix_connection(SOCKET_PATH)
    except OSError as exc:
        body = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "tracking gateway unavailable"}'
        print(f"forwarder: cannot reach the gateway: {exc}", file=sys.stderr, flush=True)
        client_writer.write(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await client_writer.drain()
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))


async def main() -> None:
    servers = [await asyncio.start_server(handle, LISTEN_HOST, LISTEN_PORT)]
    try:  # "localhost" may resolve to ::1 first; answer there too when IPv6 exists.
        servers.append(await asyncio.start_server(handle, "::1", LISTEN_PORT))
    except OSError:
        pass
    print(f"forwarder: ready on {LISTEN_HOST}:{LISTEN_PORT} -> {SOCKET_PATH}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main())
