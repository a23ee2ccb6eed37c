"""Tests reach loopback only: which addresses this process and the processes it started listen on (Linux /proc)."""

import ipaddress
import os
import socket
import sys
from pathlib import Path

PROC = Path("/proc")


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def guarded_bind(bind):
    """``socket.bind`` that refuses any address but loopback (and Unix sockets) with a clear error."""

    def bind_loopback_only(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
            raise OSError(f"tests listen on loopback only, not on {address[0] or 'every interface'!r}")
        return bind(sock, address)

    return bind_loopback_only


def descendants(pid: int) -> set[int]:
    """``pid`` and every process under it."""
    children: dict[int, list[int]] = {}
    for stat in PROC.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        found.add(p)
        todo += children.get(p, [])
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in (PROC / str(pid) / "fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _address(hex_address: str) -> str:
    host = bytes.fromhex(hex_address.split(":")[0])
    # /proc/net/tcp* print addresses as 32-bit words in host byte order
    words = b"".join(host[i:i + 4][::-1] for i in range(0, len(host), 4)) if sys.byteorder == "little" else host
    return str(ipaddress.ip_address(words))


def listening_addresses(pids: set[int]) -> list[str]:
    """The local address of every TCP socket the processes ``pids`` listen on."""
    inodes = set().union(*(_socket_inodes(p) for p in pids))
    found = []
    for table in ("tcp", "tcp6"):
        for line in (PROC / "net" / table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(_address(fields[1]))
    return found
