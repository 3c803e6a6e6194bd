"""PP-OCRv4 as a function: text the test renders (a font on this machine; several sizes, two
lines, a rotated line) read back, and the same lines as RapidOCR's own pipeline in Python."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

# (name, lines of text, font size, rotation in degrees, text and background colours)
SCENES = [
    ("small", ["Invoice 4821 paid"], 22, 0, "black", "white"),
    ("large", ["WebAssembly"], 64, 0, "black", "white"),
    ("two lines", ["Hello Spindle 2026", "Serverless inference"], 36, 0, "black", "white"),
    ("rotated", ["Rotated text line"], 40, 7, "black", "white"),
    ("colours", ["Orange on teal 77"], 36, 0, (230, 120, 20), (20, 90, 100)),
    ("a strip wider than 8:1", ["A narrow strip of text wider than eight to one"], 12, 0, "black", "white"),
]


def render(lines: list[str], size: int, angle: float, ink="black", paper="white") -> bytes:
    font = ImageFont.truetype(FONT, size)
    width = max(int(font.getlength(line)) for line in lines) + 2 * size
    image = Image.new("RGB", (width, int(len(lines) * size * 2.2) + size), paper)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((size, size // 2 + int(i * size * 2.2)), line, fill=ink, font=font)
    if angle:
        image = image.rotate(angle, expand=True, fillcolor="white", resample=Image.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def read(spindle, body: bytes, **kwargs) -> dict:
    r = requests.post(f"{spindle.url}/models/ocr/read", data=body, timeout=300, **kwargs)
    assert r.status_code == 200, r.text
    return r.json()


def squeeze(text: str) -> str:
    return "".join(text.split())


@pytest.fixture(scope="module")
def rapidocr():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


@pytest.mark.parametrize("name,lines,size,angle,ink,paper", SCENES, ids=[s[0] for s in SCENES])
def test_rendered_text_is_read_back_as_rapidocr_reads_it(spindle, rapidocr, name, lines, size, angle, ink, paper):
    body = render(lines, size, angle, ink, paper)
    answer = read(spindle, body)
    got = [line["text"] for line in answer["lines"]]
    assert squeeze("".join(got)) == squeeze("".join(lines)), (name, got)
    for line in answer["lines"]:
        assert 0.5 <= line["confidence"] <= 1 and len(line["box"]) == 4
    # Spindle runs no angle classifier (upright text only), so neither does the reference.
    reference, _ = rapidocr(body, use_cls=False)
    assert [r[1] for r in reference] == got, (name, reference, got)
    for ours, theirs in zip(answer["lines"], reference):
        np.testing.assert_allclose(np.array(ours["box"]), np.array(theirs[0]), atol=4, err_msg=name)
        assert abs(ours["confidence"] - theirs[2]) < 0.05, (name, ours, theirs)
    if angle:
        (line,) = answer["lines"]
        (x0, y0), (x1, y1) = line["box"][0], line["box"][1]
        assert np.degrees(np.arctan2(y0 - y1, x1 - x0)) == pytest.approx(angle, abs=2), "the box follows the line"


def test_a_form_upload_and_a_jpeg_read_the_same(spindle):
    body = render(["Form upload"], 40, 0)
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(body)).save(jpeg, format="JPEG", quality=95)
    form = read(spindle, None, files={"image": ("text.png", body, "image/png")})
    assert squeeze("".join(line["text"] for line in form["lines"])) == "Formupload"
    as_jpeg = read(spindle, jpeg.getvalue())["lines"]
    assert [line["text"] for line in as_jpeg] == [line["text"] for line in form["lines"]]


def test_a_blank_image_has_no_lines_and_bad_requests_get_clear_errors(spindle):
    blank = io.BytesIO()
    Image.new("RGB", (200, 100), "white").save(blank, format="PNG")
    assert read(spindle, blank.getvalue())["lines"] == []
    # Very wide and very large pages are brought to RapidOCR's bounds (2000 pixels, 8:1) first.
    for size in [(8000, 40), (4000, 4000)]:
        page = io.BytesIO()
        Image.new("RGB", size, "white").save(page, format="PNG")
        assert read(spindle, page.getvalue())["lines"] == [], size
    url = f"{spindle.url}/models/ocr/read"
    for body, query, text in [
        (b"", "", "the body is empty"),
        (b"not an image", "", "not a PNG or JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "", "could not decode"),
        (blank.getvalue(), "min_confidence=2", "min_confidence must be a number from 0 to 1"),
        (blank.getvalue(), "lang=en", "unknown parameter 'lang'"),
    ]:
        r = requests.post(f"{url}?{query}", data=body, timeout=60)
        assert r.status_code == 400, (text, r.status_code, r.text)
        assert text in r.json()["error"], (text, r.json())
    assert requests.get(url, timeout=30).status_code == 405
    assert requests.get(f"{spindle.url}/models/ocr", timeout=30).json()["models"] == ["ppocr-det", "ppocr-rec"]
