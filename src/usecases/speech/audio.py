"""Audio loading for speech recognition: any rate and channel count in, float32 mono out.

Partners bring recordings as WAV, FLAC, OGG or MP3, at 8 to 48 kHz, mono or stereo, and some
of them are broken (empty, truncated, text saved as .wav). Every file is checked from its
header before it is decoded, so that a bad or overlong file fails fast with an `AudioError`
naming the file and what is wrong, and `read_many` can report it and go on with the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SILENCE_RMS = 1e-3  # -60 dBFS
SILENCE_PEAK = 1e-4
CLIP_LEVEL = 0.999
CLIP_FRACTION = 0.001  # 0.1 % of the samples
NARROWBAND_RATE = 8000  # telephone audio: nothing above 4 kHz
NARROWBAND_ENERGY = (
    1e-4  # share (-40 dB) of the energy above 4 kHz below which a wave is narrowband
)
MIN_SECONDS = 0.3


class AudioError(ValueError):
    """An audio file cannot be used: missing, empty, unreadable, too long or not finite."""


def _info(path: Path) -> sf._SoundFileInfo:
    """The header of `path`, checked: the file exists, is not empty, is audio with frames."""
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"{path}: not a readable audio file ({e})") from e
    if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(
            f"{path}: no audio frames ({info.frames} frames, {info.channels} channels, "
            f"{info.samplerate} Hz)"
        )
    return info


def audio_info(path: str | Path) -> dict:
    """Sample rate, channels, frames, seconds, format and subtype of `path`, from its header."""
    info = _info(Path(path))
    return {
        "sample_rate": int(info.samplerate),
        "channels": int(info.channels),
        "frames": int(info.frames),
        "seconds": info.frames / info.samplerate,
        "format": info.format,
        "subtype": info.subtype,
    }


def _load(
    path: Path, sample_rate: int, max_seconds: float | None
) -> tuple[np.ndarray, sf._SoundFileInfo]:
    """The decoded, down-mixed, resampled wave of `path` and its header (for the native rate)."""
    if sample_rate <= 0:
        raise AudioError(f"{path}: target sample rate must be positive, got {sample_rate}")
    info = _info(path)
    seconds = info.frames / info.samplerate
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError(
            f"{path}: lasts {seconds:.1f} s, longer than the limit of {max_seconds:g} s"
        )
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{path}: not a readable audio file ({e})") from e
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no audio frames (the header promised {info.frames})")
    wave = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    bad = ~np.isfinite(wave)
    if bad.any():
        first = int(np.argmax(bad))
        raise AudioError(
            f"{path}: {int(bad.sum())} NaN or infinite samples (first at {first / rate:.3f} s)"
        )
    if rate != sample_rate:
        wave = soxr.resample(wave, rate, sample_rate, quality="HQ")
    # Resampling can overshoot full scale slightly, and float files may exceed it.
    wave = np.clip(wave, -1.0, 1.0).astype(np.float32, copy=False)
    return np.ascontiguousarray(wave), info


def load_audio(
    path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None
) -> np.ndarray:
    """The audio of `path` as float32 mono in [-1, 1] at `sample_rate` (channels averaged,
    resampled with soxr HQ). With `max_seconds`, a longer file is refused before decoding."""
    return _load(Path(path), sample_rate, max_seconds)[0]


def _high_band_share(wave: np.ndarray, sample_rate: int, cutoff: float = 4000.0) -> float:
    """Share of the energy above `cutoff` Hz, from at most 256 evenly spaced 512-sample frames
    (enough to judge the bandwidth of a long file without transforming all of it)."""
    n = 512
    if wave.size < n:
        return 1.0
    starts = np.linspace(0, wave.size - n, num=min(256, wave.size // n)).astype(np.int64)
    frames = wave[starts[:, None] + np.arange(n)] * np.hanning(n).astype(np.float32)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).sum(axis=0)
    freqs = np.fft.rfftfreq(n, d=1.0 / sample_rate)
    total = float(power.sum())
    return float(power[freqs > cutoff].sum()) / total if total > 0 else 1.0


def quality_flags(wave: np.ndarray, sample_rate: int, native_rate: int | None = None) -> list[str]:
    """Problems worth a look before a file is used, in a fixed order:

    - "silence": RMS below -60 dBFS or peak below 1e-4;
    - "clipping": more than 0.1 % of the samples at |x| >= 0.999;
    - "narrowband": recorded at 8 kHz or less (`native_rate`), or, at a higher rate, almost
      no energy above 4 kHz (telephone audio stored at a higher rate);
    - "too_short": under 0.3 s.
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    flags = []
    silent = wave.size == 0
    if not silent:
        peak = float(np.max(np.abs(wave)))
        rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
        silent = rms < SILENCE_RMS or peak < SILENCE_PEAK
    if silent:
        flags.append("silence")
    if wave.size and np.count_nonzero(np.abs(wave) >= CLIP_LEVEL) > CLIP_FRACTION * wave.size:
        flags.append("clipping")
    telephone = native_rate is not None and native_rate <= NARROWBAND_RATE
    if telephone or (
        not silent
        and sample_rate > NARROWBAND_RATE
        and _high_band_share(wave, sample_rate) < NARROWBAND_ENERGY
    ):
        flags.append("narrowband")
    if wave.size < MIN_SECONDS * sample_rate:
        flags.append("too_short")
    return flags


def read_many(
    paths: Iterable[str | Path], sample_rate: int = 16000, max_seconds: float | None = None
) -> list[dict]:
    """One result per path, in order: {"path", "wave", "sample_rate", "flags"} for a good file,
    {"path", "error"} for a bad one; a bad file never stops the others."""
    out: list[dict] = []
    for p in paths:
        try:
            wave, info = _load(Path(p), sample_rate, max_seconds)
        except AudioError as e:
            out.append({"path": str(p), "error": str(e)})
            continue
        flags = quality_flags(wave, sample_rate, native_rate=int(info.samplerate))
        out.append({"path": str(p), "wave": wave, "sample_rate": sample_rate, "flags": flags})
    return out


def split_at_pauses(
    wave: np.ndarray,
    sample_rate: int,
    max_seconds: float = 20.0,
    search_seconds: float | None = None,
) -> list[tuple[float, float, np.ndarray]]:
    """(start_s, end_s, samples) pieces of at most `max_seconds` covering the wave without
    overlap, each cut at the quietest 25 ms frame of the last `search_seconds` (default: a
    quarter of the piece, at most 4 s) before the limit, so that a long recording is
    transcribed piece by piece without cutting words where a pause allows. The samples are
    views into `wave`."""
    if search_seconds is None:
        search_seconds = min(4.0, max_seconds / 4)
    if max_seconds <= 0 or not 0 < search_seconds <= max_seconds:
        raise ValueError(
            f"need 0 < search_seconds <= max_seconds, got {search_seconds}, {max_seconds}"
        )
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"need a mono wave (1-D), got shape {wave.shape}")
    size = max(1, round(max_seconds * sample_rate))
    frame = max(1, round(0.025 * sample_rate))
    out: list[tuple[float, float, np.ndarray]] = []
    start = 0
    while start < wave.size:
        end = start + size
        if end >= wave.size:
            end = wave.size
        else:
            lo = max(start + frame, end - round(search_seconds * sample_rate))
            region = wave[lo:end]
            n = region.size // frame
            if n > 0:
                energy = np.square(region[: n * frame].reshape(n, frame), dtype=np.float64)
                end = lo + int(np.argmin(energy.sum(axis=1))) * frame + frame // 2
        out.append((start / sample_rate, end / sample_rate, wave[start:end]))
        start = end
    return out
