"""Keys as audio tones for SIPp (tests/integration/test_sip_trunk.py): an RTP pcap of one DTMF
key in G.711 A-law (payload 8), for a carrier that answers PCMA without telephone-event and so
can only send keys inband. Written at test time: no binary asset, no audio dependency."""
from __future__ import annotations

import math
import struct
from pathlib import Path

DTMF_HZ = {"1": (697, 1209), "2": (697, 1336), "9": (852, 1477)}  # row, column (ITU-T Q.23)
RATE = 8000
FRAME = 160  # 20 ms at 8 kHz


def alaw(sample: int) -> int:
    """One 16-bit linear sample in G.711 A-law (the reference g711.c encoder)."""
    mask, v = (0xD5, sample >> 3) if sample >= 0 else (0x55, (-sample - 1) >> 3)
    seg = max(0, v.bit_length() - 5)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((v >> max(seg, 1)) & 0x0F)) ^ mask


def tone_alaw(key: str, tone_ms: int = 250, pre_ms: int = 100, post_ms: int = 200) -> bytes:
    """Silence, the key's two frequencies (Asterisk's detector wants >= ~40 ms), silence."""
    lo, hi = DTMF_HZ[key]
    w = [2 * math.pi * f / RATE for f in (lo, hi)]
    pcm = [0] * (pre_ms * 8)
    pcm += [int(7000 * (math.sin(w[0] * i) + math.sin(w[1] * i))) for i in range(tone_ms * 8)]
    pcm += [0] * (post_ms * 8)
    return bytes(alaw(s) for s in pcm)


def write_tone_pcap(path: Path, key: str) -> Path:
    """A libpcap file of RTP packets (Ethernet/IPv4/UDP) that SIPp's play_pcap_audio replays:
    SIPp keeps the RTP and sends it to the peer's media address."""
    audio = tone_alaw(key)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # DLT_EN10MB
    for n, off in enumerate(range(0, len(audio), FRAME)):
        rtp = struct.pack("!BBHII", 0x80, 8, 1000 + n, n * FRAME, 0x12345678) \
            + audio[off:off + FRAME]
        udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
        eth = b"\x00" * 12 + b"\x08\x00" + ip
        usec = 1_700_000_000 * 1_000_000 + n * 20_000
        out.append(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(eth), len(eth))
                   + eth)
    path.write_bytes(b"".join(out))
    return path
