import io

import numpy as np
import pytest
import torch
from PIL import Image

from training.synthetic import dataset, is_held_out
from workers.image.batcher import MicroBatcher
from workers.image.clip import Tag
from workers.image.decode import BadImage, decode_image
from workers.image.labels import DEFAULT_GROUPS, load_groups
from workers.image.service import describe

MAX = 4096 * 4096


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kw)
    return out.getvalue()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    decoded = decode_image(_encode(image, "JPEG", exif=exif), max_pixels=MAX)
    assert decoded.size == (20, 40)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK", "I;16"])
def test_modes_become_rgb(mode):
    image = Image.new(mode, (8, 8))
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    assert decode_image(_encode(image, fmt), max_pixels=MAX).mode == "RGB"


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert decode_image(_encode(image, "PNG"), max_pixels=MAX).getpixel((0, 0)) == (255, 255, 255)


def test_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    assert decode_image(out.getvalue(), max_pixels=MAX).getpixel((0, 0))[0] > 200


def test_bad_pictures_are_named():
    png = _encode(Image.new("RGB", (64, 64), (0, 200, 0)), "PNG")
    with pytest.raises(BadImage, match="not a PNG"):
        decode_image(b"GIF89a but not really" * 3, max_pixels=MAX)
    with pytest.raises(BadImage, match="empty"):
        decode_image(b"", max_pixels=MAX)
    with pytest.raises(BadImage, match="truncated"):
        decode_image(png[: len(png) // 2], max_pixels=MAX)
    with pytest.raises(BadImage, match="pixels"):
        decode_image(png, max_pixels=64 * 63)
    with pytest.raises(BadImage, match="not a PNG"):
        decode_image(_encode(Image.new("RGB", (8, 8)), "BMP"), max_pixels=MAX)


def test_decompression_bomb_is_refused_before_decoding():
    # A PNG header claiming 100k x 100k pixels: refused from the header alone.
    bomb = _encode(Image.new("1", (1, 1)), "PNG")
    ihdr = bomb.index(b"IHDR")
    import struct
    import zlib

    header = b"IHDR" + struct.pack(">II", 100_000, 100_000) + bomb[ihdr + 12 : ihdr + 17]
    forged = (
        bomb[: ihdr - 4] + struct.pack(">I", 13) + header + struct.pack(">I", zlib.crc32(header)) + bomb[ihdr + 21 :]
    )
    with pytest.raises(BadImage, match="more pixels than the limit"):  # PIL's own limit, reported as ours
        decode_image(forged, max_pixels=MAX)


def _with_chunks(png: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    import struct
    import zlib

    extra = b"".join(struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d)) for k, d in chunks)
    return png[:33] + extra + png[33:]  # after the signature and IHDR


def test_png_metadata_that_pil_would_inflate_on_opening_is_refused():
    import zlib

    png = _encode(Image.new("RGB", (8, 8)), "PNG")
    profile = (b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * 1_000_000))
    with pytest.raises(BadImage, match="chunks before its pixels"):  # 33 MB to inflate, 1000 of them: 2 s
        decode_image(_with_chunks(png, [profile] * 33), max_pixels=MAX)
    assert decode_image(_with_chunks(png, [profile] * 3), max_pixels=MAX).size == (8, 8)
    text = (b"zTXt", b"k\0\0" + zlib.compress(b"a" * 2_000_000))  # over PIL's 1 MB per text: a ValueError
    with pytest.raises(BadImage, match="metadata"):
        decode_image(_with_chunks(png, [text]), max_pixels=MAX)
    texts = [(b"zTXt", b"k%d\0\0" % n + zlib.compress(b"a" * 1_000_000)) for n in range(5)]  # PIL keeps them
    with pytest.raises(BadImage, match="metadata"):
        decode_image(_with_chunks(png, texts), max_pixels=MAX)
    assert decode_image(_with_chunks(png, texts[:3]), max_pixels=MAX).size == (8, 8)


def test_description_names_each_group_colour_and_shape_first():
    tags = [
        Tag("shape", "circle", 0.99),
        Tag("colour", "red", 0.97),
        Tag("count", "two", 0.9),
        Tag("size", "small", 0.6),
        Tag("background", "white", 0.8),
    ]
    text = describe(tags)
    assert text == "colour: red, shape: circle, count: two, size: small, background: white"


def test_custom_label_groups(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text('{"groups": [{"name": "animal", "labels": ["cat", "dog"], "templates": ["a photo of a {}."]}]}')
    groups = load_groups(path)
    assert groups[0].prompts("cat") == ["a photo of a cat."]
    path.write_text('{"groups": [{"name": "x", "labels": ["a"], "templates": ["no slot"]}]}')
    with pytest.raises(ValueError):
        load_groups(path)
    assert load_groups(None) == DEFAULT_GROUPS


def test_generated_pictures_are_reproducible_and_hold_out_pairs():
    first = [(np.asarray(i).tobytes(), c) for i, _, c in dataset(7, 20, held_out=False)]
    again = [(np.asarray(i).tobytes(), c) for i, _, c in dataset(7, 20, held_out=False)]
    assert first == again
    assert not any(is_held_out(s) for _, s, _ in dataset(1, 200, held_out=False))
    assert all(is_held_out(s) for _, s, _ in dataset(1, 50, held_out=True))


def test_micro_batcher_embeds_together_what_arrives_together():
    calls = []

    def run(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        return batch * 2

    batcher = MicroBatcher(run, max_batch=4, max_wait_s=0.2)
    futures = [batcher.submit(torch.full((2,), float(i))) for i in range(6)]
    results = [f.result(timeout=5) for f in futures]
    batcher.stop()
    assert [r.tolist() for r in results] == [[2.0 * i] * 2 for i in range(6)]
    assert calls == [4, 2]
    assert batcher.batch_sizes == {4: 1, 2: 1}
