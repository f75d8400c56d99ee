"""The sandbox's simulated callees' own sounds: one second of silence, a short "allô" and an
answering machine's greeting, spoken by espeak-ng and converted by ffmpeg to 8 kHz mono."""
from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

from ivr.errors import SandboxError


def write_sim_sounds(dest: Path) -> None:
    """Sounds the simulated callees play: a short 'allo', silence, a machine greeting."""
    dest.mkdir(parents=True, exist_ok=True)
    silence = dest / "silence.wav"
    if not silence.exists() or silence.stat().st_size > 16100:
        with wave.open(str(silence), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x00\x00" * 8000)  # 1 s: AMD needs 0.8 s after "allo"
    speech = {
        "hello": "Allô ?",
        "machine-greeting": "Bonjour, vous êtes bien sur le répondeur de Jean Martin. "
                            "Je ne suis pas disponible pour le moment, laissez-moi un message "
                            "après le bip sonore et je vous rappellerai dès que possible. Merci.",
    }
    for name, text in speech.items():
        out = dest / f"{name}.wav"
        if out.exists():
            continue
        if shutil.which("espeak-ng") is None:
            raise SandboxError("espeak-ng not found: apt-get install -y espeak-ng")
        raw = dest / f"{name}.raw.wav"
        subprocess.run(["espeak-ng", "-v", "fr", "-w", str(raw), text], check=True,
                       capture_output=True)
        subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(raw), "-ar", "8000",
                        "-ac", "1", "-sample_fmt", "s16", str(out)], check=True)
        raw.unlink()
