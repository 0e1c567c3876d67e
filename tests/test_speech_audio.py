"""Speech groundwork: audio loading and quality flags on fixtures written here, and the three
corpus layouts (generic manifest, Common Voice, Kaldi) on tiny folders."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from usecases.core.data import DataError
from usecases.speech.audio import (
    AudioError,
    audio_info,
    load_audio,
    quality_flags,
    read_many,
    split_at_pauses,
)
from usecases.speech.data import (
    Utterance,
    char_inventory,
    check_speaker_split,
    read_common_voice,
    read_kaldi,
    read_manifest_tsv,
)


def tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5, seed: int = 0):
    """A sine with a little white noise: speech-like enough to be neither silent nor narrowband."""
    t = np.arange(round(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.02, t.size)
    return (amp * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


@pytest.fixture
def stereo_wav(tmp_path: Path) -> Path:
    p = tmp_path / "stereo.wav"
    left = tone(1.5, 44100)
    sf.write(p, np.stack([left, 0.5 * left], axis=1), 44100, subtype="PCM_16")
    return p


@pytest.fixture
def flac_8k(tmp_path: Path) -> Path:
    p = tmp_path / "phone.flac"
    sf.write(p, tone(2.0, 8000, freq=300.0), 8000)
    return p


@pytest.fixture
def ogg(tmp_path: Path) -> Path:
    p = tmp_path / "clip.ogg"
    sf.write(p, tone(1.0, 22050), 22050, format="OGG", subtype="VORBIS")
    return p


# ---------------------------------------------------------------- loading


def test_stereo_44k_wav_is_downmixed_and_resampled(stereo_wav: Path):
    wave = load_audio(stereo_wav)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - 1.5 * 16000) <= 0.01 * 1.5 * 16000
    assert wave.min() >= -1.0 and wave.max() <= 1.0
    # mean of a channel and its half: peak about 0.75 * 0.5
    assert 0.3 < np.abs(wave).max() < 0.45
    info = audio_info(stereo_wav)
    assert info["sample_rate"] == 44100 and info["channels"] == 2
    assert info["frames"] == round(1.5 * 44100) and info["seconds"] == pytest.approx(1.5)
    assert info["format"] == "WAV" and info["subtype"] == "PCM_16"


@pytest.mark.parametrize(("name", "seconds"), [("flac_8k", 2.0), ("ogg", 1.0)])
def test_flac_and_ogg_load_at_the_target_rate(name: str, seconds: float, request):
    path = request.getfixturevalue(name)
    for rate in (16000, 8000):
        wave = load_audio(path, sample_rate=rate)
        assert wave.dtype == np.float32 and wave.ndim == 1
        assert abs(wave.size - seconds * rate) <= 0.01 * seconds * rate
        assert np.all(np.abs(wave) <= 1.0)


def test_mp3_loads_when_libsndfile_supports_it(tmp_path: Path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot handle MP3")
    p = tmp_path / "clip.mp3"
    sf.write(p, tone(1.0, 16000), 16000, format="MP3")
    wave = load_audio(p)
    # MP3 encoders pad a few frames; the length is close, not exact.
    assert abs(wave.size - 16000) <= 0.1 * 16000


def test_float_samples_beyond_full_scale_are_clipped(tmp_path: Path):
    p = tmp_path / "loud.wav"
    sf.write(p, 1.5 * tone(0.5, 16000), 16000, subtype="FLOAT")
    wave = load_audio(p)
    assert wave.max() <= 1.0 and wave.min() >= -1.0


def test_missing_file(tmp_path: Path):
    with pytest.raises(AudioError, match=r"nothere\.wav: audio file not found"):
        load_audio(tmp_path / "nothere.wav")


def test_empty_file(tmp_path: Path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: empty file \(0 bytes\)"):
        load_audio(p)
    with pytest.raises(AudioError, match="0 bytes"):
        audio_info(p)


def test_text_file_named_wav(tmp_path: Path):
    p = tmp_path / "notes.wav"
    p.write_text("this is a transcript, not audio\n")
    with pytest.raises(AudioError, match=r"notes\.wav: not a readable audio file \("):
        load_audio(p)


def test_corrupt_header(tmp_path: Path, stereo_wav: Path):
    p = tmp_path / "corrupt.wav"
    data = bytearray(stereo_wav.read_bytes())
    data[:16] = b"\x00" * 16
    p.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"corrupt\.wav: not a readable audio file"):
        audio_info(p)


def test_zero_frames(tmp_path: Path):
    p = tmp_path / "noframes.wav"
    sf.write(p, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=r"noframes\.wav: no audio frames"):
        load_audio(p)


def test_nan_samples(tmp_path: Path):
    p = tmp_path / "nan.wav"
    x = tone(0.5, 16000)
    x[4000] = np.nan
    x[5000] = np.inf
    sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.raises(
        AudioError, match=r"nan\.wav: 2 NaN or infinite samples \(first at 0\.250 s\)"
    ):
        load_audio(p)


# ---------------------------------------------------------------- quality flags


def test_quality_flags():
    sr = 16000
    assert quality_flags(tone(1.0, sr), sr, native_rate=sr) == []
    assert quality_flags(np.zeros(sr, dtype=np.float32), sr) == ["silence"]
    assert quality_flags(np.full(sr, 5e-5, dtype=np.float32), sr) == ["silence"]
    clipped = np.clip(3 * tone(1.0, sr), -1, 1)
    assert quality_flags(clipped, sr) == ["clipping"]
    assert quality_flags(tone(1.0, sr), sr, native_rate=8000) == ["narrowband"]
    assert quality_flags(tone(0.2, sr), sr) == ["too_short"]
    assert quality_flags(np.zeros(0, dtype=np.float32), sr) == ["silence", "too_short"]
    # A clean low tone at 16 kHz has no energy above 4 kHz: narrowband even without a rate.
    t = np.arange(sr) / sr
    assert quality_flags((0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), sr) == [
        "narrowband"
    ]


def test_loaded_silence_and_clipping_are_flagged(tmp_path: Path):
    silent, clipped = tmp_path / "silent.wav", tmp_path / "clipped.wav"
    sf.write(silent, np.zeros(16000, dtype=np.int16), 16000)
    sf.write(clipped, np.clip(4 * tone(1.0, 16000), -1, 1), 16000, subtype="PCM_16")
    got = read_many([silent, clipped])
    assert got[0]["flags"] == ["silence"]
    assert got[1]["flags"] == ["clipping"]


# ---------------------------------------------------------------- long files and batches


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory) -> Path:
    """Ten minutes at 8 kHz, int16: mostly zeros with a burst of noise every minute."""
    rate, seconds = 8000, 600
    x = np.zeros(rate * seconds, dtype=np.int16)
    rng = np.random.default_rng(0)
    for m in range(10):
        x[m * 60 * rate : m * 60 * rate + rate] = rng.integers(-3000, 3000, rate, dtype=np.int16)
    p = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(p, x, rate, subtype="PCM_16")
    return p


def test_long_file_is_cut_at_pauses_into_views(long_wav: Path):
    wave = load_audio(long_wav)
    assert abs(wave.size - 600 * 16000) <= 0.01 * 600 * 16000
    parts = split_at_pauses(wave, 16000, max_seconds=20.0, search_seconds=4.0)
    # Noise bursts fill the first second of each minute; every cut falls in silence.
    assert all(b - a <= 20.0 + 1e-9 for a, b, _ in parts)
    assert parts[0][0] == 0.0 and parts[-1][1] == pytest.approx(wave.size / 16000)
    assert all(parts[i][1] == parts[i + 1][0] for i in range(len(parts) - 1))
    assert sum(s.size for _, _, s in parts) == wave.size
    assert all(np.shares_memory(s, wave) for _, _, s in parts)
    assert all(a % 60 >= 1.0 for a, _, _ in parts[1:])


def test_cut_falls_in_the_pause():
    rate = 16000
    rng = np.random.default_rng(0)
    wave = rng.uniform(-0.5, 0.5, 25 * rate).astype(np.float32)
    wave[int(17.2 * rate) : int(17.6 * rate)] = 0.0
    [(a, b, _), (c, d, _)] = split_at_pauses(wave, rate, max_seconds=20.0, search_seconds=4.0)
    assert (a, d) == (0.0, 25.0) and b == c
    assert 17.2 <= b <= 17.6


def test_two_hour_wave_is_split_without_copies():
    wave = np.zeros(2 * 3600 * 16000, dtype=np.float32)
    parts = split_at_pauses(wave, 16000)
    assert len(parts) >= 7200 / 20
    assert all(np.shares_memory(s, wave) for _, _, s in parts[:: len(parts) // 7])


def test_split_edge_cases():
    assert split_at_pauses(np.zeros(0, dtype=np.float32), 16000) == []
    short = np.zeros(8000, dtype=np.float32)
    [(a, b, s)] = split_at_pauses(short, 16000)
    assert (a, b, s.size) == (0.0, 0.5, 8000)
    with pytest.raises(ValueError, match="search_seconds"):
        split_at_pauses(short, 16000, max_seconds=1.0, search_seconds=2.0)
    with pytest.raises(ValueError, match="mono"):
        split_at_pauses(np.zeros((2, 10), dtype=np.float32), 16000)


def test_max_seconds_refuses_long_files(long_wav: Path):
    with pytest.raises(
        AudioError, match=r"long\.wav: lasts 600\.0 s, longer than the limit of 60 s"
    ):
        load_audio(long_wav, max_seconds=60)


def test_read_many_keeps_order_and_answers_every_file(
    tmp_path: Path, stereo_wav: Path, flac_8k: Path, ogg: Path, long_wav: Path
):
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    paths = [stereo_wav, text, flac_8k, tmp_path / "missing.flac", empty, ogg, long_wav]
    got = read_many(paths, max_seconds=60)
    assert [r["path"] for r in got] == [str(p) for p in paths]
    ok = [r for r in got if "wave" in r]
    assert [Path(r["path"]).name for r in ok] == ["stereo.wav", "phone.flac", "clip.ogg"]
    assert all(r["sample_rate"] == 16000 and r["wave"].dtype == np.float32 for r in ok)
    assert got[0]["flags"] == [] and got[2]["flags"] == ["narrowband"]
    assert "not a readable audio file" in got[1]["error"]
    assert "audio file not found" in got[3]["error"]
    assert "0 bytes" in got[4]["error"]
    assert "longer than the limit of 60 s" in got[6]["error"]
    assert all("wave" not in r for r in got if "error" in r)


# ---------------------------------------------------------------- corpus layouts


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_manifest_tsv(tmp_path: Path):
    nfd = unicodedata.normalize("NFD", "Ẹ kú àárọ̀")
    tsv = write(
        tmp_path / "manifest.tsv",
        "path\ttranscript\tspeaker\tsplit\tduration_s\tsession\n"
        f'audio/yo_001.wav\tó ní "bẹ́ẹ̀ ni"\tspk1\ttrain\t2.5\ts1\n'
        f"audio/yo_002.flac\t{nfd}\tspk2\tdev\t\ts2\n"
        "\n"
        "audio/yo_003.wav\tSannu  da zuwa \tspk3\ttest\t1\ts3\n",
    )
    utts = read_manifest_tsv(tmp_path, tsv)
    assert [u.id for u in utts] == ["yo_001", "yo_002", "yo_003"]
    assert utts[0] == Utterance(
        "yo_001", "audio/yo_001.wav", 'ó ní "bẹ́ẹ̀ ni"', "spk1", "train", "s1", 2.5
    )
    assert utts[1].transcript == unicodedata.normalize("NFC", nfd) != nfd
    assert utts[1].duration is None and utts[2].transcript == "Sannu da zuwa"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "path\ttranscript\tsplit\na.wav\thi\ttrain\n",
            r"manifest\.tsv:1: missing column\(s\) \['speaker'\]",
        ),
        (
            "path\ttranscript\tspeaker\tsplit\na.wav\thi\ts1\n",
            r"manifest\.tsv:2: 3 tab-separated fields",
        ),
        (
            "path\ttranscript\tspeaker\tsplit\na.wav\thi\ts1\tval\n",
            r"manifest\.tsv:2: split 'val' not one of",
        ),
        (
            "path\ttranscript\tspeaker\tsplit\na.wav\thi\ts1\ttrain\nb.wav\t \ts1\ttrain\n",
            r"manifest\.tsv:3: empty transcript",
        ),
        (
            "path\ttranscript\tspeaker\tsplit\na.wav\thi\ts1\ttrain\nx/a.wav\tho\ts1\ttest\n",
            r"manifest\.tsv:3: utterance id 'a' already used at .*manifest\.tsv:2",
        ),
    ],
)
def test_manifest_errors_name_file_and_line(tmp_path: Path, body: str, message: str):
    tsv = write(tmp_path / "manifest.tsv", body)
    with pytest.raises(DataError, match=message):
        read_manifest_tsv(tmp_path, tsv)


CV_HEADER = "client_id\tpath\tsentence_id\tsentence\tup_votes\tdown_votes\tage\tgender\n"


def test_common_voice(tmp_path: Path):
    write(
        tmp_path / "train.tsv",
        CV_HEADER
        + 'c1\tcommon_voice_ha_1.mp3\tx\tYa ce "lafiya"\t2\t0\t\t\n'
        + "c2\tcommon_voice_ha_2.mp3\tx\tIna kwana\t2\t0\t\t\n",
    )
    write(tmp_path / "test.tsv", CV_HEADER + "c3\tcommon_voice_ha_3.mp3\tx\tNa gode\t2\t0\t\t\n")
    utts = read_common_voice(tmp_path)  # dev.tsv is missing: skipped
    assert [(u.id, u.split, u.speaker) for u in utts] == [
        ("common_voice_ha_1", "train", "c1"),
        ("common_voice_ha_2", "train", "c2"),
        ("common_voice_ha_3", "test", "c3"),
    ]
    assert utts[0].path == "clips/common_voice_ha_1.mp3"
    assert utts[0].transcript == 'Ya ce "lafiya"'


def test_common_voice_errors(tmp_path: Path):
    with pytest.raises(DataError, match="no Common Voice split file"):
        read_common_voice(tmp_path)
    write(tmp_path / "dev.tsv", "client_id\tpath\n")
    with pytest.raises(DataError, match=r"dev\.tsv:1: missing column\(s\) \['sentence'\]"):
        read_common_voice(tmp_path)


def kaldi_split(root: Path, split: str, scp: str, text: str, utt2spk: str) -> None:
    write(root / split / "wav.scp", scp)
    write(root / split / "text", text)
    write(root / split / "utt2spk", utt2spk)


def test_kaldi(tmp_path: Path):
    kaldi_split(
        tmp_path,
        "train",
        "hau_001 wav/hau_001.wav\nhau_002 wav/hau_002.wav\n",
        "hau_001 ina  kwana\nhau_002 lafiya lau\n",
        "hau_001 spkA\nhau_002 spkB\n",
    )
    kaldi_split(
        tmp_path,
        "test",
        f"hau_101 {tmp_path}/wav/hau_101.wav\n",
        "hau_101 na gode\n",
        "hau_101 spkC\n",
    )
    utts = read_kaldi(tmp_path)
    assert [(u.id, u.path, u.transcript, u.speaker, u.split) for u in utts] == [
        ("hau_001", "wav/hau_001.wav", "ina kwana", "spkA", "train"),
        ("hau_002", "wav/hau_002.wav", "lafiya lau", "spkB", "train"),
        ("hau_101", "wav/hau_101.wav", "na gode", "spkC", "test"),
    ]


def test_kaldi_piped_command_is_refused(tmp_path: Path):
    kaldi_split(
        tmp_path,
        "train",
        "u1 wav/u1.wav\nu2 sox wav/u2.mp3 -t wav - |\n",
        "u1 a\nu2 b\n",
        "u1 s\nu2 s\n",
    )
    with pytest.raises(
        DataError,
        match=r"train/wav\.scp:2: utterance 'u2' is a piped command.*piped commands are not supported",
    ):
        read_kaldi(tmp_path)


def test_kaldi_missing_text_or_speaker(tmp_path: Path):
    kaldi_split(tmp_path, "dev", "u1 wav/u1.wav\nu2 wav/u2.wav\n", "u1 a\n", "u1 s\nu2 s\n")
    with pytest.raises(
        DataError, match=r"dev/text: no transcript for utterance 'u2' \(.*wav\.scp:2\)"
    ):
        read_kaldi(tmp_path)
    kaldi_split(tmp_path, "dev", "u1 wav/u1.wav\n", "u1 a\n", "u2 s\n")
    with pytest.raises(DataError, match=r"dev/utt2spk: no speaker for utterance 'u1'"):
        read_kaldi(tmp_path)
    with pytest.raises(DataError, match="no Kaldi split folder"):
        read_kaldi(tmp_path / "nowhere")


def utt(id: str, split: str, speaker: str, transcript: str = "a", session: str = "") -> Utterance:
    return Utterance(id, f"{id}.wav", transcript, speaker, split, session)


def test_speaker_and_session_overlap():
    utts = [
        utt("1", "train", "ada", session="s1"),
        utt("2", "test", "ada", session="s2"),
        utt("3", "train", "bala", session="s3"),
        utt("4", "dev", "bala", session="s3"),
        utt("5", "test", "chidi", session="s3"),
    ]
    with pytest.raises(DataError, match=r"1 speaker\(s\) in both train and test: 'ada'$"):
        check_speaker_split(utts)
    with pytest.raises(DataError, match=r"1 session\(s\) in both train and test: 's3'$"):
        check_speaker_split(utts, by="session")
    check_speaker_split([u for u in utts if u.id != "2"])  # dev overlap is allowed


def test_char_inventory_uses_train_only():
    nfd = unicodedata.normalize("NFD", "Ọjọ́")
    utts = [utt("1", "train", "a", nfd), utt("2", "train", "b", "Ba"), utt("3", "test", "c", "xyz")]
    chars = char_inventory(utts)
    assert chars == sorted(set(unicodedata.normalize("NFC", "ọjọ́ba")))
    assert not {"x", "y", "z"} & set(chars)
    assert char_inventory(utts, split="test") == ["x", "y", "z"]
    with pytest.raises(DataError, match="no utterances in split 'dev'"):
        char_inventory(utts, split="dev")


def test_telephone_audio_stored_at_16k_is_narrowband(tmp_path: Path):
    noise = np.random.default_rng(1).normal(0, 0.1, 8000).astype(np.float32)
    phone, wide = tmp_path / "phone16k.wav", tmp_path / "wide.wav"
    sf.write(phone, load_audio_at(noise, 8000, 16000, tmp_path), 16000, subtype="PCM_16")
    sf.write(wide, np.random.default_rng(2).normal(0, 0.1, 16000), 16000, subtype="PCM_16")
    got = read_many([phone, wide])
    assert got[0]["flags"] == ["narrowband"]
    assert got[1]["flags"] == []


def load_audio_at(wave: np.ndarray, rate: int, target: int, tmp_path: Path) -> np.ndarray:
    """`wave` at `rate` written as FLAC and loaded back at `target`."""
    p = tmp_path / f"src_{rate}.flac"
    sf.write(p, wave, rate)
    return load_audio(p, sample_rate=target)
