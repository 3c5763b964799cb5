#!/usr/bin/env python3
"""Servers of a Bordergate test host, run inside its network namespace by scripts/testnet.sh.

- HTTP on port 80 (IPv4 and IPv6): GET / greets; GET /bytes/N sends N deterministic bytes;
  POST /sha256 answers with the SHA-256 of the request body; GET /peer shows the client address.
- UDP echo on port 7.
- "echo digest" on port 7: reads until the client half-closes, then answers with the SHA-256 and
  length of everything read, and closes. A relay that mishandles half-close fails it.
"""
import hashlib
import os
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 1 << 16


def pattern(n):
    """N bytes of a fixed pattern, generated in chunks."""
    block = bytes(range(256)) * (CHUNK // 256)
    while n > 0:
        take = min(n, CHUNK)
        yield block[:take]
        n -= take


class HTTP(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, body, status=200, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/":
            self._send(b"hello from the test host\n")
        elif self.path == "/peer":
            self._send(f"{self.client_address[0]}\n".encode())
        elif self.path.startswith("/bytes/"):
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for chunk in pattern(n):
                self.wfile.write(chunk)
        else:
            self._send(b"not found\n", 404)

    def do_POST(self):
        if self.path != "/sha256":
            self._send(b"not found\n", 404)
            return
        remaining = int(self.headers.get("Content-Length", "0"))
        h = hashlib.sha256()
        while remaining > 0:
            data = self.rfile.read(min(remaining, CHUNK))
            if not data:
                break
            h.update(data)
            remaining -= len(data)
        self._send(f"{h.hexdigest()}\n".encode())


class DualStackHTTP(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    request_queue_size = 1024

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class EchoDigest(socketserver.BaseRequestHandler):
    def handle(self):
        h = hashlib.sha256()
        total = 0
        while True:
            data = self.request.recv(CHUNK)
            if not data:
                break
            h.update(data)
            total += len(data)
        self.request.sendall(f"{h.hexdigest()} {total}\n".encode())
        self.request.shutdown(socket.SHUT_WR)


class DualStackTCP(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def udp_echo(address):
    """UDP echo on port 7: answers each datagram with "echo:" and the datagram (UDP verdict tests).
    One socket per address, so a reply leaves from the address the client sent to (a connected
    UDP client drops replies from any other)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((address, 7))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(b"echo:" + data, peer)


def main():
    http = DualStackHTTP(("::", 80), HTTP)
    echo = DualStackTCP(("::", 7), EchoDigest)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    for address in os.environ.get("BG_UDP_ADDRESSES", "0.0.0.0").split():
        threading.Thread(target=udp_echo, args=(address,), daemon=True).start()
    print("test host serving HTTP :80, echo-digest :7 and UDP echo :7", flush=True)
    http.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
