"""Relay 127.0.0.1:PORT to HOST:HOST_PORT: the dry run's MLflow, at the address your browser uses.

Returns once it listens (the relay goes on in a child process), so the code started next finds it.
"""

import asyncio
import os
import socket
import sys

CHUNK = 64 * 1024


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(listener: socket.socket, host: str, port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            print(f"dry run: MLflow does not answer at {host}:{port}: {exc}", file=sys.stderr, flush=True)
            writer.close()
            return
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(handle, sock=listener)
    await server.serve_forever()


def main() -> None:
    listen_port, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    listener = socket.create_server(("127.0.0.1", listen_port))
    if os.fork():
        return
    os.setsid()
    asyncio.run(serve(listener, host, port))


if __name__ == "__main__":
    main()
