"""`python3 lab/netcat.py HOST PORT`: relay stdin/stdout to a TCP port (stdlib only; no nc on the box).

Vagrant reaches a datacenter host while it brings it up (key exchange) with this as its ProxyCommand,
run by `lxc-attach -s NETWORK` inside the host's own network namespace towards 127.0.0.1:22.  That is
out of band, like lxc-attach itself: the controller still has no route to the host.
"""

import contextlib
import os
import socket
import sys
import threading


def pump_in(sock: socket.socket) -> None:
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


def main() -> int:
    try:
        sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    except OSError as exc:  # sshd not up yet while the host boots: Vagrant retries, one line is enough
        print(f"netcat: {sys.argv[1]}:{sys.argv[2]}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    sock.settimeout(None)
    threading.Thread(target=pump_in, args=(sock,), daemon=True).start()
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            while data:
                data = data[os.write(1, data) :]
    except OSError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
