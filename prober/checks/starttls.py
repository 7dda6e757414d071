"""STARTTLS dialogues of the tls check: the plain-text exchange that ends with the server ready for a
TLS handshake on the same connection (SMTP RFC 3207, IMAP RFC 9051, POP3 RFC 2595)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

MAX_LINES = 100  # of one reply (EHLO's extension list, IMAP's untagged lines): a server that goes on is refused


class Refused(Exception):
    """The server did not agree to STARTTLS; the message says what it answered."""


async def _line(reader: asyncio.StreamReader) -> str:
    try:
        raw = await reader.readline()
    except ValueError:  # longer than the stream's limit (64 KiB)
        raise Refused("a line longer than 64 KiB before TLS") from None
    if not raw:
        raise Refused("the server closed the connection before TLS")
    return raw.decode("utf-8", "replace").rstrip("\r\n")


def _said(line: str) -> str:
    return repr(line[:120])


async def _smtp_reply(reader: asyncio.StreamReader) -> tuple[str, list[str]]:
    """An SMTP reply: its code and its lines' texts (continuation lines are 'ddd-text')."""
    lines: list[str] = []
    for _ in range(MAX_LINES):
        line = await _line(reader)
        if len(line) < 3 or not line[:3].isdigit():
            raise Refused(f"not an SMTP reply: {_said(line)}")
        lines.append(line[4:])
        if line[3:4] != "-":
            return line[:3], lines
    raise Refused(f"SMTP reply longer than {MAX_LINES} lines")


async def smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greeting 220, EHLO with our address literal, STARTTLS offered, STARTTLS answered 220."""
    code, lines = await _smtp_reply(reader)
    if code != "220":
        raise Refused(f"SMTP greeting {code} {' '.join(lines)[:120]}")
    sockname = writer.get_extra_info("sockname")
    address = str(sockname[0]) if sockname else "127.0.0.1"
    writer.write(f"EHLO [{'IPv6:' + address if ':' in address else address}]\r\n".encode())
    code, lines = await _smtp_reply(reader)
    if code != "250":
        raise Refused(f"EHLO answered {code} {' '.join(lines)[:120]}")
    if not any(line.upper().split(" ", 1)[0] == "STARTTLS" for line in lines[1:]):
        raise Refused("the SMTP server does not offer STARTTLS")
    writer.write(b"STARTTLS\r\n")
    code, lines = await _smtp_reply(reader)
    if code != "220":
        raise Refused(f"STARTTLS answered {code} {' '.join(lines)[:120]}")


async def imap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greeting '* OK', 'a001 STARTTLS' answered 'a001 OK' (untagged lines before it are skipped)."""
    greeting = await _line(reader)
    if not greeting.upper().startswith("* OK"):
        raise Refused(f"IMAP greeting {_said(greeting)}")
    writer.write(b"a001 STARTTLS\r\n")
    for _ in range(MAX_LINES):
        line = await _line(reader)
        if line.startswith("a001 "):
            if line[5:].upper().startswith("OK"):
                return
            raise Refused(f"STARTTLS answered {_said(line)}")
    raise Refused(f"no answer to STARTTLS in {MAX_LINES} lines")


async def pop3(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greeting '+OK', STLS answered '+OK'."""
    greeting = await _line(reader)
    if not greeting.startswith("+OK"):
        raise Refused(f"POP3 greeting {_said(greeting)}")
    writer.write(b"STLS\r\n")
    answer = await _line(reader)
    if not answer.startswith("+OK"):
        raise Refused(f"STLS answered {_said(answer)}")


Dialogue = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
DIALOGUES: dict[str, Dialogue] = {"smtp": smtp, "imap": imap, "pop3": pop3}
