"""Photo intake: untrusted bytes in; a clean JPEG, a thumbnail and a location hint out.

Pure: no Flask, no database. Every photo is decoded and re-encoded onto a fresh
canvas, so nothing the sender embedded (EXIF, GPS, XMP, comments, ICC profiles,
trailing polyglot payloads) can reach storage; GPS and capture time are read
first, as a hint for the caller, and then dropped with everything else.
"""

from __future__ import annotations

import hashlib
import math
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO

import imagehash
import pillow_heif
import scipy.fftpack  # noqa: F401  (see below)
from PIL import Image, ImageFile

from app.errors import DomainError, Unavailable

# HEIF thumbnails, depth maps and auxiliary images are never used: not parsing them
# keeps hostile input away from that code and saves memory.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
# imagehash.phash imports scipy.fftpack (177 modules, 0.3 s, OpenBLAS mapped) on its first
# call. Done inside the first photo request of a worker under a memory cap, that import
# failed half-way and every later photo got a 500 (tests/system/test_memory_cap.py); the
# import above does it once, at start-up.
# A truncated upload must fail loudly, never be padded with grey (this is Pillow's
# default; set here so a stray True elsewhere cannot let half-photos through).
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Pillow plugin ids tried at open, and the name we record; MPO is what Pillow
# calls a JPEG carrying extra frames (most phone cameras write these).
OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF")
_FORMAT_NAMES = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp", "HEIF": "heif"}

# Geometry rule: a side under 8 px or an aspect beyond 50:1 is not a photo anyone
# can look at (phone panoramas stay under ~12:1); such headers are forged or broken.
MIN_SIDE = 8
MAX_ASPECT = 50

JPEG_QUALITY = 82
# How far below the derivative size a reduced-scale JPEG decode may land (then no upscale).
DRAFT_SLACK = 0.97
# reduce() by whole factors first while the image stays >= 3x the target: as sharp
# as a full Lanczos pass and several times cheaper on big non-JPEG sources.
REDUCING_GAP = 3.0
# Thumbnails are seen at 320 px: Pillow's own thumbnail() gap is close enough, and
# a third of the cost.
THUMB_REDUCING_GAP = 2.0

# What a Pillow decoder raises on malformed input; anything else is our bug.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    RuntimeError,
    struct.error,
    IndexError,
    KeyError,
    ZeroDivisionError,
)

# EXIF Orientation (0x0112) -> the transpose that makes the image upright.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_DATETIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
_GPS_TIME, _GPS_DATE = 7, 29

_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_OTHER_MAGIC = (
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",  # TIFF (and most camera raw files)
    b"MM\x00*",
    b"8BPS",  # Photoshop
    b"BM",  # Windows bitmap
    b"%PDF",
    b"PK\x03\x04",  # ZIP, DOCX, ...
    b"\x00\x00\x01\x00",  # ICO
    b"\xff\x0a",  # JPEG XL codestream
    b"\x00\x00\x00\x0cJXL ",
    b"\x00\x00\x00\x0cjP  ",  # JPEG 2000
    b"qoif",
)


class PhotoRejected(DomainError):
    """A photo that cannot be taken; the rest of the tip can still go ahead without it."""

    status = 422


class ImageTooLarge(PhotoRejected):
    """More pixels than we agree to decode (a decompression bomb, or just huge)."""

    code = "image_too_large"


class CorruptImage(PhotoRejected):
    """The bytes claim or resemble an allowed format but do not decode to a usable photo."""

    code = "corrupt_image"


class UnsupportedFormat(PhotoRejected):
    """Not JPEG, PNG, WEBP or HEIF: we never hand other formats to a decoder."""

    code = "unsupported_format"


class DecoderBusy(Unavailable):
    """Every decode slot stayed taken for the whole wait; the client should retry."""

    code = "busy"


@dataclass(frozen=True)
class GpsHint:
    """Where and when the camera says the photo was taken; a hint, never proof."""

    latitude: float
    longitude: float
    taken_at: datetime | None  # aware UTC, or None when the zone cannot be known


@dataclass(frozen=True)
class ProcessedPhoto:
    """Everything the intake stores about one photo; the original bytes are not kept."""

    sha256: str  # of the original upload: spots the same file sent twice
    original_format: str
    derivative: bytes
    width: int
    height: int
    thumbnail: bytes
    thumb_width: int
    thumb_height: int
    phash: str  # perceptual hash: spots the same scene re-encoded or resized
    gps: GpsHint | None


def process_photo(
    data: bytes, *, max_pixels: int = 64_000_000, max_edge: int = 2016, thumb_edge: int = 320
) -> ProcessedPhoto:
    """Decode untrusted bytes once, at the least scale that still fills max_edge; re-encode."""
    digest = hashlib.sha256(data).hexdigest()
    im = _open(data, max_pixels)
    with im:
        original_format = _FORMAT_NAMES[im.format or ""]
        target = fit_size(im.size, max_edge)
        _decode(im, target, max_pixels)
        if max(im.size) < max(target):  # drafted within DRAFT_SLACK: keep, never upscale
            target = im.size
        orientation, gps = _read_exif(im)
        # The canvas copy happens before close(), which frees the decoded pixels.
        derivative = _fresh_canvas(_orient(_resize(_to_rgb(im), target), orientation))
    thumb = _resize(derivative, fit_size(derivative.size, thumb_edge), THUMB_REDUCING_GAP)
    return ProcessedPhoto(
        sha256=digest,
        original_format=original_format,
        derivative=_encode_jpeg(derivative),
        width=derivative.width,
        height=derivative.height,
        thumbnail=_encode_jpeg(thumb),
        thumb_width=thumb.width,
        thumb_height=thumb.height,
        phash=str(imagehash.phash(thumb)),
        gps=gps,
    )


def fit_size(size: tuple[int, int], edge: int) -> tuple[int, int]:
    """Scale (w, h) so the longer side is at most edge, keeping the aspect ratio."""
    w, h = size
    if max(w, h) <= edge:
        return w, h
    scale = edge / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


# --- open and decode -------------------------------------------------------

# Pillow only warns (on stderr, once per process) about images between its warning and
# error thresholds; both lie above our own pixel limit, so make it the refusal it is.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Read only the header, with the allow-list, and refuse bad geometry before any decode."""
    if not data:
        raise CorruptImage("the photo is empty")
    try:
        im = Image.open(BytesIO(data), formats=OPEN_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own global limit (or its warning, when warnings are errors) fired
        # first; the file is far beyond ours anyway.
        raise ImageTooLarge(_too_large_message(None, max_pixels)) from None
    except Image.UnidentifiedImageError:
        raise _unidentified(data) from None
    except (*_DECODE_ERRORS, Warning):
        # A Warning is only raised when warnings are errors (as in the test suite):
        # Pillow stopped mid-parse, so what we have is not a photo we can trust.
        raise CorruptImage("the photo could not be read") from None
    try:
        _check_geometry(im.size, max_pixels)
    except PhotoRejected:
        im.close()
        raise
    return im


def _check_geometry(size: tuple[int, int], max_pixels: int) -> None:
    """Apply our pixel limit ourselves: Image.MAX_IMAGE_PIXELS is global and may be changed."""
    w, h = size
    if w * h > max_pixels:
        raise ImageTooLarge(_too_large_message(w * h, max_pixels))
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_ASPECT * min(w, h):
        raise CorruptImage(f"the photo has impossible dimensions ({w}x{h})")


def _too_large_message(pixels: int | None, max_pixels: int) -> str:
    """Say the limit in megapixels, which is what a person can act on."""
    limit = f"the limit is {max_pixels / 1e6:g} megapixels"
    if pixels is None:
        return f"the photo is too large ({limit})"
    return f"the photo is too large ({pixels / 1e6:.0f} megapixels; {limit})"


def _unidentified(data: bytes) -> PhotoRejected:
    """Tell a broken photo (fix the file) from another kind of file (send a photo instead)."""
    head = data[:512]
    if _has_allowed_magic(head):
        return CorruptImage("the photo could not be read")
    if head.startswith(_OTHER_MAGIC) or head[4:8] == b"ftyp" or _looks_like_text(head):
        return UnsupportedFormat("only JPEG, PNG, WEBP and HEIC photos are accepted")
    return CorruptImage("the file is not a readable photo")


def _has_allowed_magic(head: bytes) -> bool:
    """True when the bytes start like JPEG, PNG, WEBP or HEIF."""
    return (
        head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"))
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        or (head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS)
    )


def _looks_like_text(head: bytes) -> bool:
    """SVG, HTML, XML, JSON and scripts are text: no NULs and no stray control bytes."""
    return all(b >= 0x20 or b in b"\t\n\r\f" for b in head)


def _decode(im: Image.Image, target: tuple[int, int], max_pixels: int) -> None:
    """Decode fully (load, not verify) so truncation and garbage are caught here."""
    if im.format in ("JPEG", "MPO") and target != im.size:
        # The DCT can decode at 1/2, 1/4 or 1/8 scale almost for free; Pillow picks the
        # largest factor keeping both sides >= the requested size, so the request must
        # have the photo's own aspect ratio (a square box is a no-op on landscapes).
        # The longest-edge bound is the same before and after rotation.
        # A 4000x3000 photo halves to 2000x1500, 0.8 % short of 2016: accepting that
        # slack saves a full-size decode (about 4x the time) for a common phone size.
        im.draft("RGB", (math.ceil(target[0] * DRAFT_SLACK), math.ceil(target[1] * DRAFT_SLACK)))
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(_too_large_message(None, max_pixels)) from None
    except (*_DECODE_ERRORS, Warning):
        raise CorruptImage("the photo is truncated or damaged") from None
    # A HEIF may decode to a size other than its header's; hold it to the same limits.
    _check_geometry(im.size, max_pixels)


# --- metadata: read what we need, then let it go ---------------------------


def _read_exif(im: Image.Image) -> tuple[int, GpsHint | None]:
    """Return the EXIF orientation and GPS hint; broken EXIF must never cost the photo."""
    try:
        exif = im.getexif()
        orientation = exif.get(_ORIENTATION, 1)
        gps = _gps_hint(exif)
    except Exception:  # malformed EXIF raises all sorts, and warnings when they are errors
        return 1, None
    return (orientation if orientation in _TRANSPOSE else 1), gps


def _gps_hint(exif: Image.Exif) -> GpsHint | None:
    """Build a hint from the GPS IFD, or None when any part is missing or out of range."""
    gps = exif.get_ifd(_GPS_IFD)
    lat = _degrees(gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF), "N", "S", 90.0)
    lon = _degrees(gps.get(_GPS_LON), gps.get(_GPS_LON_REF), "E", "W", 180.0)
    if lat is None or lon is None:
        return None
    return GpsHint(latitude=lat, longitude=lon, taken_at=_taken_at(exif.get_ifd(_EXIF_IFD), gps))


def _degrees(dms, ref, positive: str, negative: str, limit: float) -> float | None:
    """Turn (deg, min, sec) rationals and an N/S or E/W ref into signed degrees."""
    ref = _text(ref).upper()
    if ref not in (positive, negative) or not isinstance(dms, tuple) or not 1 <= len(dms) <= 3:
        return None  # without its ref a coordinate may be in the wrong hemisphere
    parts = [float(p) for p in dms]
    if not all(math.isfinite(p) and p >= 0 for p in parts):
        return None
    value = sum(p / 60**i for i, p in enumerate(parts))
    if value > limit:
        return None
    return -value if ref == negative else value


def _taken_at(exif_ifd: dict, gps: dict) -> datetime | None:
    """Capture time in UTC: local time plus its offset, else the GPS fix time (always UTC)."""
    local = _exif_datetime(exif_ifd.get(_DATETIME_ORIGINAL))
    offset = _exif_offset(exif_ifd.get(_OFFSET_TIME_ORIGINAL))
    if local is not None and offset is not None:
        return local.replace(tzinfo=offset).astimezone(UTC)
    return _gps_datetime(gps.get(_GPS_DATE), gps.get(_GPS_TIME))


def _exif_datetime(value) -> datetime | None:
    """Parse EXIF's 'YYYY:MM:DD HH:MM:SS' (naive: EXIF does not say the zone here)."""
    try:
        return datetime.strptime(_text(value)[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def _exif_offset(value) -> timezone | None:
    """Parse EXIF's '+HH:MM' offset."""
    text = _text(value)
    if len(text) != 6 or text[0] not in "+-" or text[3] != ":":
        return None
    try:
        minutes = int(text[1:3]) * 60 + int(text[4:6])
    except ValueError:
        return None
    if minutes > 14 * 60:
        return None
    return timezone(timedelta(minutes=-minutes if text[0] == "-" else minutes))


def _gps_datetime(date, hms) -> datetime | None:
    """Combine GPSDateStamp and GPSTimeStamp, both UTC by definition."""
    try:
        day = datetime.strptime(_text(date)[:10], "%Y:%m:%d")
        h, m, s = (float(x) for x in hms)
        return day.replace(tzinfo=UTC) + timedelta(hours=h, minutes=m, seconds=s)
    except (TypeError, ValueError, OverflowError):
        return None


def _text(value) -> str:
    """EXIF ASCII values arrive as str or bytes, often NUL-padded."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.strip("\x00 ") if isinstance(value, str) else ""


# --- pixels ------------------------------------------------------------------


def _to_rgb(im: Image.Image) -> Image.Image:
    """Bring any decoded mode to 8-bit RGB; transparency is flattened onto white."""
    if im.mode.startswith("I"):
        # 16-bit greyscale: Pillow's convert clips at 255 instead of scaling.
        im = im.convert("I").point(lambda v: v * (1 / 257)).convert("L")
        im.info.pop("transparency", None)  # a 16-bit key colour no longer matches
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba)
        return flat
    return im if im.mode == "RGB" else im.convert("RGB")


def _resize(
    im: Image.Image, size: tuple[int, int], reducing_gap: float = REDUCING_GAP
) -> Image.Image:
    """Lanczos, after whole-factor reduction while far from the target."""
    if im.size == size:
        return im
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=reducing_gap)


def _orient(im: Image.Image, orientation: int) -> Image.Image:
    """Apply the EXIF orientation once, on the small image where it is cheap.

    pillow-heif has already applied HEIF's own rotation and reset the EXIF tag to 1,
    so a HEIC reaches here as orientation 1 and is not turned twice.
    """
    method = _TRANSPOSE.get(orientation)
    return im if method is None else im.transpose(method)


def _fresh_canvas(im: Image.Image) -> Image.Image:
    """Copy pixels onto a new image: its info dict is empty, so no metadata can ride along."""
    canvas = Image.new("RGB", im.size)
    canvas.paste(im)
    return canvas


def _encode_jpeg(im: Image.Image) -> bytes:
    """Baseline JPEG with no EXIF, ICC, XMP or comment (the canvas carries none to copy)."""
    if im.info:
        im = _fresh_canvas(im)
    out = BytesIO()
    im.save(out, "JPEG", quality=JPEG_QUALITY, progressive=False, optimize=False)
    return out.getvalue()


# --- bounded concurrency -----------------------------------------------------


class DecodeSlots:
    """At most n decodes at once per process: each holds tens of MB, and the cores are few."""

    def __init__(self, n: int):
        if n < 1:
            raise ValueError("need at least one decode slot")
        self.size = n
        self._sem = threading.BoundedSemaphore(n)

    @contextmanager
    def hold(self, timeout: float) -> Iterator[None]:
        """Wait up to timeout seconds for a slot, else raise DecoderBusy with a Retry-After."""
        got = self._sem.acquire(timeout=timeout) if timeout > 0 else self._sem.acquire(False)
        if not got:
            raise DecoderBusy(
                "too many photos are being processed; try again shortly",
                retry_after=max(1, math.ceil(timeout)),
            )
        try:
            yield
        finally:
            self._sem.release()


# Settings.decode_slots defaults to 2 (two cores); the app calls configure_decode_slots.
decode_slots = DecodeSlots(2)
_configure_lock = threading.Lock()


def configure_decode_slots(n: int) -> DecodeSlots:
    """Replace the process-wide slots (at start-up; decodes in flight finish on the old ones)."""
    global decode_slots
    with _configure_lock:
        decode_slots = DecodeSlots(n)
        return decode_slots


def process_photo_bounded(data: bytes, *, timeout: float, **kw) -> ProcessedPhoto:
    """process_photo inside a decode slot, so a burst queues instead of exhausting memory."""
    with decode_slots.hold(timeout):
        return process_photo(data, **kw)
