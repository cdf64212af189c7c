#!/usr/bin/env python3
"""A daytime (RFC 867) or time (RFC 868) server with a known clock, for jamc's tests.

Usage: timeserver.py PROTO TRANSPORT OFFSET [FORM] [STEP_AFTER STEP]
  PROTO      daytime | rfc868
  TRANSPORT  tcp | udp
  OFFSET     seconds added to this machine's clock (a float)
  FORM       daytime only: whole (hh:mm:ss), ms (hh:mm:ss.mmm), ctime,
             iso, xinetd, rfc2822 (default whole); ignored for rfc868
  STEP_AFTER, STEP
             after that many readings, the clock steps by STEP seconds

Listens on 127.0.0.1, an ephemeral port; prints "port N" first, then
"reading N from ADDR at T" for every reading it answers (T: when it was
read, on the monotonic clock, in seconds), flushed at once.
"""
import socket
import struct
import sys
import time

proto, transport, offset = sys.argv[1], sys.argv[2], float(sys.argv[3])
form = sys.argv[4] if len(sys.argv) > 4 else "whole"
step_after = int(sys.argv[5]) if len(sys.argv) > 5 else -1
step = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
readings = 0


def reply(peer):
    global readings
    t = time.time() + offset + (step if 0 <= step_after <= readings else 0.0)
    readings += 1
    print("reading %d from %s at %.6f" % (readings, peer[0], time.monotonic()), flush=True)
    if proto == "rfc868":
        return struct.pack("!I", (int(t) + 2208988800) % (1 << 32))
    whole = int(t)  # truncated, as a server does
    g = time.gmtime(whole)
    if form == "ms":
        text = time.strftime("%H:%M:%S", g) + ".%03d" % int((t - whole) * 1000)
    elif form == "ctime":
        text = time.strftime("%a %b ", g) + "%2d" % g.tm_mday + time.strftime(" %H:%M:%S %Y", g)
    elif form == "iso":
        text = time.strftime("%Y-%m-%dT%H:%M:%SZ", g)
    elif form == "xinetd":
        text = time.strftime("%d ", g) + time.strftime("%b", g).upper() + time.strftime(" %Y %H:%M:%S UTC", g)
    elif form == "rfc2822":
        text = time.strftime("%a, %d %b %Y %H:%M:%S +0000", g)
    else:
        text = time.strftime("%H:%M:%S", g)
    return (text + "\r\n").encode()


if transport == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    print("port %d" % s.getsockname()[1], flush=True)
    while True:
        _, peer = s.recvfrom(1024)
        s.sendto(reply(peer), peer)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    print("port %d" % s.getsockname()[1], flush=True)
    while True:
        c, peer = s.accept()
        try:
            c.sendall(reply(peer))
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        c.close()
