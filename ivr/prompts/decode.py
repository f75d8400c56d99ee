"""Decoding and checking one clip, shared by `ivr prompts build` and the console's upload.

Every recording and TTS output is decoded by ffmpeg to 16-bit PCM WAV before pydub sees it.
ffmpeg probes the content, never the file name: an mp3 named .wav decodes, and so do float,
ADPCM or WAVE_FORMAT_EXTENSIBLE WAVs that pydub's own WAV reader takes for integers (a 32-bit
float WAV came out as near-square noise that passed every check and was played).

The decode stops at the prompt's length limit plus some room for the silence the trim removes:
a two-hour file is refused after that much audio, never decoded whole into memory.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from pydub import AudioSegment
from pydub.silence import detect_leading_silence

from ivr.errors import PromptError

DECODER = "ffmpeg-pcm_s16le"  # part of a recording's cache key: pydub's own reader came before
FFMPEG_TIMEOUT_S = 120.0
SILENCE_ROOM_S = 30.0      # decoded beyond prompts.max_duration_s: silence the trim removes
# Part of every cache key (prompts/build.py): changing any of these re-renders everything.
CONVERSION: dict[str, Any] = {
    "version": 1,
    "sample_rate": 8000,   # Asterisk slin: 8 kHz
    "channels": 1,
    "sample_width": 2,     # 16-bit signed PCM
    "peak_dbfs": -3.0,     # headroom so telephone codecs do not saturate
    # silence = 10 ms chunks this far below the clip's peak; 40 dB cut final consonants
    # ("Test" loses its "st" once band-limited to 4 kHz), 50 dB keeps them.
    "trim_below_peak_db": 50.0,
    "keep_silence_ms": 50,       # keep a breath at each end so the first phoneme is not cut
    "min_audible_ms": 100,
}
SILENT_PEAK_DBFS = -50.0   # a clip whose loudest sample is below this has nothing to say
CLIPPED_RATIO = 0.001      # more than 0.1 % of samples at full scale: the recording clipped
FORMATS_HINT = "export it again as wav (16-bit PCM), mp3, ogg, m4a or flac"


def ffmpeg_path() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise PromptError("ffmpeg not found: apt-get install ffmpeg")
    return exe


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else "no audio")[:120]


def _run_ffmpeg(key: str, data: bytes, what: str, limit: float) -> bytes:
    """16-bit PCM WAV of at most `limit` seconds, through real files: an m4a's index may sit
    at its end, and a WAV written to a pipe has no sizes in its header."""
    with tempfile.TemporaryDirectory(prefix="ivr-decode-") as tmp:
        src, out = Path(tmp) / "input", Path(tmp) / "output.wav"  # no extension: ffmpeg probes
        src.write_bytes(data)
        cmd = [ffmpeg_path(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(src),
               "-map", "0:a:0", "-vn", "-map_metadata", "-1", "-fflags", "+bitexact",
               "-t", f"{limit:g}", "-c:a", "pcm_s16le", "-f", "wav", str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PromptError(f"prompt {key!r}: ffmpeg took over {FFMPEG_TIMEOUT_S:g} s to "
                              f"decode {what}: {FORMATS_HINT}") from exc
        if proc.returncode != 0 or not out.is_file():
            err = proc.stderr.decode("utf-8", "replace").replace(f"{src}: ", "")
            why = _last_line(err.replace(str(src), "the file"))  # not our temporary path
            raise PromptError(f"prompt {key!r}: ffmpeg cannot decode {what} ({why}): "
                              f"{FORMATS_HINT}")
        return out.read_bytes()


def decode(key: str, data: bytes, what: str, max_s: float) -> AudioSegment:
    """The clip as 16-bit PCM at its own rate and channels; PromptError (one line naming the
    prompt and `what`) when ffmpeg cannot decode it or it lasts far more than max_s."""
    limit = max_s + SILENCE_ROOM_S
    seg = AudioSegment(data=_run_ffmpeg(key, data, what, limit))
    if len(seg) >= limit * 1000 - 10:  # ffmpeg stopped at the limit: there is more
        raise PromptError(f"prompt {key!r}: {what} lasts more than {limit:g} s, longer than "
                          f"prompts.max_duration_s = {max_s:g} s: shorten it or raise the limit")
    return seg


def _clipped_ratio(seg: AudioSegment) -> float:
    samples = seg.get_array_of_samples()  # 16-bit: decode() made it so
    if not samples:
        return 0.0
    pinned = samples.count(32767) + samples.count(-32768) + samples.count(-32767)
    return pinned / len(samples)


def _resample(seg: AudioSegment) -> AudioSegment:
    """With ffmpeg (anti-aliased), not pydub's audioop.ratecv (no low-pass filter)."""
    buf = io.BytesIO()
    seg.export(buf, format="wav", parameters=[
        "-ar", str(CONVERSION["sample_rate"]), "-ac", str(CONVERSION["channels"]),
        "-acodec", "pcm_s16le"])
    return AudioSegment(data=buf.getvalue())


def convert(key: str, data: bytes, what: str, max_s: float) -> AudioSegment:
    """Decode, check, resample, trim and normalise one clip (raises PromptError naming key)."""
    seg = decode(key, data, what, max_s)
    if len(seg) == 0 or seg.max_dBFS < SILENT_PEAK_DBFS:
        raise PromptError(f"prompt {key!r}: {what} is silent: record or write it again")
    ratio = _clipped_ratio(seg)
    if ratio > CLIPPED_RATIO:
        raise PromptError(f"prompt {key!r}: {what} is clipped ({ratio:.1%} of samples at full "
                          "scale): record it again at a lower input level")
    seg = _resample(seg)
    threshold = seg.max_dBFS - CONVERSION["trim_below_peak_db"]
    start = detect_leading_silence(seg, silence_threshold=threshold)
    end = len(seg) - detect_leading_silence(seg.reverse(), silence_threshold=threshold)
    if end - start < CONVERSION["min_audible_ms"]:
        raise PromptError(f"prompt {key!r}: {what} is silent after trimming silence: "
                          "record or write it again")
    pad = CONVERSION["keep_silence_ms"]
    seg = seg[max(0, start - pad):min(len(seg), end + pad)]
    return seg.apply_gain(CONVERSION["peak_dbfs"] - seg.max_dBFS)
