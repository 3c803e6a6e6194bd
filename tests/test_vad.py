"""Silero voice activity detection as a function: speech that `espeak-ng` says, placed between
known stretches of silence and noise, found within 100 ms; other rates and channel counts; bad
audio refused clearly."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
import pytest
import requests
from scipy.signal import resample_poly

SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Spindle serves models from WebAssembly."]


def read_wav(data: bytes) -> tuple[int, np.ndarray]:
    with wave.open(io.BytesIO(data)) as w:
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768


def wav(rate: int, samples: np.ndarray, sample_width: int = 2) -> bytes:
    """`samples` (frames × channels, or mono) as a PCM WAV file."""
    samples = samples.reshape(len(samples), -1) if samples.ndim == 2 else samples.reshape(-1, 1)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(sample_width)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def speech_extent(x: np.ndarray, rate: int) -> tuple[float, float]:
    """Where speech is in `x`: the first and last 10 ms frame within 40 dB of its loudest."""
    hop = rate // 100
    rms = np.sqrt([np.mean(x[i:i + hop] ** 2) for i in range(0, len(x) - hop, hop)])
    loud = np.nonzero(rms > rms.max() / 100)[0]
    return loud[0] * hop / rate, (loud[-1] + 1) * hop / rate


@pytest.fixture(scope="module")
def scene():
    """1 s silence, a sentence, 1.5 s of noise, a sentence, 1 s silence, at espeak-ng's own rate
    (22,050 Hz); and where the speech is, in seconds."""
    assert shutil.which("espeak-ng"), "espeak-ng is missing: scripts/setup --python installs it"
    rng = np.random.default_rng(0)
    spoken = [read_wav(subprocess.run(["espeak-ng", "--stdout", s], capture_output=True, check=True).stdout) for s in SENTENCES]
    rate = spoken[0][0]
    parts = [np.zeros(rate, np.float32), spoken[0][1], rng.normal(0, 0.01, int(1.5 * rate)).astype(np.float32),
             spoken[1][1], np.zeros(rate, np.float32)]
    truth, at = [], 0.0
    for i, part in enumerate(parts):
        if i in (1, 3):
            start, end = speech_extent(part, rate)
            truth.append((at + start, at + end))
        at += len(part) / rate
    return rate, np.concatenate(parts), truth


def segments(spindle, body: bytes, query: str = "speech_pad_ms=0") -> dict:
    r = requests.post(f"{spindle.url}/models/vad/segments?{query}", data=body, headers={"content-type": "audio/wav"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def assert_found(answer: dict, truth):
    found = [(s["start"], s["end"]) for s in answer["segments"]]
    assert len(found) == len(truth), (found, truth)
    for (start, end), (true_start, true_end) in zip(found, truth):
        assert abs(start - true_start) <= 0.1 and abs(end - true_end) <= 0.1, (found, truth)


@pytest.mark.parametrize("rate,channels", [(16_000, 1), (22_050, 1), (8_000, 1), (44_100, 2)])
def test_speech_is_found_where_it_was_said(spindle, scene, rate, channels):
    source_rate, audio, truth = scene
    resampled = audio if rate == source_rate else resample_poly(audio, rate, source_rate).astype(np.float32)
    if channels == 2:
        resampled = np.stack([resampled, resampled * 0.5], axis=1)
    answer = segments(spindle, wav(rate, resampled))
    assert answer["sample_rate"] == rate and answer["channels"] == channels
    assert answer["resampled"] == (rate != 16_000)
    assert abs(answer["duration"] - len(audio) / source_rate) < 0.01
    assert_found(answer, truth)


def test_silence_and_noise_alone_hold_no_speech_and_probabilities_can_be_had(spindle):
    rng = np.random.default_rng(1)
    quiet = segments(spindle, wav(16_000, np.zeros(32_000, np.float32)), "probabilities=true")
    assert quiet["segments"] == [] and len(quiet["probabilities"]) == 32_000 // 512 + 1
    assert max(quiet["probabilities"]) < 0.5
    noise = segments(spindle, wav(16_000, rng.normal(0, 0.01, 48_000).astype(np.float32)))
    assert noise["segments"] == []


def test_padding_and_thresholds_are_the_callers(spindle, scene):
    rate, audio, truth = scene
    body = wav(rate, audio)
    padded = segments(spindle, body, "speech_pad_ms=200")["segments"]
    tight = segments(spindle, body, "speech_pad_ms=0")["segments"]
    assert padded[0]["start"] == pytest.approx(tight[0]["start"] - 0.2, abs=0.002)
    merged = segments(spindle, body, "speech_pad_ms=0&min_silence_ms=5000")["segments"]
    assert len(merged) == 1 and merged[0]["start"] == tight[0]["start"]


def test_bad_audio_and_parameters_get_clear_errors(spindle):
    url = f"{spindle.url}/models/vad/segments"
    truncated = wav(16_000, np.zeros(1600, np.float32))[:-101]
    for body, query, text in [
        (b"", "", "the body is empty"),
        (b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk", "", "not a readable WAV file"),
        (bytes(range(256)) * 8, "", "not a readable WAV file"),
        (wav(4_000, np.zeros(4000, np.float32)), "", "4000 Hz is not supported"),
        (wav(96_000, np.zeros(9600, np.float32)), "", "96000 Hz is not supported"),
        (truncated, "", "cut short"),
        (wav(16_000, np.zeros(0, np.float32)), "", "holds no audio"),
        (wav(16_000, np.zeros((160, 17), np.float32)), "", "17 channels; 1 to 16"),
        (wav(16_000, np.zeros(1600, np.float32)), "threshold=2", "threshold must be a number from 0.01 to 0.99"),
        (wav(16_000, np.zeros(1600, np.float32)), "loudness=3", "unknown parameter 'loudness'"),
    ]:
        r = requests.post(f"{url}?{query}", data=body, timeout=30)
        assert r.status_code == 400, (text, r.status_code, r.text)
        assert text in r.json()["error"], (text, r.json())
    assert requests.get(url, timeout=30).status_code == 405
    assert requests.get(f"{spindle.url}/models/vad", timeout=30).json()["name"] == "silero-vad"
    assert requests.post(f"{spindle.url}/models/vad/segments", data=wav(16_000, np.zeros(1600, np.float32)),
                         timeout=30).status_code == 200, "the function serves on after bad requests"
