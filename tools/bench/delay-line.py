#!/usr/bin/env python3
"""A TCP delay line: forwards LISTEN_PORT -> UPSTREAM_HOST:UPSTREAM_PORT, holding every byte
for DELAY_MS in each direction (so a round trip gains 2 x DELAY_MS), with at most QUEUE_BYTES
in flight per direction (the link's buffer). Used with a `tc tbf` rate limit to emulate a long
WAN link where the kernel has no netem.

usage: delay-line.py LISTEN_HOST LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT DELAY_MS [QUEUE_BYTES]
"""
import asyncio
import sys
import time

listen_host, listen_port, up_host, up_port, delay_ms = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
queue_bytes = int(sys.argv[6]) if len(sys.argv) > 6 else 4 << 20
delay = delay_ms / 1000


async def pipe(reader, writer):
    queue = asyncio.Queue()
    budget = asyncio.Semaphore(max(1, queue_bytes // 65536))

    async def receive():
        while True:
            await budget.acquire()
            data = await reader.read(65536)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return

    async def send():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            budget.release()
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(receive(), send())
    except (ConnectionError, asyncio.IncompleteReadError):
        writer.close()


async def handle(client_reader, client_writer):
    try:
        up_reader, up_writer = await asyncio.open_connection(up_host, up_port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer), return_exceptions=True)


async def main():
    server = await asyncio.start_server(handle, listen_host, listen_port)
    async with server:
        await server.serve_forever()

asyncio.run(main())
