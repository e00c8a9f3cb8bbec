"""The robustness report: the test split again under noise, reverberation, telephone band, codecs and gain.

`python -m ser_lightning.eval ckpt_path=... robustness=standard` scores the clips of the evaluated
split once clean and once under each condition of conf/robustness/standard.yaml:

- additive noise at each SNR (20 / 10 / 5 / 0 dB): `white` Gaussian noise, and `babble` made of
  other test clips (several talkers, other speakers where there are any) summed at equal level.
  The SNR is the ratio of clip power to noise power over the whole clip window;
- reverberation with a synthetic room impulse response (exponentially decaying Gaussian noise
  after a direct path, decaying 60 dB in RT60 seconds);
- telephone band: resampled to 8 kHz, band-passed to 300-3400 Hz, 8-bit mu-law, and back;
- lossy codecs at low bitrate through PyAV (FFmpeg): MP3 (libmp3lame) and Opus (libopus),
  encoded in memory and decoded back, aligned to the original;
- a gain (-20 dB), applied before 16-bit quantisation as a quiet file would hold it.

A corrupted clip is then conditioned again as every file is (peak normalisation when the
checkpoint's audio settings have it; the gain condition then measures only quantisation) and
scored by the checkpoint's own features and network, like `predict`. Every condition draws from
its own seeded generator (`seed`, condition index): the report is reproducible.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import gcd

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

NOISES = ("white", "babble")
CODECS = {"mp3": ("libmp3lame", "mp3"), "opus": ("libopus", "ogg")}  # codec -> (encoder, container)


@dataclass(frozen=True)
class Condition:
    """One corruption of the test clips.

    It holds a name for the table, its family and parameter, and the function
    `(clips (N, samples), speakers (N,), rng) -> corrupted clips`.
    """

    name: str
    family: str
    parameter: str
    apply: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


# ------------------------------------------------------------------ the corruptions
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


def standard_conditions(settings: dict, sample_rate: int) -> list[Condition]:
    """Build the conditions a robustness config (conf/robustness/*.yaml) lists, in its order.

    Args:
        settings: the config: `noises`, `snr_db`, `babble_talkers`, `reverb_rt60_s`,
            `telephone`, `codecs` and `gain_db`.
        sample_rate: the clips' sample rate.

    Returns:
        The noise conditions (each noise at each SNR), then reverberation, telephone, codecs and gain.

    Raises:
        InvalidSetting: when a noise is not one of `NOISES` or a codec not one of `CODECS`.
    """
    conditions = []
    talkers = int(settings.get("babble_talkers", 5))
    for noise in settings.get("noises", NOISES):
        if noise not in NOISES:
            raise InvalidSetting(f"robustness.noises: {noise!r} is not one of {NOISES}")
        make = white_noise if noise == "white" else babble_noise(talkers)
        for snr in settings.get("snr_db", ()):

            def apply(clips, speakers, rng, make=make, snr=float(snr)):
                return mix_at_snr(clips, make(clips, speakers, rng), snr)

            conditions.append(
                Condition(f"{noise} noise {snr:g} dB", f"{noise} noise", f"SNR {snr:g} dB", apply)
            )
    for rt60 in settings.get("reverb_rt60_s", ()):
        conditions.append(
            Condition(
                f"reverb RT60 {rt60:g} s",
                "reverberation",
                f"RT60 {rt60:g} s",
                reverb(float(rt60), sample_rate),
            )
        )
    if settings.get("telephone"):
        conditions.append(
            Condition(
                "telephone 8 kHz mu-law", "telephone", "8 kHz, 300-3400 Hz, mu-law", telephone(sample_rate)
            )
        )
    for item in settings.get("codecs", ()):
        name, bitrate = str(item["codec"]), int(item["bitrate"])
        conditions.append(
            Condition(
                f"{name} {bitrate // 1000} kbit/s",
                "codec",
                f"{name} {bitrate} bit/s",
                codec(name, bitrate, sample_rate),
            )
        )
    for db in settings.get("gain_db", ()):
        conditions.append(Condition(f"gain {db:+g} dB", "gain", f"{db:+g} dB", gain(float(db))))
    return conditions


# ------------------------------------------------------------------ scoring
def condition_clips(clips: np.ndarray, peak_normalize: bool) -> np.ndarray:
    """Do what the data pipeline does to every decoded file after decoding: peak normalisation.

    Args:
        clips: the clips, `(N, samples)`.
        peak_normalize: whether the checkpoint's audio settings normalise peaks.

    Returns:
        The clips as float32, each scaled to a peak of 1 when `peak_normalize` (silent clips as they are).
    """
    if not peak_normalize:
        return clips.astype(np.float32)
    peak = np.abs(clips).max(axis=1, keepdims=True)
    return np.where(peak > 0, clips / np.where(peak > 0, peak, 1.0), clips).astype(np.float32)


def robustness_table(
    score: Callable[[np.ndarray], dict],
    clips: np.ndarray,
    speakers: Sequence[str],
    conditions: Sequence[Condition],
    seed: int,
    peak_normalize: bool,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """UA, WA, macro-F1 (and UA's speaker interval) of the clean clips and of each condition.

    `score(waveforms)` returns a report's metrics (with `ua_low`, `ua_high` when it has them).

    Args:
        score: scores a stack of waveforms, in the order of `clips`.
        clips: the clean clips, `(N, samples)`.
        speakers: each clip's speaker (babble noise draws other speakers' clips).
        conditions: the corruptions to apply.
        seed: the seed of every condition's generator (seeded with (seed, condition index)).
        peak_normalize: whether clips are peak-normalised after corruption, as on loading.
        progress: called with each condition's name before it is scored.

    Returns:
        One row per condition, clean first: its name, family and parameter, the scores, the
        measured SNR (noise conditions) and `ua_change` from the clean UA.
    """
    speakers = np.asarray([str(s) for s in speakers])
    rows = []
    clean = score(condition_clips(clips, peak_normalize))
    rows.append(
        {"condition": "clean", "family": "clean", "parameter": "", **clean, "measured_snr_db": np.nan}
    )
    for index, condition in enumerate(conditions):
        if progress:
            progress(condition.name)
        rng = np.random.default_rng([seed, index])
        corrupted = condition.apply(clips.astype(np.float32), speakers, rng)
        measured = float(np.mean(snr_db(clips, corrupted))) if condition.family.endswith("noise") else np.nan
        rows.append(
            {
                "condition": condition.name,
                "family": condition.family,
                "parameter": condition.parameter,
                **score(condition_clips(corrupted, peak_normalize)),
                "measured_snr_db": measured,
            }
        )
    table = pd.DataFrame(rows)
    table["ua_change"] = table["ua"] - table.loc[0, "ua"]
    return table


def plot_robustness(table: pd.DataFrame, path, title: str = "") -> None:
    """Plot UA per condition as horizontal bars (speaker intervals as error bars), the clean UA dashed."""
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.5))
    y = np.arange(len(table))[::-1]
    colors = ["#55A868" if f == "clean" else "#4C72B0" for f in table["family"]]
    err = None
    if {"ua_low", "ua_high"} <= set(table.columns) and table["ua_low"].notna().all():
        err = np.vstack([table["ua"] - table["ua_low"], table["ua_high"] - table["ua"]])
    ax.barh(y, table["ua"], xerr=err, color=colors, capsize=2)
    ax.set_yticks(y, table["condition"], fontsize=8)
    ax.axvline(
        table.loc[0, "ua"],
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"clean {table.loc[0, 'ua']:.3f}",
    )
    ax.set_xlim(0, 1)
    ax.set_xlabel("unweighted accuracy (UA)" + (", 95 % speaker intervals" if err is not None else ""))
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "UA per condition", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
