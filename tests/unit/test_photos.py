"""The photo pipeline against QUALITY.md cases 1-7: bombs, corrupt and foreign files, leaks."""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import random
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path

import imagehash
import numpy as np
import pillow_heif
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageDraw, ImageFile, ImageOps, TiffImagePlugin, features
from PIL.PngImagePlugin import PngInfo

from app.reports import photos
from app.reports.photos import (
    CorruptImage,
    DecoderBusy,
    DecodeSlots,
    GpsHint,
    ImageTooLarge,
    UnsupportedFormat,
    fit_size,
    process_photo,
    process_photo_bounded,
)

ROOT = Path(__file__).resolve().parents[2]
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 160, 0), (0, 0, 255), (255, 255, 255)
XMP = b'<?xpacket begin=""?><x:xmpmeta xmlns:x="adobe:ns:meta/">CANARY-XMP-7f3a</x:xmpmeta>'
COMMENT = b"CANARY-COMMENT-91c2"


# --- fixture builders (everything is made here, in code) ---------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_by_hand(width: int, height: int, idat: bytes, *, depth: int = 8, colour: int = 0) -> bytes:
    """A PNG with any header we like, including ones Pillow refuses to write."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _bomb_png(side: int) -> bytes:
    """A valid 1-bit side x side PNG of a few KB, compressed row block by row block."""
    row = bytes(1 + (side + 7) // 8)
    z = zlib.compressobj(9)
    parts = [z.compress(row * 1000) for _ in range(side // 1000)]
    parts += [z.compress(row * (side % 1000)), z.flush()]
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def _encode(im: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    """Save an image to bytes."""
    out = io.BytesIO()
    im.save(out, fmt, **kw)
    return out.getvalue()


def _photo(width: int, height: int) -> Image.Image:
    """A cheap, structured RGB picture (gradients), big or small."""
    gx = Image.linear_gradient("L").rotate(90).resize((width, height))
    gy = Image.linear_gradient("L").resize((width, height))
    return Image.merge("RGB", (gx, gy, Image.new("L", (width, height), 96)))


def _marked(width: int = 160, height: int = 96) -> Image.Image:
    """White, with red top-left, green top-right and blue bottom-left blocks: shows any turn."""
    im = Image.new("RGB", (width, height), WHITE)
    im.paste(RED, (0, 0, 32, 32))
    im.paste(GREEN, (width - 32, 0, width, 32))
    im.paste(BLUE, (0, height - 32, 32, height))
    return im


def _exif(*, orientation: int | None = None, gps: bool = False, gps_over=None) -> Image.Exif:
    """EXIF with an IFD0 tag (Pillow drops an Exif whose IFD0 is empty when saving PNG)."""
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    if orientation is not None:
        exif[0x0112] = orientation
    if gps:
        tags = {1: "N", 2: (40.0, 38.0, 26.16), 3: "E", 4: (122.0, 30.0, 18.72)}
        tags.update(gps_over or {})
        ifd = exif.get_ifd(0x8825)
        ifd.update({k: v for k, v in tags.items() if v is not None})
        exif_ifd = exif.get_ifd(0x8769)
        exif_ifd[0x9003] = "2024:05:01 10:20:30"
        exif_ifd[0x9011] = "+08:00"
    return exif


def _icc() -> bytes:
    """A real sRGB ICC profile."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _near(a, b, tol: int = 40) -> bool:
    """Colours equal within JPEG noise."""
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def _marks(data: bytes) -> tuple[tuple[int, int], dict[str, tuple]]:
    """Size and the colour at the centre of each marked corner of an output JPEG."""
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = im.size
    pts = {"tl": (16, 16), "tr": (w - 16, 16), "bl": (16, h - 16), "br": (w - 16, h - 16)}
    return im.size, {k: im.getpixel(p) for k, p in pts.items()}


def _assert_upright(data: bytes, size=(160, 96)) -> None:
    """The output shows _marked() the right way up."""
    got_size, c = _marks(data)
    assert got_size == size
    assert _near(c["tl"], RED) and _near(c["tr"], GREEN) and _near(c["bl"], BLUE), c
    assert _near(c["br"], WHITE), c


def _stored_for(orientation: int) -> Image.Image:
    """The pixels a camera stores so that the given Orientation displays _marked() upright."""
    inverse = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    upright = _marked()
    return upright if orientation == 1 else upright.transpose(inverse[orientation])


def _assert_clean(data: bytes) -> None:
    """No metadata of any kind survives in an output JPEG, by bytes and by Pillow's reading."""
    for needle in (b"Exif", b"http://ns.adobe.com", b"CANARY", b"ICC_PROFILE", b"TestCam"):
        assert needle not in data, needle
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG"
    assert not {"exif", "icc_profile", "comment", "xmp", "progressive", "progression"} & set(
        im.info
    )
    assert len(im.getexif()) == 0
    assert data.startswith(b"\xff\xd8\xff") and data.endswith(b"\xff\xd9")


# --- case 1: decompression bombs ---------------------------------------------


@pytest.fixture(scope="module")
def bombs() -> dict[int, bytes]:
    """14000x14000 (Pillow errors) and 10000x10000 (Pillow only warns) PNGs, a few KB each."""
    return {side: _bomb_png(side) for side in (14000, 10000)}


@pytest.mark.parametrize("side", [14000, 10000])
def test_bomb_is_refused(bombs, side):
    assert len(bombs[side]) < 100_000
    with pytest.raises(ImageTooLarge) as err:
        process_photo(bombs[side])
    assert err.value.code == "image_too_large" and err.value.status == 422
    assert "megapixels" in err.value.message


@pytest.mark.parametrize("side", [14000, 10000])
def test_bomb_refused_without_pillows_global_limit(bombs, side, monkeypatch):
    # Our limit must hold even if someone switches Pillow's off process-wide.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageTooLarge):
        process_photo(bombs[side])


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bomb_refused_when_pillow_only_warns(bombs):
    # In production the 10000x10000 warning is just a warning; our check still refuses.
    with pytest.raises(ImageTooLarge):
        process_photo(bombs[10000])


@pytest.mark.parametrize("side", [14000, 10000])
def test_bomb_is_refused_before_any_decode(bombs, side, monkeypatch):
    def no_decoding(self):
        raise AssertionError("a bomb reached load()")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageTooLarge):
        process_photo(bombs[side])


def test_bomb_memory_stays_flat():
    # Pillow allocates pixels with malloc, invisible to tracemalloc: measure the
    # peak RSS of a fresh process instead, with Pillow's own guard switched off.
    child = "\n".join(
        [
            "import json, resource, struct, zlib",
            "from PIL import Image",
            "from app.reports.photos import ImageTooLarge, process_photo",
            inspect.getsource(_png_chunk),
            inspect.getsource(_bomb_png),
            "Image.MAX_IMAGE_PIXELS = None",
            "files = [_bomb_png(14000), _bomb_png(10000)]",
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss",
            "refused = 0",
            "for data in files:",
            "    try:",
            "        process_photo(data)",
            "    except ImageTooLarge:",
            "        refused += 1",
            "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss",
            "print(json.dumps({'refused': refused, 'grew_kb': after - before}))",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    assert result["refused"] == 2
    assert result["grew_kb"] < 50 * 1024  # decoding would cost 100-196 MB


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A tiny JPEG whose frame header claims another size."""
    data = bytearray(_encode(Image.new("RGB", (16, 16), "gray")))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_jpeg_bomb_refused_by_our_limit_below_pillows():
    # 81 MP: under Pillow's warning threshold (89 MP), over ours (64 MP).
    with pytest.raises(ImageTooLarge):
        process_photo(_jpeg_claiming(9000, 9000))


def test_pixel_limit_is_a_parameter():
    data = _encode(_photo(640, 480))
    with pytest.raises(ImageTooLarge):
        process_photo(data, max_pixels=640 * 480 - 1)
    assert process_photo(data, max_pixels=640 * 480).width == 640


# --- case 2: corrupt ---------------------------------------------------------


def _truncated(fmt: str, **kw) -> bytes:
    """A real photo cut at two thirds."""
    data = _encode(_photo(400, 300), fmt, **kw)
    return data[: len(data) * 2 // 3]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="zero-bytes"),
        pytest.param(_truncated("JPEG"), id="truncated-jpeg"),
        pytest.param(_truncated("JPEG", progressive=True), id="truncated-progressive-jpeg"),
        pytest.param(_truncated("PNG"), id="truncated-png"),
        pytest.param(_truncated("WEBP"), id="truncated-webp"),
        pytest.param(_truncated("HEIF"), id="truncated-heic"),
        pytest.param(_png_by_hand(0, 0, zlib.compress(b"")), id="0x0"),
        pytest.param(_png_by_hand(1, 100_000, zlib.compress(bytes(200_000))), id="1x100000"),
        pytest.param(_png_by_hand(100_000, 1, zlib.compress(bytes(100_001))), id="100000x1"),
        pytest.param(_encode(Image.new("RGB", (4, 4))), id="4x4"),
        pytest.param(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, id="jpeg-magic-then-garbage"),
        pytest.param(bytes((i * 7919 + 13) % 256 for i in range(4096)), id="binary-garbage"),
    ],
)
def test_corrupt_input_is_refused(data):
    with pytest.raises(CorruptImage) as err:
        process_photo(data)
    assert err.value.code == "corrupt_image" and err.value.status == 422


def test_truncated_jpeg_passes_verify_but_not_us():
    # The reason load() is used: verify() is not a decode.
    data = _truncated("JPEG")
    Image.open(io.BytesIO(data)).verify()
    with pytest.raises(CorruptImage):
        process_photo(data)


def test_truncated_large_jpeg_fails_at_reduced_scale_too():
    data = _encode(_photo(4032, 3024), quality=90)
    with pytest.raises(CorruptImage):
        process_photo(data[: len(data) // 2])


# --- case 3: polyglots ---------------------------------------------------------


def _zip_payload() -> bytes:
    """A real ZIP archive holding a script."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("evil.html", "<script>alert('zip')</script>")
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_polyglot_payload_is_gone(fmt):
    html = b"<html><body><script>alert(document.cookie)</script></body></html>"
    data = _encode(_photo(300, 200), fmt) + html + _zip_payload()
    out = process_photo(data)
    for part in (out.derivative, out.thumbnail):
        assert b"<script>" not in part and b"PK\x03\x04" not in part and b"<html>" not in part
        assert part.endswith(b"\xff\xd9")
    assert out.sha256 != hashlib.sha256(out.derivative).hexdigest()


# --- case 4: other formats -----------------------------------------------------


def _psd() -> bytes:
    """A minimal Photoshop header: 8BPS, version 1, 3 channels, 64x64, 8-bit RGB."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 64, 64, 8, 3)
    return header + struct.pack(">I", 0) * 3 + struct.pack(">H", 0) + bytes(64 * 64 * 3)


SMALL = Image.new("RGB", (64, 64), "orange")
FOREIGN = {
    "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" '
    b'height="64"><script>alert(1)</script><rect width="64" height="64"/></svg>',
    "svg-bare": b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>',
    "html": b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
    "pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    "text": "just some words, perhaps in Chinese: 你好\n".encode(),
    "gif": _encode(SMALL, "GIF"),
    "tiff": _encode(SMALL, "TIFF"),
    "tiff-bigendian": b"MM\x00*" + bytes(60),
    "psd": _psd(),
    "bmp": _encode(SMALL, "BMP"),
    "ico": _encode(SMALL, "ICO"),
    "zip": _zip_payload(),
    "mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64),
}
if features.check("avif"):  # Pillow reads AVIF itself; still not on our list
    FOREIGN["avif"] = _encode(SMALL, "AVIF")


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_foreign_formats_are_unsupported(name):
    with pytest.raises(UnsupportedFormat) as err:
        process_photo(FOREIGN[name])
    assert err.value.code == "unsupported_format" and err.value.status == 422


def test_pillow_can_read_what_we_refuse():
    # The refusal is our allow-list, not Pillow lacking a decoder.
    for name in ("gif", "tiff", "psd", "bmp"):
        assert Image.open(io.BytesIO(FOREIGN[name])).size == (64, 64)


# --- case 5: metadata never survives ------------------------------------------


def _metadata_laden() -> dict[str, bytes]:
    """The same picture in each format, carrying every kind of metadata the format allows."""
    im = _photo(320, 240)
    exif = _exif(gps=True).tobytes()
    text = PngInfo()
    text.add_text("Comment", "CANARY-tEXt")
    text.add_text("Author", "CANARY-zTXt " * 20, zip=True)
    text.add_itxt("XML:com.adobe.xmp", XMP.decode(), lang="en", tkey="x")
    return {
        "jpeg": _encode(im, exif=exif, xmp=XMP, comment=COMMENT, icc_profile=_icc()),
        "png": _encode(im, "PNG", exif=exif, icc_profile=_icc(), pnginfo=text),
        "webp": _encode(im, "WEBP", exif=exif, xmp=XMP, icc_profile=_icc()),
        "heif": _encode(im, "HEIF", exif=exif, xmp=XMP),
    }


LADEN = _metadata_laden()


def test_fixtures_really_carry_metadata():
    jpeg = LADEN["jpeg"]
    for needle in (b"Exif", b"http://ns.adobe.com/xap/1.0/", COMMENT, b"ICC_PROFILE"):
        assert needle in jpeg
    png = Image.open(io.BytesIO(LADEN["png"]))
    png.load()
    assert {"exif", "icc_profile", "Comment", "Author", "XML:com.adobe.xmp"} <= set(png.info)
    for fmt in ("webp", "heif"):
        assert b"CANARY-XMP" in LADEN[fmt]
        assert Image.open(io.BytesIO(LADEN[fmt])).getexif().get_ifd(0x8825)


@pytest.mark.parametrize("fmt", sorted(LADEN))
def test_metadata_is_stripped(fmt):
    out = process_photo(LADEN[fmt])
    assert out.original_format == fmt
    _assert_clean(out.derivative)
    _assert_clean(out.thumbnail)


@pytest.mark.parametrize("fmt", sorted(LADEN))
def test_gps_hint_is_read_before_stripping(fmt):
    gps = process_photo(LADEN[fmt]).gps
    assert gps is not None
    assert gps.latitude == pytest.approx(40.6406, abs=1e-4)
    assert gps.longitude == pytest.approx(122.5052, abs=1e-4)
    assert gps.taken_at == datetime(2024, 5, 1, 2, 20, 30, tzinfo=UTC)  # 10:20:30 at +08:00


def _gps_of(over: dict) -> GpsHint | None:
    """The hint read from a JPEG whose GPS tags are overridden (None removes a tag)."""
    exif = _exif(gps=True, gps_over=over).tobytes()
    return process_photo(_encode(_photo(64, 48), exif=exif)).gps


def test_gps_southern_and_western_hemispheres_are_negative():
    gps = _gps_of({1: "S", 3: "W"})
    assert (gps.latitude, gps.longitude) == (
        pytest.approx(-40.6406, abs=1e-4),
        pytest.approx(-122.5052, abs=1e-4),
    )


@pytest.mark.parametrize(
    "over",
    [
        pytest.param({2: (91.0, 0.0, 0.0)}, id="lat-91"),
        pytest.param({4: (180.0, 30.0, 0.0)}, id="lon-180.5"),
        pytest.param({1: None}, id="no-lat-ref"),
        pytest.param({3: "X"}, id="bad-lon-ref"),
        pytest.param({2: None}, id="no-lat"),
        pytest.param({2: (TiffImagePlugin.IFDRational(40, 0), 0.0, 0.0)}, id="zero-denominator"),
    ],
)
def test_gps_hint_absent_when_invalid(over):
    assert _gps_of(over) is None


def test_no_gps_no_hint():
    assert process_photo(_encode(_photo(64, 48), exif=_exif().tobytes())).gps is None


def test_capture_time_falls_back_to_gps_stamp_and_never_guesses_a_zone():
    exif = _exif(gps=True)
    del exif.get_ifd(0x8769)[0x9011]  # local time without its offset: zone unknown
    data = _encode(_photo(64, 48), exif=exif.tobytes())
    assert process_photo(data).gps.taken_at is None
    exif.get_ifd(0x8825).update({29: "2024:05:01", 7: (2.0, 20.0, 31.0)})
    data = _encode(_photo(64, 48), exif=exif.tobytes())
    assert process_photo(data).gps.taken_at == datetime(2024, 5, 1, 2, 20, 31, tzinfo=UTC)


def test_broken_exif_costs_the_hint_not_the_photo():
    im = _photo(64, 48)
    data = _encode(im, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + bytes(20))
    # Pillow warns while parsing it at open; outside this suite a warning is not an error.
    with pytest.warns(UserWarning, match="Corrupt EXIF"):
        out = process_photo(data)
    assert out.gps is None and out.width == 64


# --- case 6: orientation -------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_fixture_orientation_matches_pillows_reading(orientation):
    stored = _stored_for(orientation)
    stored.getexif()[0x0112] = orientation
    assert ImageOps.exif_transpose(stored).tobytes() == _marked().tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_is_made_upright(orientation):
    data = _encode(_stored_for(orientation), quality=95, exif=_exif(orientation=orientation))
    out = process_photo(data)
    _assert_upright(out.derivative)
    assert 0x0112 not in Image.open(io.BytesIO(out.derivative)).getexif()
    assert (out.width, out.height) == (160, 96)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_png_and_webp_are_made_upright(fmt, orientation):
    extra = {"lossless": True} if fmt == "WEBP" else {}
    exif = _exif(orientation=orientation).tobytes()
    out = process_photo(_encode(_stored_for(orientation), fmt, exif=exif, **extra))
    _assert_upright(out.derivative)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_heic_is_made_upright_exactly_once(orientation):
    # pillow-heif stores Orientation as HEIF rotation, applies it on decode and
    # resets the EXIF tag to 1; turning it again here would be the classic bug.
    exif = _exif(orientation=orientation).tobytes()
    data = _encode(_stored_for(orientation), "HEIF", exif=exif, quality=95)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "HEIF"
        assert im.info["original_orientation"] == (None if orientation == 1 else orientation)
        assert im.getexif().get(0x0112, 1) == 1
    out = process_photo(data)
    assert out.original_format == "heif"
    _assert_upright(out.derivative)


# --- sizes, draft, conversion ---------------------------------------------------


def test_twelve_megapixels_make_a_2016_derivative_and_320_thumbnail():
    out = process_photo(_encode(_photo(4032, 3024), quality=90))
    assert (out.width, out.height) == (2016, 1512)
    assert (out.thumb_width, out.thumb_height) == (320, 240)
    assert Image.open(io.BytesIO(out.derivative)).size == (2016, 1512)
    assert Image.open(io.BytesIO(out.thumbnail)).size == (320, 240)


def test_half_scale_decode_just_short_of_2016_is_kept_not_upscaled():
    """4000x3000 halves to 2000x1500 (0.8 % short): kept, saving a full-size decode."""
    out = process_photo(_encode(_photo(4000, 3000), quality=90))
    assert (out.width, out.height) == (2000, 1500)


def test_larger_shortfall_decodes_at_a_finer_scale():
    """3600x2700 halves to 1800x1350, 11 % short: decoded at full scale and resized."""
    out = process_photo(_encode(_photo(3600, 2700), quality=90))
    assert (out.width, out.height) == (2016, 1512)


def test_portrait_camera_photo_is_turned_then_sized():
    data = _encode(_photo(4032, 3024), quality=90, exif=_exif(orientation=6))
    out = process_photo(data)
    assert (out.width, out.height) == (1512, 2016)
    assert (out.thumb_width, out.thumb_height) == (240, 320)


def test_small_photos_are_not_upscaled():
    out = process_photo(_encode(_photo(640, 480)))
    assert (out.width, out.height, out.thumb_width, out.thumb_height) == (640, 480, 320, 240)
    tiny = process_photo(_encode(_photo(200, 100)))
    assert (tiny.width, tiny.height, tiny.thumb_width, tiny.thumb_height) == (200, 100, 200, 100)


@pytest.fixture
def decoded_sizes(monkeypatch) -> list[tuple[int, int]]:
    """Record the size each photo is decoded at (the spy wraps the real decode)."""
    sizes: list[tuple[int, int]] = []
    real = photos._decode

    def spy(im, target, max_pixels):
        real(im, target, max_pixels)
        sizes.append(im.size)

    monkeypatch.setattr(photos, "_decode", spy)
    return sizes


@pytest.mark.parametrize(
    ("size", "decoded"),
    [
        ((4032, 3024), (2016, 1512)),  # 1/2 scale lands exactly on the derivative
        ((3024, 4032), (1512, 2016)),  # the same for portrait
        ((6048, 4536), (3024, 2268)),  # 1/2: 1/4 would be smaller than 2016
        ((8064, 2016), (2016, 504)),  # a panorama: 1/4 scale, aspect-correct
        ((4000, 3000), (2000, 1500)),  # 1/2 is 0.8 % short of 2016: within DRAFT_SLACK
        ((3600, 2700), (3600, 2700)),  # 1/2 would be 11 % short: full decode
    ],
)
def test_jpeg_is_decoded_at_reduced_dct_scale_never_below_need(decoded_sizes, size, decoded):
    out = process_photo(_encode(_photo(*size), quality=85))
    assert decoded_sizes == [decoded]
    assert max(out.width, out.height) == min(max(decoded), 2016)


def test_square_draft_box_would_not_reduce():
    # Why the draft request must be aspect-correct (QUALITY.md): the same photo,
    # asked for with a square box, is decoded at full size.
    im = Image.open(io.BytesIO(_encode(_photo(4032, 3024))))
    im.draft("RGB", (2016, 2016))
    assert im.size == (4032, 3024)


@given(
    st.integers(min_value=1, max_value=60_000),
    st.integers(min_value=1, max_value=60_000),
    st.integers(min_value=16, max_value=4096),
)
def test_fit_size_bounds_the_long_edge_and_keeps_the_aspect(w, h, edge):
    fw, fh = fit_size((w, h), edge)
    assert max(fw, fh) <= edge and fw >= 1 and fh >= 1
    if max(w, h) <= edge:
        assert (fw, fh) == (w, h)
    else:
        assert max(fw, fh) == edge
        assert abs(fw * h - fh * w) <= max(w, h)  # within one pixel of rounding


def test_rgba_is_flattened_onto_white():
    im = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (50, 0, 100, 100))
    _, c = _marks(process_photo(_encode(im, "PNG")).derivative)
    assert _near(c["tl"], WHITE) and _near(c["tr"], RED)


@pytest.mark.parametrize("mode", ["P", "LA", "1", "L"])
def test_other_png_modes_become_rgb(mode):
    base = Image.new("RGB", (100, 100), WHITE)
    base.paste(RED, (50, 0, 100, 100))
    im = base.convert(mode)
    kw = {"transparency": im.getpixel((0, 0))} if mode == "P" else {}
    out = process_photo(_encode(im, "PNG", **kw))
    assert Image.open(io.BytesIO(out.derivative)).mode == "RGB"
    _, c = _marks(out.derivative)
    assert _near(c["tl"], WHITE)


def test_sixteen_bit_grey_png_is_scaled_not_clipped():
    im = Image.new("I;16", (64, 64), 40000)  # 61 % grey, not white
    grey = Image.open(io.BytesIO(process_photo(_encode(im, "PNG")).derivative)).getpixel((32, 32))
    assert _near(grey, (155, 155, 155), tol=6)


def test_sixteen_bit_rgb_png_is_read():
    rgb16 = np.zeros((64, 64, 3), dtype=">u2")
    rgb16[..., 0] = 65535
    rows = b"".join(b"\x00" + rgb16[y].tobytes() for y in range(64))
    out = process_photo(_png_by_hand(64, 64, zlib.compress(rows), depth=16, colour=2))
    _, c = _marks(out.derivative)
    assert _near(c["tl"], RED, tol=8)


def test_cmyk_jpeg_becomes_rgb():
    out = process_photo(_encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0))))
    im = Image.open(io.BytesIO(out.derivative))
    assert im.mode == "RGB" and _near(im.getpixel((32, 32)), RED)


def test_grey_jpeg_at_reduced_scale():
    out = process_photo(_encode(_photo(4032, 3024).convert("L")))
    assert (out.width, out.height) == (2016, 1512)
    assert Image.open(io.BytesIO(out.derivative)).mode == "RGB"


def test_mpo_from_a_phone_is_a_jpeg():
    frames = [_marked(), Image.new("RGB", (160, 96), "black")]
    data = _encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    out = process_photo(data)
    assert out.original_format == "jpeg"
    _assert_upright(out.derivative)


def test_output_is_baseline_jpeg_at_quality_82():
    im = _photo(640, 480)
    out = process_photo(_encode(im, quality=98, progressive=True))
    reference = Image.open(io.BytesIO(_encode(im, quality=82)))
    derivative = Image.open(io.BytesIO(out.derivative))
    assert derivative.quantization == reference.quantization
    assert "progressive" not in derivative.info


def _scene(width: int, height: int, seed: int) -> Image.Image:
    """Random coloured boxes: enough structure for a perceptual hash to mean something."""
    rng = random.Random(seed)
    im = Image.new("RGB", (800, 600), "white")
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x, y = rng.randrange(700), rng.randrange(500)
        box = (x, y, x + rng.randrange(20, 300), y + rng.randrange(20, 300))
        draw.rectangle(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    return im.resize((width, height), Image.Resampling.LANCZOS)


def test_hashes():
    data = _encode(_scene(800, 600, seed=1), quality=90)
    out = process_photo(data)
    assert out.sha256 == hashlib.sha256(data).hexdigest()
    assert len(out.phash) == 16 and int(out.phash, 16) >= 0
    resent = process_photo(_encode(_scene(600, 450, seed=1), quality=60))
    assert imagehash.hex_to_hash(out.phash) - imagehash.hex_to_hash(resent.phash) <= 6
    other = process_photo(_encode(_scene(800, 600, seed=2)))
    assert imagehash.hex_to_hash(out.phash) - imagehash.hex_to_hash(other.phash) > 12


def test_heif_opener_is_registered_with_extras_off():
    assert "HEIF" in Image.ID
    assert pillow_heif.options.THUMBNAILS is False
    assert pillow_heif.options.DEPTH_IMAGES is False


# --- case 9: bounded decoder concurrency -----------------------------------------


def test_slots_refuse_when_full_and_recover():
    slots = DecodeSlots(2)
    gate, inside = threading.Event(), threading.Semaphore(0)

    def occupy():
        with slots.hold(timeout=30):
            inside.release()
            gate.wait(30)

    holders = [threading.Thread(target=occupy) for _ in range(2)]
    for t in holders:
        t.start()
    assert inside.acquire(timeout=30) and inside.acquire(timeout=30)
    with pytest.raises(DecoderBusy) as err, slots.hold(timeout=0):
        pass
    assert err.value.status == 503 and err.value.code == "busy"
    assert err.value.retry_after == 1
    with pytest.raises(DecoderBusy) as err, slots.hold(timeout=0.05):
        pass
    assert err.value.retry_after == 1  # ceil, and never 0
    gate.set()
    for t in holders:
        t.join(30)
    with slots.hold(timeout=0), slots.hold(timeout=0):
        pass  # both slots came back


def test_retry_after_is_the_wait_rounded_up(monkeypatch):
    slots = DecodeSlots(1)
    monkeypatch.setattr(slots._sem, "acquire", lambda *a, **kw: False)  # no real waiting
    with pytest.raises(DecoderBusy) as err, slots.hold(timeout=2.5):
        pass
    assert err.value.retry_after == 3


def test_slot_is_released_when_the_work_fails():
    slots = DecodeSlots(1)
    for _ in range(3):
        with pytest.raises(CorruptImage), slots.hold(timeout=0):
            raise CorruptImage("boom")


def test_at_most_n_decodes_run_at_once(monkeypatch):
    slots = photos.configure_decode_slots(2)
    monkeypatch.setattr(photos, "decode_slots", slots)  # restored after the test
    lock, state = threading.Lock(), {"now": 0, "peak": 0}
    real = photos.process_photo

    def counting(data, **kw):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        try:
            return real(data, **kw)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(photos, "process_photo", counting)
    data = _encode(_photo(1200, 900))
    results: list = []

    def work():
        results.append(process_photo_bounded(data, timeout=60, max_edge=600))

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 10 and all(r.width == 600 for r in results)
    assert 1 <= state["peak"] <= 2


def test_bounded_wrapper_says_busy_with_retry_after(monkeypatch):
    slots = DecodeSlots(1)
    monkeypatch.setattr(photos, "decode_slots", slots)
    with slots.hold(timeout=0), pytest.raises(DecoderBusy) as err:
        process_photo_bounded(_encode(_photo(64, 64)), timeout=0)
    assert err.value.retry_after >= 1


def test_slot_count_must_be_positive():
    with pytest.raises(ValueError):
        DecodeSlots(0)
