"""The corruptions of the robustness report: noise, reverberation, telephone band, codecs and gain.

Each maker returns a corruption function `(clips (N, samples), speakers (N,), rng) -> clips`
(the noises return the noise rows, mixed in by `mix_at_snr`); `reporting.robustness` lists them
as the conditions of a robustness config and scores the test clips under each.

- additive noise at an SNR: `white` Gaussian noise, and `babble` made of other test clips
  (several talkers, other speakers where there are any) summed at equal level. The SNR is the
  ratio of clip power to noise power over the whole clip window;
- reverberation with a synthetic room impulse response (exponentially decaying Gaussian noise
  after a direct path, decaying 60 dB in RT60 seconds);
- telephone band: resampled to 8 kHz, band-passed to 300-3400 Hz, 8-bit mu-law, and back;
- lossy codecs at low bitrate through PyAV (FFmpeg): MP3 (libmp3lame) and Opus (libopus),
  encoded in memory and decoded back, aligned to the original;
- a gain, applied before 16-bit quantisation as a quiet file would hold it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from math import gcd

import numpy as np

from ser_lightning.utils.errors import InvalidSetting

CODECS = {"mp3": ("libmp3lame", "mp3"), "opus": ("libopus", "ogg")}  # codec -> (encoder, container)


def power(x: np.ndarray) -> np.ndarray:
    """Compute the mean power of each row (or of a 1-d signal).

    Returns:
        The mean of the squared samples along the last axis, in float64.
    """
    return np.mean(np.square(x, dtype=np.float64), axis=-1)


def snr_db(clean: np.ndarray, corrupted: np.ndarray) -> np.ndarray:
    """Measure the SNR of each row on the mixed signal.

    Args:
        clean: the clips before corruption, `(N, samples)`.
        corrupted: the same clips corrupted.

    Returns:
        10 log10(P(clean) / P(corrupted - clean)) of each row, in dB.
    """
    return 10.0 * np.log10(power(clean) / np.maximum(power(corrupted - clean), 1e-20))


def mix_at_snr(clips: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """Add noise to each clip at a given SNR.

    Args:
        clips: the clips, `(N, samples)`.
        noise: one noise row per clip, of any level.
        snr: the SNR in dB of each clip over its scaled noise.

    Returns:
        Each clip plus its noise row scaled to `snr` dB below the clip's power, as float32.
    """
    scale = np.sqrt(power(clips) / np.maximum(power(noise), 1e-20) / 10.0 ** (snr / 10.0))
    return (clips + scale[:, None] * noise).astype(np.float32)


def white_noise(clips: np.ndarray, speakers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw white Gaussian noise, one row per clip (its level is set by `mix_at_snr`).

    Returns:
        Standard normal float32 noise shaped like `clips`.
    """
    return rng.standard_normal(clips.shape).astype(np.float32)


def babble_noise(talkers: int) -> Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]:
    """Make a babble-noise generator for the noise conditions.

    Each clip's noise is the sum of `talkers` other test clips, each at equal power, from other
    speakers where possible. The generator raises InvalidSetting on fewer than two clips.

    Args:
        talkers: how many other clips are summed into each clip's noise.

    Returns:
        The noise function `(clips, speakers, rng) -> noise`, one row per clip.
    """

    def make(clips: np.ndarray, speakers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if len(clips) < 2:
            raise InvalidSetting("babble noise needs at least two test clips (it is made of the other clips)")
        level = np.sqrt(np.maximum(power(clips), 1e-20))[:, None]
        normalised = clips / level
        noise = np.zeros_like(clips)
        for i in range(len(clips)):
            others = np.flatnonzero(speakers != speakers[i])
            if len(others) == 0:
                others = np.delete(np.arange(len(clips)), i)
            chosen = rng.choice(others, size=min(talkers, len(others)), replace=False)
            noise[i] = normalised[chosen].sum(axis=0)
        return noise

    return make


def room_impulse_response(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a synthetic room impulse response.

    Args:
        rt60: seconds in which the response decays by 60 dB (also its length).
        sample_rate: samples per second.
        rng: the generator of the noise.

    Returns:
        A direct path, then Gaussian noise decaying by 60 dB in rt60 seconds, scaled to unit energy.
    """
    length = max(2, int(rt60 * sample_rate))
    t = np.arange(length) / sample_rate
    response = rng.standard_normal(length) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 6.9078: -60 dB
    response[0] = 1.0
    return (response / np.sqrt(np.sum(response**2))).astype(np.float64)


def reverb(rt60: float, sample_rate: int) -> Callable:
    """Make the reverberation corruption: each clip convolved with its own synthetic RIR.

    Args:
        rt60: the rooms' RT60 in seconds.
        sample_rate: the clips' sample rate.

    Returns:
        The corruption function `(clips, speakers, rng) -> clips`, cut to the clips' length.
    """

    def make(clips: np.ndarray, speakers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from scipy.signal import fftconvolve

        out = np.empty_like(clips)
        for i, clip in enumerate(clips):
            out[i] = fftconvolve(clip, room_impulse_response(rt60, sample_rate, rng))[: clips.shape[1]]
        return out

    return make


def _resample(x: np.ndarray, source: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    common = gcd(source, target)
    return resample_poly(x, target // common, source // common, axis=-1)


def mu_law(x: np.ndarray, mu: int = 255) -> np.ndarray:
    """Encode and decode a signal in [-1, 1] with 8-bit mu-law (G.711).

    Args:
        x: the signal; values outside [-1, 1] are clipped.
        mu: the compression parameter (255 for 8 bits).

    Returns:
        The signal after the round trip, with mu-law's quantisation error.
    """
    x = np.clip(x, -1.0, 1.0)
    encoded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    quantised = np.round((encoded + 1.0) / 2.0 * mu) / mu * 2.0 - 1.0
    return np.sign(quantised) * ((1.0 + mu) ** np.abs(quantised) - 1.0) / mu


def telephone(sample_rate: int) -> Callable:
    """Make the telephone-band corruption: 8 kHz, 300-3400 Hz band pass, mu-law, and back.

    Args:
        sample_rate: the clips' sample rate, resampled to 8 kHz and back.

    Returns:
        The corruption function `(clips, speakers, rng) -> clips`, keeping the clips' length.
    """

    def make(clips: np.ndarray, speakers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from scipy.signal import butter, sosfiltfilt

        narrow = _resample(clips, sample_rate, 8000)
        band = sosfiltfilt(butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos"), narrow, axis=-1)
        wide = _resample(mu_law(band), 8000, sample_rate)
        return _fit(wide, clips.shape[1]).astype(np.float32)

    return make


def _fit(x: np.ndarray, length: int) -> np.ndarray:
    if x.shape[-1] >= length:
        return x[..., :length]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - x.shape[-1])])


def codec_roundtrip(clip: np.ndarray, sample_rate: int, codec: str, bitrate: int) -> np.ndarray:
    """Encode one clip with `codec` at `bitrate` bit/s in memory and decode it back (PyAV).

    The decoded clip is aligned to the input by the lag (up to 2048 samples) of the largest
    cross-correlation.

    Args:
        clip: a mono clip, `(samples,)`.
        sample_rate: the clip's sample rate.
        codec: a key of `CODECS` (`mp3`, `opus`).
        bitrate: the encoder's bit rate in bit/s.

    Returns:
        The decoded clip, float32, the same length as `clip`.
    """
    import av

    encoder, container = CODECS[codec]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(encoder, rate=sample_rate, layout="mono")
        stream.bit_rate = int(bitrate)
        frame = av.AudioFrame.from_ndarray(
            np.clip(clip, -1.0, 1.0).astype(np.float32)[None], format="flt", layout="mono"
        )
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    chunks = []
    with av.open(io.BytesIO(buffer.getvalue())) as decoded:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for frame in decoded.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    decoded_clip = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    decoded_clip = np.pad(decoded_clip, (0, max(0, len(clip) + 2048 - len(decoded_clip))))
    window = min(len(clip), 4 * sample_rate)
    lags = [float(np.dot(decoded_clip[lag : lag + window], clip[:window])) for lag in range(0, 2049, 1)]
    lag = int(np.argmax(lags)) if np.any(clip[:window]) else 0
    return decoded_clip[lag : lag + len(clip)].astype(np.float32)


def codec(name: str, bitrate: int, sample_rate: int) -> Callable:
    """Make a lossy-codec corruption: every clip through `codec_roundtrip`.

    Args:
        name: the codec, a key of `CODECS`.
        bitrate: the encoder's bit rate in bit/s.
        sample_rate: the clips' sample rate.

    Returns:
        The corruption function `(clips, speakers, rng) -> clips`.

    Raises:
        InvalidSetting: when `name` is not a known codec.
    """
    if name not in CODECS:
        raise InvalidSetting(f"robustness codec {name!r} is not one of {sorted(CODECS)}")

    def make(clips: np.ndarray, speakers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.stack([codec_roundtrip(clip, sample_rate, name, bitrate) for clip in clips])

    return make


def gain(db: float) -> Callable:
    """Make the gain corruption: scale by `db`, then quantise to 16 bits as a quiet file would hold it.

    Args:
        db: the gain in dB (negative: quieter).

    Returns:
        The corruption function `(clips, speakers, rng) -> clips`.
    """

    def make(clips: np.ndarray, speakers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        quiet = clips * 10.0 ** (db / 20.0)
        return (np.round(np.clip(quiet, -1.0, 1.0) * 32767.0) / 32767.0).astype(np.float32)

    return make
