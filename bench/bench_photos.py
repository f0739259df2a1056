"""Benchmark: a 12 MP JPEG through Tipline's photo pipeline, beside its floor and baselines.

Run from the repository root: `python bench/bench_photos.py [--size 4032x3024] [--runs 9]`.
Every contender runs in the same process on the same bytes, interleaved round by
round so a noisy neighbour hurts them alike; medians are reported, never one run.
A 12 MP HEIC (made here with pillow-heif from the same pixels) goes through the
pipeline too, beside its own floor: full decode (HEIC has no reduced-scale decode)
+ the same resize + one encode.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.reports.photos import JPEG_QUALITY, fit_size, process_photo
from bench.report import absolute, compare, median, save

MAX_EDGE = 2016
THUMB_EDGE = 320
QUALITY = JPEG_QUALITY


def make_pixels(width: int, height: int) -> Image.Image:
    """Camera-like pixels: gradients plus sensor noise."""
    rng = np.random.default_rng(12)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    channels = [170 * x + 40 * y, 90 + 120 * y * x, 200 - 150 * x + 0 * y]
    base = np.stack([np.broadcast_to(c, (height, width)) for c in channels], axis=-1)
    noise = rng.normal(0, 9, (height, width, 3)).astype(np.float32)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def make_photo(width: int, height: int, orientation: int = 1) -> bytes:
    """A camera-like JPEG, quality 90, with EXIF and GPS."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "BenchCam", "Model 12", orientation
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 10:20:30"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (40.0, 38.0, 26.16), "E", (122.0, 30.0, 18.72)
    out = BytesIO()
    make_pixels(width, height).save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def make_heic(width: int, height: int) -> bytes:
    """The same pixels as a HEIC (x265's ultrafast preset: the slow default takes a minute)."""
    out = BytesIO()
    heif = pillow_heif.from_pillow(make_pixels(width, height))
    heif.save(out, quality=60, enc_params={"preset": "ultrafast"})
    return out.getvalue()


def heic_floor(data: bytes) -> None:
    """HEIC's least: a full decode (no reduced-scale decode exists), the resize, one encode."""
    im = Image.open(BytesIO(data))
    im.load()
    im = im.convert("RGB").resize(fit_size(im.size, MAX_EDGE), Image.Resampling.LANCZOS)
    im.save(BytesIO(), "JPEG", quality=QUALITY)


def floor(data: bytes) -> None:
    """The least any pipeline must do: DCT-scaled decode and one encode of the derivative."""
    im = Image.open(BytesIO(data))
    target = fit_size(im.size, MAX_EDGE)
    im.draft("RGB", target)
    im.load()
    if im.size != target:  # the DCT scale cannot land on 2016 for this size
        im = im.resize(target, Image.Resampling.LANCZOS)
    im.save(BytesIO(), "JPEG", quality=QUALITY)


def tipline(data: bytes) -> None:
    """Tipline's whole job: checks, hint, derivative, thumbnail, hashes."""
    process_photo(data, max_edge=MAX_EDGE, thumb_edge=THUMB_EDGE)


def naive(data: bytes) -> None:
    """The pipeline most code writes first: full decode, rotate, resize, save, thumbnail."""
    im = Image.open(BytesIO(data))
    im.load()
    im = ImageOps.exif_transpose(im)
    im = im.resize(fit_size(im.size, MAX_EDGE), Image.Resampling.LANCZOS)
    im.save(BytesIO(), "JPEG", quality=QUALITY)
    thumb = im.copy()
    thumb.thumbnail((THUMB_EDGE, THUMB_EDGE))
    thumb.save(BytesIO(), "JPEG", quality=QUALITY)


def imagemagick() -> tuple[str | None, str]:
    """Path of a real ImageMagick `convert`, or None and the reason it is skipped."""
    # Debian's ImageMagick first: a `convert` earlier on PATH may be a stand-in.
    path = "/usr/bin/convert" if os.access("/usr/bin/convert", os.X_OK) else shutil.which("convert")
    if path is None:
        return None, "no `convert` on PATH"
    try:
        version = subprocess.run(
            [path, "-version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`{path} -version` failed: {exc}"
    first = (version.stdout or version.stderr).strip().splitlines()[:1]
    if version.returncode != 0 or not first or "ImageMagick" not in first[0]:
        return None, f"`{path}` is not ImageMagick (it says: {' '.join(first)[:120]!r})"
    return path, first[0]


def magick_job(convert: str, src: str, workdir: str):
    """ImageMagick doing the same job: orient, fit 2016, strip, encode; then a thumbnail."""

    def run(_data: bytes) -> None:
        big, small = os.path.join(workdir, "d.jpg"), os.path.join(workdir, "t.jpg")
        size = f"{MAX_EDGE}x{MAX_EDGE}>"
        thumb = f"{THUMB_EDGE}x{THUMB_EDGE}>"
        common = ["-auto-orient", "-strip", "-quality", str(QUALITY)]
        # jpeg:size lets ImageMagick decode at reduced DCT scale too, as Tipline does.
        hint = ["-define", f"jpeg:size={MAX_EDGE}x{MAX_EDGE * 3 // 4}"]
        subprocess.run([convert, *hint, src, *common, "-resize", size, big], check=True)
        subprocess.run([convert, big, *common, "-resize", thumb, small], check=True)

    return run


def measure(contenders: dict, data: bytes, runs: int) -> dict[str, list[float]]:
    """Milliseconds of every run per contender, one warm-up each, rounds interleaved."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():
        fn(data)
    for _ in range(runs):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn(data)
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def rows_for(jpeg: dict[str, list[float]], heic: dict[str, list[float]]) -> list:
    """The table: the pipeline against its floor, the naive pipeline and ImageMagick; HEIC."""
    ms = {name: median(t) for name, t in jpeg.items()}
    runs = {"tipline": jpeg["tipline"]}
    rows = [
        compare(
            "12 MP JPEG: pipeline vs floor",
            ms["tipline"],
            ms["floor"],
            "ms",
            "reduced-scale decode + 1 encode",
            goal=("<=", 1.3),
            runs=runs | {"floor": jpeg["floor"]},
        ),
        compare(
            "12 MP JPEG: naive is slower by",
            ms["tipline"],
            ms["naive"],
            "ms",
            "naive full decode",
            goal=(">=", 3.0),
            invert=True,
            runs=runs | {"naive": jpeg["naive"]},
        ),
    ]
    if "magick" in ms:
        rows.append(
            compare(
                "12 MP JPEG: ImageMagick is slower by",
                ms["tipline"],
                ms["magick"],
                "ms",
                "ImageMagick convert",
                goal=(">=", 1.0),
                invert=True,
                runs=runs | {"magick": jpeg["magick"]},
            )
        )
    else:
        rows.append(absolute("12 MP JPEG: ImageMagick (not installed)", ms["tipline"], "ms"))
    rows.append(
        compare(
            "12 MP HEIC: pipeline vs its floor",
            median(heic["tipline"]),
            median(heic["floor"]),
            "ms",
            "full decode + 1 encode",
            runs=heic,
        )
    )
    return rows


def main() -> None:
    """Build the photo, time every contender, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 4032x3024 is what 12 MP phone cameras write; its half-scale DCT decode is
    # exactly 2016x1512. Try 4000x3000 to see a size the DCT scale cannot hit.
    parser.add_argument("--size", default="4032x3024")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--orientation", type=int, default=1, choices=range(1, 9))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    runs = max(5, args.runs)
    data = make_photo(width, height, args.orientation)
    print(
        f"photo: {width}x{height} JPEG q90 with EXIF+GPS, orientation {args.orientation}, "
        f"{len(data) / 1e6:.2f} MB"
    )
    contenders = {"floor": floor, "tipline": tipline, "naive": naive}
    notes = []
    probe = Image.open(BytesIO(data))
    probe.draft("RGB", fit_size(probe.size, MAX_EDGE))
    if probe.size != fit_size((width, height), MAX_EDGE):
        notes.append(
            f"the DCT scale cannot reach {fit_size((width, height), MAX_EDGE)} from this size "
            f"(it decodes at {probe.size}), so the floor includes a Lanczos resize"
        )
    convert, why = imagemagick()
    with tempfile.TemporaryDirectory() as workdir:
        if convert is None:
            notes.append(f"ImageMagick skipped: {why}")
        else:
            src = os.path.join(workdir, "src.jpg")
            Path(src).write_bytes(data)
            contenders["magick"] = magick_job(convert, src, workdir)
            notes.append(f"ImageMagick: {why}, with -define jpeg:size (reduced-scale decode)")
        jpeg = measure(contenders, data, runs)
    heic = make_heic(width, height)
    print(f"HEIC: {width}x{height}, quality 60, {len(heic) / 1e6:.2f} MB")
    heic_runs = measure({"floor": heic_floor, "tipline": tipline}, heic, max(5, runs // 2))
    save(
        "photos",
        f"2. Photos: {width}x{height} through the pipeline (medians of {runs} interleaved runs; "
        f"HEIC {max(5, runs // 2)})",
        rows_for(jpeg, heic_runs),
        settings={"size": args.size, "runs": runs, "max_edge": MAX_EDGE, "quality": QUALITY},
        notes=notes,
    )


if __name__ == "__main__":
    main()
