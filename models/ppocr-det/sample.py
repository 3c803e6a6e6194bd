"""A sample input for PP-OCRv4 text detection: dark lines of text rendered on white, normalised
the way the detector expects (NCHW float32, (pixel / 255 - 0.5) / 0.5). Height and width must be
multiples of 32."""

from __future__ import annotations

import numpy as np

LINES = ["Spindle serves models", "behind HTTP, on GPUs", "0123456789 ABCDEF"]


def text_image(height: int = 640, width: int = 640) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    assert height % 32 == 0 and width % 32 == 0, "the detector takes sides that are multiples of 32"
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, height // 18))
    for row, line in enumerate(LINES):
        draw.text((width // 16, height // 10 + row * height // 5), line, fill="black", font=font)
    x = (np.asarray(image, dtype=np.float32) / 255.0 - 0.5) / 0.5
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])
