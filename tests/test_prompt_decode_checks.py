"""Recordings the prompt conversion (ivr/prompts/decode.py) refused or levelled wrongly, each
reproduced first (hunt-audio, 2026-12-03):

- a recording of only noise (a muted microphone's floor just above the -50 dBFS gate, a loud
  hiss, a hum) was built, amplified up to 46 dB;
- a stereo take with one channel polarity-inverted passed the silence check (made on the
  stereo) and cancelled to noise in the mono mix; a fully cancelling one was "silent";
- the gain came from the loudest sample: one pop left the speech 12-15 dB quieter than every
  other prompt (and espeak-ng's prompts themselves spread over 5 dB);
- room tone was never trimmed: 8 s of it before and 10 s after the words were all played;
- a WAV holding only its header was "silent", which said nothing of what to fix.

Every clip here is made at test time by espeak-ng, ffmpeg or pydub (no binary fixture).
"""
from __future__ import annotations

import io
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from pydub import AudioSegment
from pydub.generators import Sine

from ivr.errors import PromptError
from ivr.prompts.build import build_prompts
from ivr.prompts.decode import convert
from test_prompt_build import espeak_wav, make_cfg, write_source

SPEECH = "Ce message vous est adressé par Marie Dupont. Écrivez au 12 rue de la République."
CEILING = -3.0     # the built prompts' peak ceiling (CONVERSION["peak_dbfs"])
TARGET = -20.0     # the speech level every prompt is brought to (CONVERSION["speech_dbfs"])


def _lavfi(*args: str) -> bytes:
    """A WAV made by ffmpeg from the given inputs and filters (through a real file)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", *args, str(out)],
                       check=True, capture_output=True)
        return out.read_bytes()


def _with_voice(speech: bytes, *args: str) -> bytes:
    """ffmpeg on the speech (input 0, as a file: lavfi inputs may follow) and `args`."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "speech.wav"
        src.write_bytes(speech)
        return _lavfi("-i", str(src), *args)


def _convert(name: str, data: bytes) -> AudioSegment:
    return convert("message", data, f"audio file {name}", 120)


def _samples(seg: AudioSegment) -> np.ndarray:
    return np.array(seg.get_array_of_samples(), dtype=float) / 32768


def _speech_dbfs(seg: AudioSegment) -> float:
    """The speech level measured apart from the code under test: energy mean of the 50 ms
    windows within 20 dB of the 10th loudest (of a short clip the quarter-loudest) and 6 dB
    above the 10th percentile (the background), none counted above 6 dB over that one."""
    x = _samples(seg)
    n = seg.frame_rate // 20
    power = np.array([np.mean(x[i:i + n] ** 2) for i in range(0, len(x) - n + 1, n)])
    top = np.sort(power)[::-1][min(10, max(1, len(power) // 4)) - 1]
    background = np.sort(power)[int(len(power) * 0.1)]
    voiced = np.minimum(power[power >= max(top / 100, background * 4)], top * 4)
    return float(10 * np.log10(np.mean(voiced)))


def _refusal(tmp_path: Path, name: str, data: bytes) -> str:
    """The one line `ivr prompts build` refuses the recording with (nothing is built)."""
    write_source(tmp_path, name, data)
    with pytest.raises(PromptError) as exc:
        build_prompts(make_cfg(tmp_path, {"message": {"file": name, "transcript": "Votez."}}))
    assert not (tmp_path / "build").exists()
    msg = str(exc.value)
    assert msg.startswith("prompt 'message': audio file ") and name in msg and "\n" not in msg
    return msg


@pytest.mark.parametrize("name,args", [
    # the hunter's muted mic: pink noise only, peak -49.7 dBFS, just above the silence gate
    ("mutedmic.wav", ["-f", "lavfi", "-i", "anoisesrc=a=0.004:d=15:c=pink", "-ar", "44100"]),
    ("wrong-input.wav", ["-f", "lavfi", "-i", "anoisesrc=a=0.008:d=8:c=pink", "-ar", "44100"]),
    ("hiss.wav", ["-f", "lavfi", "-i", "anoisesrc=a=0.1:d=6:c=white", "-ar", "22050"]),
    ("hum.wav", ["-f", "lavfi", "-i", "sine=frequency=50:duration=6", "-af", "volume=-6dB"]),
])
def test_a_recording_of_only_noise_is_refused_naming_the_microphone(
        tmp_path: Path, name: str, args: list[str]) -> None:
    msg = _refusal(tmp_path, name, _lavfi(*args))
    assert "microphone" in msg and "record it again" in msg
    assert "holds no speech, only noise" in msg or "is silent" in msg


PHASE = ("[0:a]asplit[v1][v2];[v2]volume=-1[vi];{left};{right};"
         "[l][r]join=inputs=2:channel_layout=stereo")


@pytest.mark.parametrize("name,extra,left,right", [
    # each channel with its own ordinary noise floor: the mono mix is that noise alone
    ("phase_noisy.wav", ["-f", "lavfi", "-i", "anoisesrc=a=0.003:d=6:c=pink:r=22050",
                         "-f", "lavfi", "-i", "anoisesrc=a=0.003:d=6:c=pink:r=22050:seed=7"],
     "[v1][1:a]amix=inputs=2:normalize=0[l]", "[vi][2:a]amix=inputs=2:normalize=0[r]"),
    # cancelling exactly: was "silent after trimming silence: record or write it again"
    ("phase.wav", [], "[v1]anull[l]", "[vi]anull[r]"),
])
def test_a_stereo_take_whose_channels_cancel_is_refused_saying_export_it_as_mono(
        tmp_path: Path, name: str, extra: list[str], left: str, right: str) -> None:
    data = _with_voice(espeak_wav(SPEECH), *extra, "-filter_complex",
                       PHASE.format(left=left, right=right), "-t", "5.9")
    msg = _refusal(tmp_path, name, data)
    assert "channels cancel out when mixed to mono" in msg and "export it as mono" in msg


def test_a_wav_holding_only_its_header_says_what_to_do(tmp_path: Path) -> None:
    header = espeak_wav(SPEECH)[:44]
    msg = _refusal(tmp_path, "hdronly.wav", header)
    assert "holds no audio" in msg and "record it again" in msg


def _espeak(voice: list[str], text: str) -> bytes:
    return subprocess.run(["espeak-ng", *voice, "--stdout", text], check=True,
                          capture_output=True).stdout


VOICES = [["-v", "fr"], ["-v", "fr+f3"], ["-v", "fr", "-s", "140", "-p", "30"]]
TEXTS = ["Au revoir.", "Choix invalide.", "Vous ne serez plus appelé.", SPEECH,
         "Quel moment ? 1 matin, 2 après-midi, 3 soir."]


@pytest.mark.parametrize("voice", VOICES, ids=lambda v: " ".join(v))
def test_espeak_renders_all_come_out_at_the_same_speech_level_under_the_ceiling(
        voice: list[str]) -> None:
    # Before: peak-normalised, so their speech spread from -16.4 to -21.3 dBFS.
    for text in TEXTS:
        seg = _convert("tts.wav", _espeak(voice, text))
        assert _speech_dbfs(seg) == pytest.approx(TARGET, abs=1.0), text
        assert seg.max_dBFS <= CEILING + 0.01, text


def _room_tone_voice(speech: bytes) -> bytes:
    """The speech (peak -5 dBFS) with quiet pink room tone (about -60 dBFS RMS) mixed in."""
    return _with_voice(speech, "-f", "lavfi", "-i", "anoisesrc=a=0.005:d=10:c=pink:r=22050",
                       "-filter_complex", "[0:a]apad=pad_dur=1[v];"
                       "[v][1:a]amix=inputs=2:normalize=0:duration=shortest")


def _stereo(speech: bytes, right: str) -> bytes:
    return _with_voice(speech, "-filter_complex",
                       f"[0:a]asplit[l][r0];[r0]{right}[r];[l][r]join=inputs=2:"
                       "channel_layout=stereo")


@pytest.mark.parametrize("kind", ["room tone", "stereo", "stereo, one channel silent",
                                  "mp3 44.1 kHz"])
def test_real_takes_of_speech_pass_at_the_same_level(kind: str) -> None:
    speech = espeak_wav(SPEECH)
    data = {"room tone": lambda: _room_tone_voice(speech),
            "stereo": lambda: _stereo(speech, "anull"),
            "stereo, one channel silent": lambda: _stereo(speech, "volume=0"),
            "mp3 44.1 kHz": lambda: _with_voice(speech, "-ar", "44100", "-f", "mp3")}[kind]()
    seg = _convert("take.wav", data)
    assert _speech_dbfs(seg) == pytest.approx(TARGET, abs=1.0)
    assert seg.max_dBFS <= CEILING + 0.01


def _with_pop(speech: bytes, at_ms: int) -> bytes:
    """The hunter's take: speech 15 dB lower (peak -20 dBFS), one 15 ms 200 Hz pop at -1."""
    voice = AudioSegment.from_file(io.BytesIO(speech), format="wav").apply_gain(-15)
    pop = Sine(200, sample_rate=voice.frame_rate).to_audio_segment(duration=15, volume=-1.0)
    buf = io.BytesIO()
    (voice[:at_ms] + pop.fade_out(10) + voice[at_ms:]).export(buf, format="wav")
    return buf.getvalue()


@pytest.mark.parametrize("at_ms", [0, 2000])
def test_one_pop_no_longer_makes_the_speech_quieter_than_the_other_prompts(at_ms: int) -> None:
    speech = espeak_wav(SPEECH)
    clean = _speech_dbfs(_convert("clean.wav", speech))
    popped = _convert("pop.wav", _with_pop(speech, at_ms))
    # Before: 12 dB quieter (the pop set the gain); now the same speech level ...
    assert _speech_dbfs(popped) == pytest.approx(clean, abs=1.0)
    # ... and the pop is held at the ceiling, not clipped.
    assert popped.max_dBFS <= CEILING + 0.01
    pinned = np.abs(_samples(popped)) >= 0.999
    assert not pinned.any()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


def test_room_tone_before_and_after_the_words_is_trimmed_not_the_words() -> None:
    speech = espeak_wav(SPEECH)
    clean = _convert("clean.wav", speech)
    take = _with_voice(speech, "-f", "lavfi", "-i", "anoisesrc=a=0.005:d=24:c=pink:r=22050",
                       "-filter_complex", "[0:a]adelay=8s:all=1,apad=pad_dur=10[v];"
                       "[v][1:a]amix=inputs=2:normalize=0:duration=shortest")
    built = _convert("roomtone.wav", take)
    # Before: 22.3 s played for 5.6 s of speech.
    assert len(clean) <= len(built) <= len(clean) + 500
    # Every word is there: the clean build lines up with the built take at some offset
    # within the pad kept before the words.
    a, b = _samples(built), _samples(clean)
    best = max(_corr(a[lag:], b) for lag in range(0, 2400, 8))
    assert best > 0.95


def test_a_one_word_take_edited_tight_is_not_called_noise() -> None:
    """'Oui.' cut to its word (as an editor's trim leaves it) has no pause inside: a clip under
    1 s is not judged on its dynamics (before: 'holds no speech, only noise')."""
    word = AudioSegment.from_file(io.BytesIO(espeak_wav("Oui.")), format="wav")
    loud = [i for i, c in enumerate(word[::10]) if c.dBFS > word.max_dBFS - 45]
    tight = word[loud[0] * 10:(loud[-1] + 1) * 10]
    assert len(tight) < 1000
    out = io.BytesIO()
    tight.export(out, format="wav")
    seg = _convert("oui.wav", out.getvalue())
    assert 0 < len(seg) <= len(tight) + 100


def test_a_music_bed_under_the_speech_is_part_of_the_take() -> None:
    """A 3 s jingle, the speech over a bed 18 dB under it, a 3 s outro: the bed is no room
    tone, so nothing of it is trimmed (before: cut to the speech, mid-note, no fade)."""
    speech = AudioSegment.from_file(io.BytesIO(espeak_wav(SPEECH)), format="wav")
    length = len(speech) + 6000
    bed = AudioSegment.from_file(io.BytesIO(_lavfi(
        "-f", "lavfi", "-i", f"aevalsrc=0.2*sin(2*PI*220*t)+0.15*sin(2*PI*330*t):"
        f"s={speech.frame_rate}:d={length / 1000}")), format="wav")
    take = bed.apply_gain(speech.dBFS - 18 - bed.dBFS).overlay(speech, position=3000)
    out = io.BytesIO()
    take.export(out, format="wav")
    seg = _convert("jingle.wav", out.getvalue())
    assert len(seg) >= len(take) - 200


def test_room_tone_cut_is_faded_at_both_ends() -> None:
    """Room tone trimmed: the kept pad fades in and out, no click where the cut falls."""
    seg = _convert("room.wav", _room_tone_voice(espeak_wav(SPEECH)))
    room_head, room_tail = seg[50:150].dBFS, seg[-150:-50].dBFS  # inside the 200 ms pads
    assert seg[:5].dBFS < room_head - 6 and seg[-5:].dBFS < room_tail - 6


@pytest.mark.parametrize("offset", ["0.01", "0.03", "0.1", "-0.1"])
def test_a_take_with_a_dc_offset_passes_and_leaves_it_out(offset: str) -> None:
    """Found in review: a cheap sound card's DC offset (inaudible) raised every window's
    level, the pauses' too, so a take with one of 2 % of full scale or more was refused as
    "only noise: check the microphone"; one under it was built with the offset in it. Then
    (review of that fix) a high-pass filter's spike at the first sample kept the second of
    silence before the words: the take must come out as the same take without its offset."""
    speech = espeak_wav(SPEECH)
    around = "adelay=1000,apad=pad_dur=1,volume=-12dB"  # a second of silence at each end
    clean = _convert("clean.wav", _with_voice(speech, "-af", around, "-f", "wav"))
    seg = _convert("take.wav", _with_voice(speech, "-af", f"{around},dcshift={offset}",
                                           "-f", "wav"))
    assert abs(float(np.mean(_samples(seg)))) < 0.001  # the offset is gone from the prompt
    assert len(seg) == len(clean)  # trimmed as the take without it: no silence kept
    assert _speech_dbfs(seg) == pytest.approx(_speech_dbfs(clean), abs=0.5)
    assert seg.max_dBFS <= CEILING + 0.01
