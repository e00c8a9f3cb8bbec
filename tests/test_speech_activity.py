"""The voice-activity segmenter without torch (`inference.speech_activity`) against silero-vad's own.

- The rules: `speech_spans` gives what silero-vad's `get_speech_timestamps_from_probs` gives for
  the same frame probabilities, on random sequences made to hit every rule (pauses that end a
  segment and pauses that do not, the cut of an over-long segment at its longest pause or at the
  current frame, padding into a short gap), and on a real recording's probabilities.
- The detector: our ONNX frames give silero-vad's ONNX wrapper's probabilities, and on recordings
  made of demo clips with silences the segments equal, to within one 32 ms frame, those of
  silero-vad's `get_speech_timestamps` with its torch model (the timelines' old path), across
  settings. Torch and silero-vad's own code appear here only, never in the product.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from ser_lightning.inference.speech_activity import (
    VAD_FRAME,
    find_speech,
    silero_model_path,
    speech_probabilities,
    speech_spans,
)
from ser_lightning.inference.timeline import TimelineSettings, speech_segments

from .test_serving import TIMELINE_EMOTIONS, long_recording

RATE = 16000


@pytest.fixture(scope="module")
def recordings(small_demo_root, tmp_path_factory) -> dict[str, np.ndarray]:
    """Two 16 kHz recordings of six demo clips of six emotions (Actor 11): one with a second of
    silence around each clip (the timeline tests' recording), and one with the clips 0.2 s apart
    (about 10 s of speech with short pauses, for the cut of over-long segments)."""
    folder = tmp_path_factory.mktemp("vad")
    path, _ = long_recording(SimpleNamespace(root=small_demo_root), folder / "talk.wav")
    spaced, rate = sf.read(path, dtype="float32")
    assert rate == RATE
    clips = [
        sf.read(small_demo_root / f"Actor_11/03-01-{e}-01-01-01-11.wav", dtype="float32")[0]
        for e in TIMELINE_EMOTIONS
    ]
    pause = np.zeros(int(0.2 * RATE), np.float32)
    close = np.concatenate([pause] + [part for clip in clips for part in (clip, pause)])
    return {"spaced": spaced, "close": close}


@pytest.fixture(scope="module")
def torch_vad():
    """silero-vad's TorchScript model, the one the timelines ran on torch before (loaded once)."""
    from silero_vad import load_silero_vad

    return load_silero_vad(onnx=False)


def silero_rules(probabilities: np.ndarray, num_samples: int, **rules) -> list[tuple[int, int]]:
    from silero_vad import get_speech_timestamps_from_probs

    found = get_speech_timestamps_from_probs(
        [float(p) for p in probabilities],
        sampling_rate=RATE,
        threshold=rules["threshold"],
        min_speech_duration_ms=rules["min_speech_ms"],
        min_silence_duration_ms=rules["min_silence_ms"],
        speech_pad_ms=rules["speech_pad_ms"],
        max_speech_duration_s=rules["max_segment_s"],
        audio_length_samples=num_samples,
    )
    return [(int(s["start"]), int(s["end"])) for s in found]


def random_probabilities(rng: np.random.Generator) -> np.ndarray:
    """Runs of speech-like and pause-like frames of random lengths, some near the thresholds."""
    runs, total = [], rng.integers(20, 700)
    while sum(len(r) for r in runs) < total:
        length = int(rng.choice([1, 2, 3, 5, 8, 12, 20, 40, 120]))
        low, high = [(0.0, 0.2), (0.3, 0.5), (0.45, 0.55), (0.5, 1.0), (0.8, 1.0)][rng.integers(5)]
        runs.append(rng.uniform(low, high, length))
    return np.concatenate(runs)[:total].astype(np.float32)


def test_the_rules_equal_silero_vads_on_random_probabilities():
    rng = np.random.default_rng(7)
    cuts = 0
    for _ in range(400):
        probabilities = random_probabilities(rng)
        num_samples = len(probabilities) * VAD_FRAME - int(rng.integers(0, VAD_FRAME))
        rules = {
            "threshold": float(rng.choice([0.3, 0.5, 0.6])),
            "min_speech_ms": int(rng.choice([0, 100, 250, 600])),
            "min_silence_ms": int(rng.choice([0, 50, 100, 300, 700])),
            "speech_pad_ms": int(rng.choice([0, 30, 100, 250])),
            "max_segment_s": float(rng.choice([0.5, 1.0, 2.5, 10.0, float("inf")])),
        }
        ours = speech_spans(probabilities, num_samples, **rules)
        assert ours == silero_rules(probabilities, num_samples, **rules), rules
        cuts += ours != speech_spans(probabilities, num_samples, **{**rules, "max_segment_s": float("inf")})
    assert cuts > 50  # the cut of over-long speech changed the segments often enough to test it


@pytest.mark.parametrize(
    "settings",
    [
        TimelineSettings(),  # predict's and serve's defaults
        TimelineSettings(threshold=0.3, min_silence_ms=100, speech_pad_ms=0),
        TimelineSettings(threshold=0.7, min_speech_ms=500, speech_pad_ms=100),
        TimelineSettings(
            min_silence_ms=1000, max_segment_s=5.0
        ),  # the close clips: cut at their longest pauses
        TimelineSettings(min_silence_ms=100, speech_pad_ms=300, max_segment_s=1.0),
    ],
    ids=["defaults", "low-threshold", "high-threshold", "max-5s-at-pauses", "max-1s-wide-pad"],
)
def test_segments_equal_get_speech_timestamps_on_torch_within_a_frame(
    recordings, torch_vad, settings, one_torch_thread
):
    import torch
    from silero_vad import get_speech_timestamps

    found_any = False
    for name, wave in recordings.items():
        ours = speech_segments(wave, RATE, settings)
        theirs = get_speech_timestamps(
            torch.from_numpy(wave),
            torch_vad,
            sampling_rate=RATE,
            threshold=settings.threshold,
            min_speech_duration_ms=settings.min_speech_ms,
            min_silence_duration_ms=settings.min_silence_ms,
            speech_pad_ms=settings.speech_pad_ms,
            max_speech_duration_s=settings.max_segment_s,
        )
        assert len(ours) == len(theirs), (name, ours, theirs)
        for (start, end), other in zip(ours, theirs, strict=True):
            assert abs(start - other["start"]) <= VAD_FRAME and abs(end - other["end"]) <= VAD_FRAME, name
        found_any |= len(ours) >= 2
    assert found_any


def test_frame_probabilities_equal_silero_vads_onnx_wrapper(recordings):
    import torch
    from silero_vad.utils_vad import OnnxWrapper

    wave = recordings["spaced"][: 200 * VAD_FRAME + 100]  # a partial last frame, padded with zeros
    wrapper = OnnxWrapper(str(silero_model_path()), force_onnx_cpu=True)
    padded = np.zeros(201 * VAD_FRAME, np.float32)
    padded[: len(wave)] = wave
    expected = [wrapper(torch.from_numpy(f), RATE).item() for f in padded.reshape(-1, VAD_FRAME)]
    ours = speech_probabilities(wave)
    assert ours.shape == (201,) and ours.max() > 0.5 > ours.min()
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    # the rules on these real probabilities, too
    rules = {
        "threshold": 0.5,
        "min_speech_ms": 250,
        "min_silence_ms": 300,
        "speech_pad_ms": 30,
        "max_segment_s": 1.5,
    }
    assert speech_spans(ours, len(wave), **rules) == silero_rules(ours, len(wave), **rules) != []


def test_other_rates_are_detected_at_16_khz_and_given_in_their_own_samples(recordings):
    import soxr

    wave = recordings["spaced"]
    at_16k = find_speech(wave, RATE, min_silence_ms=300)
    at_48k = find_speech(soxr.resample(wave, RATE, 48000).astype(np.float32), 48000, min_silence_ms=300)
    assert len(at_48k) == len(at_16k) >= 2
    for (a, b), (c, d) in zip(
        at_16k, at_48k, strict=True
    ):  # the 48 kHz copy resampled back: a frame's leeway
        assert abs(c - 3 * a) <= 3 * VAD_FRAME and abs(d - 3 * b) <= 3 * VAD_FRAME
    assert find_speech(np.zeros(0, np.float32), RATE) == []
