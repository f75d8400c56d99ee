"""A take is untrusted input (the console's upload): what a review found (2026-12-05), each
reproduced first.

- ffmpeg probes the content, so a text file named take.wav holding an HLS playlist was read as
  one: the "recording" decoded whichever file the playlist named, another campaign's prompt
  included, and was built into this campaign's;
- a 1.5 MB FLAC of 8 channels at 384 kHz decoded to ~1 GB of PCM under the duration limit
  (1.7 GB of memory for one upload, 860 MB written to /tmp): a take is now decoded at 48 kHz
  at most, its output capped at the length allowed in 48 kHz stereo.
"""
from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import pytest

from ivr.errors import PromptError
from ivr.prompts import decode as decode_mod
from ivr.prompts.decode import decode
from test_prompt_build import espeak_wav, ffmpeg

SPEECH = "Bonjour, votez pour nous dimanche prochain."


@pytest.mark.parametrize("args", [
    ["-c:a", "pcm_s16le", "-f", "wav"], ["-c:a", "libmp3lame", "-f", "mp3"],
    ["-c:a", "aac", "-f", "ipod"], ["-c:a", "libvorbis", "-f", "ogg"],
    ["-c:a", "flac", "-f", "flac"], ["-c:a", "libopus", "-f", "ogg"],
    ["-c:a", "pcm_s24be", "-f", "aiff"], ["-c:a", "alac", "-f", "ipod"],
    ["-c:a", "pcm_f32le", "-f", "w64"]])
def test_the_formats_a_take_may_be_in_still_decode(args: list[str]) -> None:
    seg = decode("message", ffmpeg(espeak_wav(SPEECH), *args), "take", 60)
    assert 2000 < len(seg) < 6000  # the sentence, about 3 s


@pytest.mark.parametrize("container", ["#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\n{}\n"
                                       "#EXT-X-ENDLIST\n", "ffconcat version 1.0\nfile '{}'\n"])
# (concat refuses an absolute path by its own safe mode; the whitelist refuses it first)
def test_a_playlist_named_wav_cannot_read_another_file(tmp_path: Path, container: str) -> None:
    other = tmp_path / "campaign-a" / "message.mp3"  # another campaign's take, on this server
    other.parent.mkdir()
    other.write_bytes(ffmpeg(espeak_wav(SPEECH), "-c:a", "libmp3lame", "-f", "mp3"))
    assert len(decode("message", other.read_bytes(), "message.mp3", 60)) > 2000
    with pytest.raises(PromptError, match="prompt 'message': ffmpeg cannot decode take.wav"):
        decode("message", container.format(other).encode(), "take.wav", 60)


def test_a_take_is_decoded_at_48_khz_at_most() -> None:
    wide = ffmpeg(espeak_wav(SPEECH), "-af", "pan=7.1|" + "|".join(f"c{i}=c0" for i in range(8)),
                  "-ar", "384000", "-c:a", "flac", "-f", "flac")
    seg = decode("message", wide, "take.m4a", 1)
    assert (seg.channels, seg.frame_rate) == (8, 48000) and 2000 < len(seg) < 6000
    studio = ffmpeg(espeak_wav(SPEECH), "-ac", "2", "-ar", "96000", "-c:a", "flac", "-f", "flac")
    assert decode("message", studio, "take.flac", 1).frame_rate == 48000  # resampled, kept
    plain = ffmpeg(espeak_wav(SPEECH), "-ar", "22050", "-c:a", "pcm_s16le", "-f", "wav")
    assert decode("message", plain, "take.wav", 1).frame_rate == 22050  # untouched
    # two channels whose mask is not plain stereo (left and centre) decode as they are
    assert decode("message", _left_and_centre(espeak_wav(SPEECH)), "take.wav", 1).channels == 2


def _left_and_centre(mono_wav: bytes) -> bytes:
    """The mono WAV as two channels in WAVE_FORMAT_EXTENSIBLE whose mask is FL|FC (what some
    recorders write): a layout ffmpeg's own filters cannot even produce."""
    with wave.open(io.BytesIO(mono_wav)) as w:
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
    pcm = b"".join(frames[i:i + 2] * 2 for i in range(0, len(frames), 2))
    fmt = struct.pack("<HHIIHHHHI16s", 0xFFFE, 2, rate, rate * 4, 4, 16, 22, 16, 0x1 | 0x4,
                      bytes.fromhex("0100000000001000800000aa00389b71"))
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + \
        struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_what_still_overflows_the_output_cap_is_refused_in_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_mod, "_output_cap", lambda limit: 20_000)
    with pytest.raises(PromptError) as exc:
        decode("message", ffmpeg(espeak_wav(SPEECH), "-c:a", "flac", "-f", "flac"), "take.flac",
               60)
    msg = str(exc.value)
    assert msg.startswith("prompt 'message': take.flac decodes to more than 0 MB")
    assert msg.endswith("mono or stereo at 48 kHz or less") and "\n" not in msg


def test_a_format_a_take_may_not_be_in_is_named() -> None:
    with pytest.raises(PromptError, match="its format, hls, is not one a take may be in"):
        decode("message", b"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\n/etc/hostname\n"
               b"#EXT-X-ENDLIST\n", "take.wav", 60)
