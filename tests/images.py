"""Image fixtures made in code: phone-like JPEGs with metadata, bombs, corrupt files."""

from __future__ import annotations

import io
import struct
import zlib
from fractions import Fraction

from PIL import Image, ImageDraw

COMMENT = b"CANARY-COMMENT-7f3k"


def _dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    value = abs(value)
    deg = int(value)
    minutes = int((value - deg) * 60)
    seconds = Fraction(round((value - deg - minutes / 60) * 3600 * 10000), 10000)
    return Fraction(deg), Fraction(minutes), seconds


def marked_image(width: int, height: int) -> Image.Image:
    """An image with a red top-left corner and a blue bottom-right corner, to check rotation."""
    im = Image.new("RGB", (width, height), (128, 128, 128))
    draw = ImageDraw.Draw(im)
    cw, ch = max(1, width // 5), max(1, height // 5)
    draw.rectangle([0, 0, cw, ch], fill=(255, 0, 0))
    draw.rectangle([width - cw, height - ch, width, height], fill=(0, 0, 255))
    return im


def phone_jpeg(
    width: int = 400,
    height: int = 300,
    *,
    orientation: int = 1,
    gps: tuple[float, float] | None = (40.6406, 122.5052),
    comment: bytes | None = COMMENT,
    quality: int = 85,
) -> bytes:
    """A JPEG like a phone's: EXIF with GPS and Orientation, a COM comment, an ICC profile."""
    im = marked_image(width, height)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "CanaryPhoneMaker"
    if gps:
        lat, lon = gps
        exif.get_ifd(0x8825).update(
            {
                1: "N" if lat >= 0 else "S",
                2: _dms(lat),
                3: "E" if lon >= 0 else "W",
                4: _dms(lon),
            }
        )
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    kwargs = {"exif": exif.tobytes(), "icc_profile": icc, "quality": quality}
    if comment:
        kwargs["comment"] = comment
    im.save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims huge dimensions: a decompression bomb for the open check."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
