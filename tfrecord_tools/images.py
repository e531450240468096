"""Checks and normalises one encoded image: RGB JPEG out, or a `BadImage` saying why not.

JPEG bytes that are already RGB are kept byte for byte; CMYK or grayscale JPEGs, PNGs (palette,
alpha, 16-bit), GIFs, BMPs, TIFFs and WebPs, whatever their file name says, are decoded and
re-encoded as RGB JPEG.

Fast check (default) for RGB JPEGs: the header is parsed and the data must end with the JPEG
end-of-image marker, which is what a truncated file lacks; anything else (no marker at the end,
other formats) is fully decoded. `full_decode=True` decodes every image (several times slower; it
also catches damage inside the entropy-coded data, which `verify` and the decoder tolerate).
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

REENCODE_QUALITY = 95
# Decompression-bomb guard: real photos are far below this (ImageNet's largest is ~50 MP).
Image.MAX_IMAGE_PIXELS = 300_000_000


class BadImage(Exception):
    """The bytes are not a usable image; the message is the reason shown in the report."""


def encode_jpeg(image: Image.Image, quality: int = REENCODE_QUALITY) -> bytes:
    buffer = io.BytesIO()
    # 4:4:4 chroma: re-encoding should lose as little colour detail as possible.
    image.save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def _ends_with_eoi(data: bytes) -> bool:
    # Some writers pad after the end-of-image marker with zeros or a newline.
    return data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")


def prepare_image(data: bytes, full_decode: bool = False) -> tuple[bytes, int, int, bool]:
    """(RGB JPEG bytes, height, width, re-encoded?) or BadImage."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    if not full_decode and data[:3] == b"\xff\xd8\xff" and _ends_with_eoi(data):
        try:
            image = Image.open(io.BytesIO(data))
            if image.format == "JPEG" and image.mode == "RGB" and min(image.size) > 0:
                return data, image.size[1], image.size[0], False
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            pass  # the full decode below gives the reason
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image_format = image.format
            image.load()  # full decode: raises on truncated or corrupt data
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
        raise BadImage(f"corrupt or truncated image ({error})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise BadImage(f"image has no pixels ({width}x{height})")
    if image_format == "JPEG" and image.mode == "RGB":
        return data, height, width, False
    try:
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16/32-bit grayscale: scale to 8 bits instead of clipping.
            image = image.point(lambda v: v / 256).convert("L")
        rgb = image.convert("RGB")
        return encode_jpeg(rgb), height, width, True
    except (OSError, ValueError) as error:
        raise BadImage(f"cannot convert {image_format} {image.mode} image to RGB ({error})") \
            from None
