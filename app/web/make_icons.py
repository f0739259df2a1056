"""Draw the home-screen icons with Pillow: `python -m app.web.make_icons` (PNGs are committed)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent / "static" / "icons"
BRAND = (11, 83, 148)
WHITE = (255, 255, 255)
# Maskable icons are cropped to a circle of 80 % of the side: keep the mark inside it.
MASKABLE_SAFE = 0.8


def draw_mark(size: int, *, scale: float = 1.0, rounded: bool = True) -> Image.Image:
    """A white map pin with an exclamation mark on the brand blue."""
    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    if rounded:
        d.rounded_rectangle([0, 0, size - 1, size - 1], radius=size // 5, fill=BRAND)
    else:
        d.rectangle([0, 0, size - 1, size - 1], fill=BRAND)
    c = size / 2
    r = size * 0.22 * scale
    top = c - size * 0.26 * scale
    # The pin: a circle over a triangle pointing down.
    d.ellipse([c - r, top, c + r, top + 2 * r], fill=WHITE)
    tip_y = c + size * 0.32 * scale
    d.polygon(
        [(c - r * 0.86, top + r * 1.5), (c + r * 0.86, top + r * 1.5), (c, tip_y)], fill=WHITE
    )
    # The exclamation mark, cut out in brand blue.
    bar_w = r * 0.28
    d.rounded_rectangle(
        [c - bar_w / 2, top + r * 0.35, c + bar_w / 2, top + r * 1.2], radius=bar_w / 2, fill=BRAND
    )
    dot = bar_w * 0.6
    d.ellipse([c - dot, top + r * 1.38, c + dot, top + r * 1.38 + 2 * dot], fill=BRAND)
    return im


def main() -> None:
    """Write icon-192.png, icon-512.png and maskable-512.png."""
    OUT.mkdir(parents=True, exist_ok=True)
    for size in (192, 512):
        draw_mark(size).save(OUT / f"icon-{size}.png", optimize=True)
    draw_mark(512, scale=MASKABLE_SAFE, rounded=False).save(OUT / "maskable-512.png", optimize=True)


if __name__ == "__main__":
    main()
