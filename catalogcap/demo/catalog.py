"""A synthetic product catalog, drawn with Pillow, with ground-truth captions in two styles.

Every image has known attributes (product, colour, pattern, background), so we know what
a correct caption says: a *generic* style (what a stock captioning model writes, used to
pretrain the demo model) and a *house* style (what a catalog's editors want, used as the
reviewers' corrections). Deterministic by seed: the same seed draws the same catalog.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

PRODUCTS = ("shirt", "mug", "shoe", "bag", "hat", "lamp", "vase", "sofa")
COLOURS = {
    "red": (200, 30, 40), "blue": (30, 70, 200), "green": (30, 150, 60), "yellow": (235, 200, 30),
    "black": (25, 25, 25), "orange": (240, 120, 20), "purple": (120, 40, 160), "pink": (240, 130, 180),
}
PATTERNS = ("plain", "striped", "dotted")
BACKGROUNDS = {"white": (250, 250, 250), "grey": (150, 150, 150), "beige": (225, 205, 170)}
MATERIAL = {"shirt": "cotton", "mug": "ceramic", "shoe": "leather", "bag": "canvas", "hat": "wool",
            "lamp": "metal", "vase": "glass", "sofa": "fabric"}
USE = {"shirt": "everyday wear", "mug": "hot drinks", "shoe": "walking", "bag": "daily errands",
       "hat": "cold days", "lamp": "reading", "vase": "fresh flowers", "sofa": "the living room"}


@dataclass(frozen=True)
class Product:
    index: int
    product: str
    colour: str
    pattern: str
    background: str
    fmt: str
    size: tuple[int, int]
    rotated: bool
    transparent: bool

    @property
    def filename(self) -> str:
        ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[self.fmt]
        return f"{self.index:04d}-{self.colour}-{self.pattern}-{self.product}.{ext}"

    def _pattern_words(self) -> str:
        return "" if self.pattern == "plain" else f"{self.pattern} "

    def generic(self, kind: str) -> str:
        """The stock-model style the demo base model is pretrained on: wordy, always
        "a ... on a ... background"; the description also knows material and use."""
        if kind == "alt_text":
            return f"a {self.colour} {self._pattern_words()}{self.product} on a {self.background} background"
        return (f"a {self.colour} {self._pattern_words()}{MATERIAL[self.product]} {self.product} "
                f"for {USE[self.product]} on a {self.background} background")

    def house(self, kind: str) -> str:
        """The catalog's house style, what reviewers correct to: no article, no background
        (every shot is a studio shot), the material named, the use in the description."""
        thing = f"{self.colour} {self._pattern_words()}{MATERIAL[self.product]} {self.product}"
        if kind == "alt_text":
            return thing
        return f"{thing} for {USE[self.product]}"


def products(count: int, seed: int = 0, *, start: int = 0) -> list[Product]:
    rng = random.Random(seed)
    items = []
    for i in range(count):
        items.append(Product(
            index=start + i,
            product=rng.choice(PRODUCTS),
            colour=rng.choice(list(COLOURS)),
            pattern=rng.choice(PATTERNS),
            background=rng.choice(list(BACKGROUNDS)),
            fmt=rng.choice(("JPEG", "JPEG", "PNG", "WEBP")),
            size=(rng.randint(160, 320), rng.randint(160, 320)),
            rotated=rng.random() < 0.15,
            transparent=rng.random() < 0.1,
        ))
    return items


def _shape(draw: ImageDraw.ImageDraw, product: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if product == "shirt":
        draw.polygon([(x0 + w * .3, y0), (x0 + w * .7, y0), (x1, y0 + h * .25), (x0 + w * .85, y0 + h * .4),
                      (x0 + w * .8, y1), (x0 + w * .2, y1), (x0 + w * .15, y0 + h * .4), (x0, y0 + h * .25)],
                     fill=fill)
    elif product == "mug":
        draw.rectangle([x0 + w * .15, y0 + h * .2, x0 + w * .7, y1], fill=fill)
        draw.ellipse([x0 + w * .55, y0 + h * .35, x1, y0 + h * .8], outline=fill, width=max(3, w // 12))
    elif product == "shoe":
        draw.polygon([(x0, y0 + h * .5), (x0 + w * .45, y0 + h * .45), (x0 + w * .55, y0 + h * .2),
                      (x0 + w * .75, y0 + h * .2), (x1, y0 + h * .65), (x1, y1 - h * .2), (x0, y1 - h * .2)],
                     fill=fill)
    elif product == "bag":
        draw.rectangle([x0, y0 + h * .35, x1, y1], fill=fill)
        draw.arc([x0 + w * .25, y0, x1 - w * .25, y0 + h * .7], 180, 360, fill=fill, width=max(3, w // 12))
    elif product == "hat":
        draw.ellipse([x0, y0 + h * .6, x1, y1 - h * .05], fill=fill)
        draw.pieslice([x0 + w * .2, y0 + h * .1, x1 - w * .2, y0 + h * 1.1], 180, 360, fill=fill)
    elif product == "lamp":
        draw.polygon([(x0 + w * .25, y0 + h * .4), (x0 + w * .75, y0 + h * .4), (x0 + w * .6, y0),
                      (x0 + w * .4, y0)], fill=fill)
        draw.rectangle([x0 + w * .46, y0 + h * .4, x0 + w * .54, y1 - h * .1], fill=fill)
        draw.rectangle([x0 + w * .25, y1 - h * .1, x0 + w * .75, y1], fill=fill)
    elif product == "vase":
        draw.ellipse([x0 + w * .15, y0 + h * .35, x1 - w * .15, y1], fill=fill)
        draw.rectangle([x0 + w * .38, y0, x1 - w * .38, y0 + h * .5], fill=fill)
    else:  # sofa
        draw.rectangle([x0, y0 + h * .2, x1, y0 + h * .55], fill=fill)
        draw.rectangle([x0, y0 + h * .5, x1, y1 - h * .15], fill=fill)
        draw.rectangle([x0, y1 - h * .15, x0 + w * .1, y1], fill=fill)
        draw.rectangle([x1 - w * .1, y1 - h * .15, x1, y1], fill=fill)


def _pattern(image: Image.Image, mask: Image.Image, pattern: str, colour) -> None:
    if pattern == "plain":
        return
    overlay = Image.new("RGB", image.size, tuple(255 - c for c in colour) if sum(colour) < 200 else (255, 255, 255))
    pmask = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(pmask)
    w, h = image.size
    step = max(8, min(w, h) // 10)
    if pattern == "striped":
        for y in range(0, h, step):
            draw.rectangle([0, y, w, y + step // 3], fill=255)
    else:
        for y in range(step // 2, h, step):
            for x in range(step // 2, w, step):
                r = step // 5
                draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    from PIL import ImageChops

    image.paste(overlay, (0, 0), ImageChops.multiply(pmask, mask))


def draw(item: Product, rng: random.Random | None = None) -> Image.Image:
    """The product picture (RGB, or RGBA when `transparent`), upright."""
    rng = rng or random.Random(item.index)
    w, h = item.size
    background = BACKGROUNDS[item.background]
    image = Image.new("RGB", (w, h), background)
    mask = Image.new("L", (w, h), 0)
    margin = int(min(w, h) * rng.uniform(0.1, 0.2))
    box = (margin + rng.randint(-5, 5), margin + rng.randint(-5, 5), w - margin, h - margin)
    colour = COLOURS[item.colour]
    jitter = tuple(max(0, min(255, c + rng.randint(-15, 15))) for c in colour)
    _shape(ImageDraw.Draw(mask), item.product, box, 255)
    image.paste(Image.new("RGB", (w, h), jitter), (0, 0), mask)
    _pattern(image, mask, item.pattern, jitter)
    if item.transparent:
        rgba = image.convert("RGBA")
        alpha = mask.point(lambda v: 255 if v else 0)
        rgba.putalpha(alpha)  # background transparent: intake composites it on white
        return rgba
    return image


def encode(item: Product, image: Image.Image) -> bytes:
    """File bytes in the item's format; `rotated` items are stored sideways with an EXIF
    orientation tag saying how to turn them upright."""
    fmt = "PNG" if item.transparent and item.fmt == "JPEG" else item.fmt
    exif = None
    if item.rotated and fmt in ("JPEG", "WEBP"):
        image = image.transpose(Image.Transpose.ROTATE_90)  # stored rotated...
        exif = Image.Exif()
        exif[0x0112] = 6  # ...orientation 6: rotate 90 CW to display upright
    buffer = io.BytesIO()
    kwargs = {"quality": 90} if fmt in ("JPEG", "WEBP") else {}
    if exif is not None:
        kwargs["exif"] = exif.tobytes()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def filename_for(item: Product) -> str:
    name = item.filename
    if item.transparent and item.fmt == "JPEG":
        name = name.rsplit(".", 1)[0] + ".png"
    return name


def write_catalog(folder: Path, items: list[Product]) -> dict[str, Product]:
    """Write every item to `folder` (atomically: temp name, then rename); name -> product."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for item in items:
        name = filename_for(item)
        tmp = folder / f".{name}.part"
        tmp.write_bytes(encode(item, draw(item)))
        tmp.replace(folder / name)
        written[name] = item
    return written


def by_filename(items: list[Product]) -> dict[str, Product]:
    return {filename_for(item): item for item in items}
