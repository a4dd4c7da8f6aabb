import warnings

import numpy as np
import pytest

from shared.pcm import ALAW, ULAW, InputConverter, StreamResampler


def _tone(rate: int, freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * 10000).astype(np.int16)


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


@pytest.mark.parametrize("src", [8000, 22050, 24000, 44100, 48000])
def test_resampler_keeps_pitch_and_level(src):
    out = StreamResampler(src).process(_tone(src, 1000))
    assert abs(len(out) - 16000) <= 2
    assert abs(_peak_hz(out, 16000) - 1000) < 5
    rms = np.sqrt(np.mean(out[200:-200].astype(np.float64) ** 2))
    assert 0.9 * 10000 / np.sqrt(2) < rms < 1.1 * 10000 / np.sqrt(2)


def test_resampler_removes_what_cannot_be_represented():
    out = StreamResampler(48000).process(_tone(48000, 11000))  # above 8 kHz: must not alias down
    assert np.sqrt(np.mean(out.astype(np.float64) ** 2)) < 200


def test_chunked_equals_whole():
    x = _tone(24000, 440, 0.5)
    whole = StreamResampler(24000).process(x)
    r = StreamResampler(24000)
    sizes = [1, 7, 480, 333, 2400, 1]
    parts, start = [], 0
    for size in sizes * 10:
        parts.append(r.process(x[start : start + size]))
        start += size
    parts.append(r.process(x[start:]))
    assert np.array_equal(np.concatenate(parts), whole)


def test_g711_tables_match_the_standard():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

    data = bytes(range(256))
    assert np.array_equal(ULAW, np.frombuffer(audioop.ulaw2lin(data, 2), dtype="<i2"))
    assert np.array_equal(ALAW, np.frombuffer(audioop.alaw2lin(data, 2), dtype="<i2"))


def test_converter_checks_byte_count_and_upsamples_g711():
    with pytest.raises(ValueError):
        InputConverter("audio/pcm", 24000).convert(b"\x00\x01\x02")
    out = InputConverter("audio/pcmu", 24000).convert(bytes([0xFF]) * 800)
    assert len(out) == 1600 and not out.any()


@pytest.mark.parametrize(("law", "table"), [("pcmu", ULAW), ("pcma", ALAW)])
def test_g711_compression_inverts_expansion(law, table):
    from shared.pcm import compress_g711, expand_g711

    codes = np.arange(256, dtype=np.uint8)
    again = expand_g711(compress_g711(table[codes], law), table)
    assert np.array_equal(again, table[codes])  # every code's value maps back to an equal value
    tone = _tone(8000, 440)
    error = expand_g711(compress_g711(tone, law), table).astype(np.float64) - tone
    assert np.sqrt(np.mean(error**2)) < 0.05 * 10000  # G.711 keeps a speech-level tone well


@pytest.mark.parametrize(
    ("encoding", "rate", "per_sample"), [("pcm16", 24000, 2), ("pcm16", 16000, 2), ("pcmu", 24000, 1)]
)
def test_output_encoder_resamples_once_to_the_clients_rate(encoding, rate, per_sample):
    from shared.pcm import OutputEncoder

    encoder = OutputEncoder(22050, encoding, rate)
    data, samples = encoder.encode(_tone(22050, 500))
    expected = 8000 if encoding == "pcmu" else rate
    assert abs(samples - expected) <= 24 and len(data) == samples * per_sample
