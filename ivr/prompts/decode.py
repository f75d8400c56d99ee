"""Decoding and checking one clip, shared by `ivr prompts build` and the console's upload.

Every recording and TTS output is decoded by ffmpeg to 16-bit PCM WAV before pydub sees it.
ffmpeg probes the content, never the file name: an mp3 named .wav decodes, and so do float,
ADPCM or WAVE_FORMAT_EXTENSIBLE WAVs that pydub's own WAV reader takes for integers (a 32-bit
float WAV came out as near-square noise that passed every check and was played).

The decode stops at the prompt's length limit plus some room for the silence the trim removes:
a two-hour file is refused after that much audio, never decoded whole into memory.

Refused besides: a stereo take whose channels cancel in the mono mix (one polarity-inverted),
a silent one, and one whose level never rises 15 dB above its background (a muted microphone,
a wrong input: its noise would be amplified into a loud hiss). Each prompt's speech is brought
to the same level (-20 dBFS over its voiced 50 ms windows) with its peaks held at -3 dBFS by a
limiter, so a click no longer lowers the words; silence and room tone are trimmed at each end.
"""
from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from pydub import AudioSegment
from pydub.utils import audioop  # pydub's own: the stdlib module, or its stand-in

from ivr.errors import PromptError

# Part of a recording's cache key: pydub's own reader came before, then no 48 kHz stereo bound.
# A recording's decoding, part of its cache key only (a TTS render has no DC offset: a gTTS
# prompt is not rendered again, which would need Google's service). "-dc": a take's DC offset
# is taken out (DC_OFFSET_MAX).
DECODER = "ffmpeg-pcm_s16le-48k-stereo-dc"
# A sound card's DC offset (the take's mean, as a fraction of full scale) over this is taken
# out. Inaudible, it raised every window's level, the pauses' too: a take with one of 2 % was
# refused as noise only, and a smaller one went into the prompt. Other takes are left as
# they are (a speech's own mean, a few LSB, is no offset: taking it out would lift the digital
# silence around the words off zero).
DC_OFFSET_MAX = 0.002
FFMPEG_TIMEOUT_S = 120.0
SILENCE_ROOM_S = 30.0      # decoded beyond prompts.max_duration_s: silence the trim removes
# Part of every cache key (prompts/build.py): changing any of these re-renders everything.
CONVERSION: dict[str, Any] = {
    # 2: noise only and cancelling stereo refused (a cached build of one is checked again);
    # 3: gain from the speech level under a limiter, not from the loudest sample;
    # 4: room tone trimmed, not only what lies 50 dB below the peak;
    # 5: only a background 30 dB under the speech is room tone (a music bed is kept), trimmed
    # ends faded; a clip under 1 s is not judged on its dynamics (one word has no pause)
    "version": 5,
    "sample_rate": 8000,   # Asterisk slin: 8 kHz
    "channels": 1,
    "sample_width": 2,     # 16-bit signed PCM
    # Gain brings the speech (the energy mean of its voiced 50 ms windows) to this level, what
    # espeak-ng's prompts had under the old peak rule (-17 to -21 dBFS, median -19): the
    # loudest sample set the gain before, so one click left a take's speech 12-15 dB quieter.
    "speech_dbfs": -20.0,
    "peak_dbfs": -3.0,     # ceiling a limiter holds: headroom so telephone codecs do not saturate
    "limiter_ms": 5,       # the limiter's gain falls and recovers over 2 x this around a peak
    # silence = 10 ms chunks this far below the clip's peak; 40 dB cut final consonants
    # ("Test" loses its "st" once band-limited to 4 kHz), 50 dB keeps them.
    "trim_below_peak_db": 50.0,
    # ... or, in a take with room tone, this far above its noise floor (10th percentile of its
    # 10 ms chunks): a room tone's chunks spread 11 dB above that floor, its 50 ms windows 8
    "trim_above_floor_db": 12.0,
    # ... only when that floor lies this far under the speech: a music bed 10-22 dB under it is
    # part of the take (its jingle and outro were cut, mid-note), a room's tone is not
    "room_tone_below_speech_db": 30.0,
    "fade_ms": 20,               # room tone cut: faded in and out, no click at either end
    "keep_silence_ms": 50,       # keep a breath at each end so the first phoneme is not cut
    "keep_room_tone_ms": 200,    # a soft first or last consonant may lie under the room tone
    "min_audible_ms": 100,
    # Refused: speech this close to the background (50 ms windows: the level 0.5 s of the take
    # exceeds against the 10th percentile) is noise only, e.g. a muted microphone's hiss.
    "min_dynamics_db": 15.0,
    "min_dynamics_windows": 20,  # ... judged on 1 s or more: inside one word ("Oui.") no pause
    "max_mix_drop_db": 10.0,     # a stereo take whose mono mix is this far below its channels
}
SILENT_PEAK_DBFS = -50.0   # a clip whose loudest sample is below this has nothing to say
CLIPPED_RATIO = 0.001      # more than 0.1 % of samples at full scale: the recording clipped
FORMATS_HINT = "export it again as wav (16-bit PCM), mp3, ogg, m4a or flac"
FLOOR_DB = -120.0          # the level given to a chunk of digital silence
# The demuxers a take may use (wav and its 64-bit form, aiff, mp3, m4a/mp4/mov, ogg/opus,
# flac, a raw aac, webm): ffmpeg probes the content, and a text file named take.wav that reads
# as an HLS or concat playlist would otherwise make it decode any file the server can read
# (another campaign's prompt) into this one. None of these reads another file.
DEMUXERS = "wav,w64,aiff,mp3,mov,ogg,flac,aac,matroska"
# Decoded PCM is held in memory a few times over: a take is decoded at 48 kHz at most
# (resampled by ffmpeg; a tiny FLAC of 8 channels at 384 kHz took 1.7 GB), and its output is
# capped at the length allowed in 48 kHz stereo (-fs): more channels over a long take are
# refused. Channels are left as they are (a layout forced to mono|stereo refused some 2-channel
# WAVs whose mask is not plain stereo).
MAX_RATE_HZ, MAX_CHANNELS = 48_000, 2
_RATES = "|".join(str(r) for r in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100,
                                   48000) if r <= MAX_RATE_HZ)
BOUND = f"aformat=sample_rates={_RATES}"
_NOT_LISTED = re.compile(r"\[(\w+) @ [^]]*\] Format not on whitelist")


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
        cap = _output_cap(limit)
        cmd = [ffmpeg_path(), "-nostdin", "-hide_banner", "-loglevel", "error",
               "-protocol_whitelist", "file", "-format_whitelist", DEMUXERS, "-i", str(src),
               "-map", "0:a:0", "-vn", "-map_metadata", "-1", "-fflags", "+bitexact",
               "-t", f"{limit:g}", "-af", BOUND, "-c:a", "pcm_s16le", "-fs", str(cap),
               "-f", "wav", str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PromptError(f"prompt {key!r}: ffmpeg took over {FFMPEG_TIMEOUT_S:g} s to "
                              f"decode {what}: {FORMATS_HINT}") from exc
        if proc.returncode != 0 or not out.is_file():
            err = proc.stderr.decode("utf-8", "replace").replace(f"{src}: ", "")
            listed = _NOT_LISTED.search(err)
            why = f"its format, {listed.group(1)}, is not one a take may be in" if listed else \
                _last_line(err.replace(str(src), "the file"))  # not our temporary path
            raise PromptError(f"prompt {key!r}: ffmpeg cannot decode {what} ({why}): "
                              f"{FORMATS_HINT}")
        if out.stat().st_size >= cap:  # -fs stopped it: the rest would not fit either
            raise PromptError(f"prompt {key!r}: {what} decodes to more than {cap >> 20} MB: "
                              "export it again in mono or stereo at 48 kHz or less")
        return out.read_bytes()


def _output_cap(limit: float) -> int:
    """The decoded WAV's most bytes: `limit` seconds of 16-bit PCM at 48 kHz stereo, and its
    header."""
    return int(limit * MAX_RATE_HZ * MAX_CHANNELS * 2) + 4096


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


def _without_dc(mono: AudioSegment) -> AudioSegment:
    """The take's DC offset over DC_OFFSET_MAX subtracted: the mean, not a high-pass filter
    (which starts from zero: a spike at the first sample that the trim took for the first
    word, keeping the silence before it). audioop.add saturates; bias would wrap a peak."""
    offset = audioop.avg(mono.raw_data, 2)
    if abs(offset) <= DC_OFFSET_MAX * 32768:
        return mono
    shift = (-offset).to_bytes(2, "little", signed=True) * (len(mono.raw_data) // 2)
    return _mono(mono, audioop.add(mono.raw_data, shift, 2))


def _mono(like: AudioSegment, raw: bytes) -> AudioSegment:
    return AudioSegment(data=raw, sample_width=2, frame_rate=like.frame_rate, channels=1)


def _powers(seg: AudioSegment, ms: int) -> list[float]:
    """Mean square (full scale = 1) of each whole `ms` chunk of a 16-bit mono clip."""
    step = seg.frame_rate * ms // 1000 * 2
    data = seg.raw_data
    return [(audioop.rms(data[i:i + step], 2) / 32768) ** 2
            for i in range(0, len(data) - step + 1, step)]


def _db(power: float) -> float:
    return 10 * math.log10(power) if power > 0 else FLOOR_DB


def _percentile(levels: list[float], pct: float) -> float:
    ordered = sorted(levels)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] if ordered else FLOOR_DB


def _windows(chunks: list[float]) -> list[float]:
    """The level of the 50 ms window starting at each 10 ms chunk (shorter at the end)."""
    return [_db(sum(chunks[i:i + 5]) / len(chunks[i:i + 5])) for i in range(len(chunks))]


def _loud_level(windows: list[float]) -> float:
    """The level half a second of the clip exceeds (a quarter of a short clip): one click is
    never the clip's loudness, and one short word in a long room tone still is."""
    ordered = sorted(windows, reverse=True)
    return ordered[min(10, max(1, len(ordered) // 4)) - 1] if ordered else FLOOR_DB


def _check_mix(key: str, seg: AudioSegment, what: str) -> None:
    """A stereo take whose channels cancel (one wired or exported polarity-inverted) mixes to
    noise or nothing; compared at the take's own rate (the resampling's low-pass plays no part)
    and mixed as ffmpeg's -ac 1 does, half of each."""
    if seg.channels != 2:
        return
    louder = max(ch.dBFS for ch in seg.split_to_mono())  # -inf both: silent, said below
    mixed = _mono(seg, audioop.tomono(seg.raw_data, 2, 0.5, 0.5))
    if louder - mixed.dBFS > CONVERSION["max_mix_drop_db"]:
        raise PromptError(f"prompt {key!r}: {what}'s channels cancel out when mixed to mono "
                          "(one is polarity-inverted): export it as mono from one channel, "
                          "or record it again")


def _check_audible(key: str, mono: AudioSegment, what: str, chunks: list[float]) -> None:
    """Silent, or nothing rising above the background: a muted microphone's noise floor, a
    wrong input's hum. Either would be amplified into a loud hiss."""
    if mono.max_dBFS < SILENT_PEAK_DBFS:
        raise PromptError(f"prompt {key!r}: {what} is silent (nothing in it reaches "
                          f"{SILENT_PEAK_DBFS:g} dBFS): check that the microphone is on and not "
                          "muted, then record it again")
    windows = _windows(chunks)[::5]  # 50 ms, end to end
    if len(windows) < CONVERSION["min_dynamics_windows"]:
        return
    if _loud_level(windows) - _percentile(windows, 10) < CONVERSION["min_dynamics_db"]:
        raise PromptError(f"prompt {key!r}: {what} holds no speech, only noise (its level "
                          "never rises above the background): check the microphone (muted? "
                          "the right input?) and record it again")


def _first_sound(chunks: list[float], threshold: float) -> int:
    """Index of the first 10 ms chunk above `threshold` whose 50 ms window is too: a lone
    louder chunk of room tone does not end the silence, a word's onset does."""
    windows = _windows(chunks)
    for i, power in enumerate(chunks):
        if _db(power) > threshold and windows[i] > threshold:
            return i
    return len(chunks)


def _trim(key: str, mono: AudioSegment, what: str, chunks: list[float]) -> AudioSegment:
    """Leading and trailing silence or room tone cut, a short pad kept at each end."""
    floor = _percentile([_db(p) for p in chunks], 10)
    room_tone = speech_level(mono) - floor >= CONVERSION["room_tone_below_speech_db"]
    floor_rule = floor + CONVERSION["trim_above_floor_db"] if room_tone else FLOOR_DB
    threshold = max(mono.max_dBFS - CONVERSION["trim_below_peak_db"], floor_rule)
    start = _first_sound(chunks, threshold) * 10
    end = len(mono) - _first_sound(_powers(mono.reverse(), 10), threshold) * 10
    if end - start < CONVERSION["min_audible_ms"]:
        raise PromptError(f"prompt {key!r}: {what} is silent after trimming silence: "
                          "record or write it again")
    if floor_rule < threshold:  # digital silence or a quiet one: nothing audible cut
        pad = CONVERSION["keep_silence_ms"]
        return mono[max(0, start - pad):min(len(mono), end + pad)]
    pad, fade = CONVERSION["keep_room_tone_ms"], CONVERSION["fade_ms"]
    kept = mono[max(0, start - pad):min(len(mono), end + pad)]
    return kept.fade_in(fade).fade_out(fade)


def speech_level(mono: AudioSegment) -> float:
    """dBFS of the speech: energy mean of the 50 ms windows within 20 dB of the clip's loud
    level and 6 dB above its background (pauses and room tone are not speech), each counted
    at most 6 dB above that loud level (a click's window would outweigh the words)."""
    levels = [_db(p) for p in _powers(mono, 50)]
    loud = _loud_level(levels)
    gate = min(max(loud - 20.0, _percentile(levels, 10) + 6.0), loud)
    voiced = [10 ** (min(level, loud + 6.0) / 10) for level in levels if level >= gate]
    return _db(sum(voiced) / len(voiced)) if voiced else FLOOR_DB


def _limited(mono: AudioSegment, gain_db: float) -> AudioSegment:
    """`mono` amplified by gain_db with its peaks held at CONVERSION["peak_dbfs"]: per 1 ms
    block the gain a peak allows, its minimum over +-limiter_ms then averaged over +-limiter_ms
    (so never above what any block allows, and changing smoothly: no clipping, no clicks)."""
    gain = 10 ** (gain_db / 20)
    ceiling = 32767 * 10 ** (CONVERSION["peak_dbfs"] / 20)
    step = mono.frame_rate // 1000 * 2
    data = mono.raw_data
    blocks = [data[i:i + step] for i in range(0, len(data), step)]
    allowed = [min(gain, ceiling / peak) if (peak := audioop.max(b, 2)) else gain
               for b in blocks]
    if min(allowed, default=gain) >= gain:
        return _mono(mono, audioop.mul(data, 2, gain))
    w = CONVERSION["limiter_ms"]
    held = [min(allowed[max(0, i - w):i + w + 1]) for i in range(len(allowed))]
    smooth = [sum(held[max(0, i - w):i + w + 1]) / len(held[max(0, i - w):i + w + 1])
              for i in range(len(held))]
    return _mono(mono, b"".join(audioop.mul(b, 2, g) for b, g in zip(blocks, smooth)))


def convert(key: str, data: bytes, what: str, max_s: float) -> AudioSegment:
    """Decode, check, resample, trim and level one clip (raises PromptError naming key)."""
    seg = decode(key, data, what, max_s)
    if len(seg) == 0:
        raise PromptError(f"prompt {key!r}: {what} holds no audio (nothing after its header): "
                          f"record it again, or {FORMATS_HINT}")
    ratio = _clipped_ratio(seg)
    if ratio > CLIPPED_RATIO:
        raise PromptError(f"prompt {key!r}: {what} is clipped ({ratio:.1%} of samples at full "
                          "scale): record it again at a lower input level")
    _check_mix(key, seg, what)
    mono = _without_dc(_resample(seg))
    chunks = _powers(mono, 10)
    _check_audible(key, mono, what, chunks)
    mono = _trim(key, mono, what, chunks)
    return _limited(mono, CONVERSION["speech_dbfs"] - speech_level(mono))
