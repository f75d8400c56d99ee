"""A take is untrusted input (the console's upload): what a review found (2026-12-05), each
reproduced first.

- ffmpeg probes the content, so a text file named take.wav holding an HLS playlist was read as
  one: the "recording" decoded whichever file the playlist named, another campaign's prompt
  included, and was built into this campaign's;
- a 1.5 MB FLAC of 8 channels at 384 kHz decoded to ~1 GB of PCM under the duration limit
  (1.7 GB of memory for one upload, 860 MB written to /tmp).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from ivr.errors import PromptError
from ivr.prompts.decode import decode
from test_prompt_build import espeak_wav, ffmpeg

SPEECH = "Bonjour, votez pour nous dimanche prochain."


@pytest.mark.parametrize("args", [
    ["-c:a", "pcm_s16le", "-f", "wav"], ["-c:a", "libmp3lame", "-f", "mp3"],
    ["-c:a", "aac", "-f", "ipod"], ["-c:a", "libvorbis", "-f", "ogg"],
    ["-c:a", "flac", "-f", "flac"]])
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


def test_a_take_decoding_to_more_than_48_khz_stereo_is_refused_in_one_line() -> None:
    wide = ffmpeg(espeak_wav(SPEECH), "-af", "pan=7.1|" + "|".join(f"c{i}=c0" for i in range(8)),
                  "-ar", "384000", "-c:a", "flac", "-f", "flac")
    with pytest.raises(PromptError) as exc:
        decode("message", wide, "take.m4a", 1)  # 31 s allowed: 5.7 MB of 48 kHz stereo
    msg = str(exc.value)
    assert msg.startswith("prompt 'message': take.m4a decodes to more than 5 MB")
    assert "mono or stereo at 48 kHz or less" in msg and "\n" not in msg
    stereo = ffmpeg(espeak_wav(SPEECH), "-ac", "2", "-ar", "48000", "-c:a", "flac", "-f", "flac")
    assert decode("message", stereo, "take.flac", 1).channels == 2
