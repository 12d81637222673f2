"""HTTP GET for checks: plain http:// over a socket (http.client costs ~35 ms of imports), https via http.client."""

from __future__ import annotations

import time

from .errors import OpFailed


def http_get(url: str, timeout: float) -> tuple[int, str]:
    """GET ``url``: (status, body).  Plain http:// is spoken over a socket: importing http.client (and
    the email package behind it) costs ~35 ms of CPU, paid on every host at once in a rollback."""
    if not url.startswith("http://"):
        return https_get(url, timeout)
    import socket

    hostport, _, path = url[len("http://") :].partition("/")
    hostport, path = hostport or "localhost", "/" + path
    if hostport.startswith("["):  # [IPv6]:port
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = hostport.partition(":")
    deadline = time.monotonic() + timeout
    request = f"GET {path} HTTP/1.0\r\nHost: {hostport}\r\nUser-Agent: upgrader-agent\r\nConnection: close\r\n\r\n"
    chunks, size = [], 0
    with socket.create_connection((host, int(port or 80)), timeout=timeout) as sock:
        sock.sendall(request.encode("latin-1"))
        while size < HTTP_LIMIT:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return parse_http_response(b"".join(chunks))


HTTP_LIMIT = 1 << 20  # bytes of response read at most; checks look at status and a short body


def parse_http_response(raw: bytes) -> tuple[int, str]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(None, 2)
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise OpFailed(f"not an HTTP response: {raw[:80]!r}")
    headers = dict((k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in lines[1:]))
    if headers.get("transfer-encoding", "").lower() == "chunked":  # an HTTP/1.1 server ignoring our 1.0
        body = dechunk(body)
    elif headers.get("content-length", "").isdigit():
        body = body[: int(headers["content-length"])]
    return int(parts[1]), body[:65536].decode("utf-8", "replace")


def dechunk(data: bytes) -> bytes:
    out = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2 :]
    return b"".join(out)


def https_get(url: str, timeout: float) -> tuple[int, str]:
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPSConnection(parts.hostname or "localhost", parts.port, timeout=timeout)
    try:
        conn.request("GET", (parts.path or "/") + ("?" + parts.query if parts.query else ""))
        resp = conn.getresponse()
        return resp.status, resp.read(65536).decode("utf-8", "replace")
    except http.client.HTTPException as exc:
        raise OpFailed(f"{type(exc).__name__}: {exc}") from None
    finally:
        conn.close()
