"""The fast end-to-end browser test: open the app (token URL), open the DSB2018 dataset, see its outlines."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from gui_helpers import choose, coloured_pixels, dsb_image, screenshot_dir


def test_open_dataset_and_see_outlines(page, token_server):
    page.goto(token_server.url)  # the printed URL: the token sets a cookie, the websocket then passes the check
    page.wait_for_url("**/data")
    choose(page, "data-path", "dsb2018")
    choose(page, "data-layout", "dsb")
    page.get_by_test_id("data-open").click()
    summary = page.get_by_test_id("data-summary")
    summary.filter(has_text="instances").wait_for()
    n_gt = len(np.unique(dsb_image()[1])) - 1
    assert summary.inner_text().startswith(f"1 images, {n_gt} instances (cell {n_gt})")
    viewer = page.get_by_test_id("data-viewer")
    page.wait_for_function("document.querySelectorAll('[data-testid=data-viewer] path').length > 100")
    page.wait_for_function("Array.from(document.querySelectorAll('[data-testid=data-viewer] img'))"
                           ".some(i => i.complete && i.naturalWidth === 512)")
    shot = viewer.screenshot()
    assert coloured_pixels(shot) > 5000  # light-blue outlines drawn over the grey nuclei image
    assert page.locator("[data-testid=data-viewer] path").count() == n_gt
    # zoom: the image is drawn larger (~1.75x), the frame scrolls (pan)
    width = viewer.bounding_box()["width"]
    slider = page.get_by_test_id("data-viewer-zoom").bounding_box()
    page.mouse.click(slider["x"] + slider["width"] * 0.2, slider["y"] + slider["height"] / 2)
    page.wait_for_function("document.querySelector('[data-testid=data-viewer]').getBoundingClientRect().width"
                           f" > {width * 1.5}")
    if screenshot_dir():
        page.screenshot(path=str(screenshot_dir() / "data.png"))

    # uploads go through the same token check; kept only when they decode as images
    buf = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(buf, format="PNG")
    page.get_by_text("Upload images and masks").click()
    files = page.locator("[data-testid=upload-images] input[type=file]")
    files.set_input_files(files=[{"name": "up.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    page.get_by_text("saved uploads/upload/images/up.png").wait_for()
    files.set_input_files(files=[{"name": "bad.png", "mimeType": "image/png", "buffer": b"not an image"}])
    page.get_by_text("does not decode as an image").wait_for()
    folder = token_server.workspace / "uploads" / "upload" / "images"
    assert sorted(p.name for p in folder.iterdir()) == ["up.png"]
