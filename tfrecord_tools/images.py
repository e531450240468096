"""Checks and normalises one encoded image: RGB JPEG out, or a `BadImage` saying why not.

JPEG bytes that are already RGB are kept byte for byte; CMYK or grayscale JPEGs, PNGs (palette,
alpha, 16-bit), GIFs, BMPs, TIFFs and WebPs, whatever their file name says, are decoded and
re-encoded as RGB JPEG.

Fast check (default) for RGB JPEGs: the frame header is parsed (`jpeg_frame`, no decoding and
no PIL) and the data must end with the JPEG end-of-image marker, which is what a truncated file
lacks; anything else (no marker at the end, other formats) is fully decoded. `full_decode=True`
decodes every image (several times slower; it also catches damage inside the entropy-coded data,
which `verify` and the decoder tolerate).
"""

from __future__ import annotations

import io
import os
import warnings

from PIL import Image, UnidentifiedImageError

REENCODE_QUALITY = 95
# Decompression-bomb guard: real photos are far below this (ImageNet's largest is ~50 MP). The
# same variable sets the limit of efficientnet's input pipeline, infer and serving signature, so a
# converted image is never refused later.
MAX_PIXELS_ENV = "EFFICIENTNET_MAX_IMAGE_PIXELS"
MAX_IMAGE_PIXELS = int(os.environ.get(MAX_PIXELS_ENV) or 300_000_000)
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


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


# Start-of-frame markers (baseline, progressive, lossless, arithmetic); not DHT/JPG/DAC.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}


def jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, components) of an 8-bit JPEG from its frame header, or None when the
    header is not a plain one (the caller then decodes the image to find out why)."""
    position, end = 2, len(data)
    while position + 4 <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        length = (data[position + 2] << 8) | data[position + 3]
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if length < 8 or position + 10 > end or data[position + 4] != 8:
                return None
            height = (data[position + 5] << 8) | data[position + 6]
            width = (data[position + 7] << 8) | data[position + 8]
            return height, width, data[position + 9]
        if marker == 0xDA:  # scan data before any frame header
            return None
        position += 2 + length
    return None


def prepare_image(data: bytes, full_decode: bool = False) -> tuple[bytes, int, int, bool]:
    """(RGB JPEG bytes, height, width, re-encoded?) or BadImage."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    if not full_decode and data[:3] == b"\xff\xd8\xff" and _ends_with_eoi(data):
        frame = jpeg_frame(data)
        # Three 8-bit components is what PIL opens as an "RGB" JPEG (YCbCr or Adobe RGB);
        # 1 (grayscale) and 4 (CMYK/YCCK) components are re-encoded below.
        if frame is not None and frame[0] * frame[1] > MAX_IMAGE_PIXELS:
            raise BadImage(f"{frame[1]}x{frame[0]} pixels is over the limit of "
                           f"{MAX_IMAGE_PIXELS} ({MAX_PIXELS_ENV})")
        if frame is not None and frame[2] == 3 and frame[0] > 0 and frame[1] > 0:
            return data, frame[0], frame[1], False
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
