"""A small authoritative DNS server for tests, built on dnspython: UDP and TCP on one port of
127.0.0.1, optionally DoT (TLS) and DoH (HTTPS, RFC 8484 POST) on ports of their own.

It runs its own event loop in a thread, so a test may call it from async code and from a
subprocess (`upwatch probe`) alike. What it answers for a name:
- the records of `zone` (name, type) -> rdata texts, NOERROR; a name of the zone asked for another
  type: NOERROR with an empty answer (NODATA);
- a name in `rcodes`: that rcode and nothing else (SERVFAIL, REFUSED ...);
- a name in `silent`: no answer at all (the client times out);
- anything else: NXDOMAIN. UDP answers over 512 bytes are truncated (TC), so clients retry over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import threading
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from aiohttp import web

Zone = dict[tuple[str, str], list[str]]
SOA = "ns.test. admin.test. 1 3600 600 86400 60"


@dataclass
class DnsServer:
    zone: Zone
    rcodes: dict[str, int] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    port: int = 0  # UDP and TCP
    tls_port: int = 0
    doh_port: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)  # (transport, question name), in order

    def answer(self, wire: bytes, transport: str, max_size: int = 65535) -> bytes | None:
        """The response to one query in wire format, or None to stay silent."""
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text().lower()
        self.seen.append((transport, name))
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        self._fill(response, name, dns.rdatatype.to_text(question.rdtype))
        try:
            return response.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            return truncated.to_wire()

    def _fill(self, response: dns.message.Message, name: str, rdtype: str) -> None:
        if name in self.rcodes:
            response.set_rcode(self.rcodes[name])
            return
        found = self.zone.get((name, rdtype))
        if found:
            response.answer.append(dns.rrset.from_text_list(name, 60, "IN", rdtype, found))
            return
        if not any(known == name for known, _ in self.zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(dns.rrset.from_text("test.", 60, "IN", "SOA", SOA))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.DatagramTransport, transport)  # asyncio's protocol API types it loosely

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.answer(data, "udp", max_size=512)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


Handler = typing.Callable[[asyncio.StreamReader, asyncio.StreamWriter], typing.Awaitable[None]]


def _stream_handler(server: DnsServer, transport: str, tasks: set[asyncio.Task[None]]) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # cancelled when the server stops, so no connection outlives it
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        try:
            while True:  # RFC 7766: several length-prefixed queries on one connection
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = server.answer(await reader.readexactly(size), transport)
                if reply is None:
                    await reader.read()  # silent: hold the connection until the client gives up
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    return handle


async def _doh(server: DnsServer, request: web.Request) -> web.Response:
    if request.content_type != "application/dns-message":
        return web.Response(status=415, text="not a DNS message")
    reply = server.answer(await request.read(), "https")
    if reply is None:
        await asyncio.sleep(3600)  # silent: the client's timeout ends it
    return web.Response(body=reply, content_type="application/dns-message")


class _Running:
    """The server's event loop in a thread, with its listeners; stop() closes them all."""

    def __init__(self, server: DnsServer, tls: ssl.SSLContext | None) -> None:
        self.server, self.tls = server, tls
        self.loop = asyncio.new_event_loop()
        self.closers: list[asyncio.AbstractServer | asyncio.BaseTransport] = []
        self.runner: web.AppRunner | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        if not self.ready.wait(10) or self.error is not None:
            raise RuntimeError(f"the test DNS server did not start: {self.error!r}")

    def _main(self) -> None:
        try:
            self.loop.run_until_complete(self._start())
        except Exception as e:  # reported to the test by __init__
            self.error = e
        self.ready.set()
        if self.error is None:
            self.loop.run_forever()
        self.loop.run_until_complete(self._close())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    async def _start(self) -> None:
        s = self.server
        for _ in range(20):  # UDP picks a free port; TCP must get the same one, which may be taken
            udp, _ = await self.loop.create_datagram_endpoint(lambda: _Udp(s), local_addr=("127.0.0.1", 0))
            port = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(_stream_handler(s, "tcp", self.tasks), "127.0.0.1", port)
            except OSError:
                udp.close()
                continue
            s.port = port
            self.closers += [udp, tcp]
            break
        if self.tls is None:
            return
        tls = await asyncio.start_server(_stream_handler(s, "tls", self.tasks), "127.0.0.1", 0, ssl=self.tls)
        self.closers.append(tls)
        s.tls_port = tls.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_post("/dns-query", functools.partial(_doh, s))
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        s.doh_port = self.runner.addresses[0][1]

    async def _close(self) -> None:
        for closer in self.closers:
            closer.close()
            if isinstance(closer, asyncio.AbstractServer):
                await closer.wait_closed()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.runner is not None:
            await self.runner.cleanup()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@contextlib.contextmanager
def serve(server: DnsServer, tls: ssl.SSLContext | None = None) -> Iterator[DnsServer]:
    """Run `server` on 127.0.0.1 (with DoT and DoH when `tls` is given) until the block ends."""
    running = _Running(server, tls)
    try:
        yield server
    finally:
        running.stop()
