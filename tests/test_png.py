"""calibviz's PNG writer: files any decoder reads back to exactly the input's pixels, with
the resolution and text a figure carries."""

import io

import numpy as np
import pytest
from PIL import Image

from calibviz.viz.png import png_bytes


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (37, 91), (656, 1410)])
def test_pixels_read_back_exactly(shape):
    rng = np.random.default_rng(sum(shape))
    rgba = rng.integers(0, 256, (*shape, 4), dtype=np.uint8)
    rgba[: shape[0] // 2] = 255  # flat rows too, as in figures
    image = Image.open(io.BytesIO(png_bytes(rgba, 150, {"Software": "calibviz"})))
    image.load()  # decodes every row and checks the CRCs and the deflate stream
    assert image.mode == "RGBA" and image.size == shape[::-1]
    assert np.array_equal(np.asarray(image), rgba)
    assert image.info["Software"] == "calibviz"
    pillows = io.BytesIO()
    Image.fromarray(rgba).save(pillows, format="png", dpi=(150, 150))
    assert image.info["dpi"] == Image.open(pillows).info["dpi"]  # the same resolution


def test_a_view_of_a_canvas_is_written_as_shown():
    base = np.zeros((20, 30, 4), np.uint8)
    base[..., 0] = np.arange(30)
    view = base[::-1, ::2]  # not contiguous
    image = Image.open(io.BytesIO(png_bytes(view, 72)))
    assert np.array_equal(np.asarray(image), view)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 4)),
                                 np.zeros((0, 4, 4), np.uint8)])
def test_anything_but_rgba_bytes_is_refused(bad):
    with pytest.raises(ValueError, match="RGBA"):
        png_bytes(bad, 100)
