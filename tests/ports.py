"""A free TCP port on loopback for a server a test starts later (an AGI port in a config).

Picked below the kernel's ephemeral range (32768-60999 here): a port bound to 0 and closed
again could be handed to the next socket that binds 0 or connects (the fake PBX's AMI, a
client) before the test's own server binds it, and the start failed "cannot listen for
FastAGI" (seen once under -n 2). Below the range only another pick of this kind can take it.
"""
from __future__ import annotations

import random
import socket

LOW, HIGH = 20000, 32000


def free_port() -> int:
    for _ in range(200):
        port = random.randint(LOW, HIGH)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {LOW}-{HIGH}")
