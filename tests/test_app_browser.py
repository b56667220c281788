"""The app in a real browser: headless Debian Chromium driven by playwright, tiny fixture models.

Generates, downloads the GIF, uploads and classifies a CSV, races the models, reads the Learn tab,
checks that a bad upload gets its message in the page, and screenshots every tab into
tests/artifacts/ (look at them).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 120_000  # generous: CI machines may be busy

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)"
)


@pytest.fixture(scope="module")
def url(roberta_dir, gpt2_dir, classifier_dir):
    import app

    app.configure({"diffusion": roberta_dir, "autoregressive": gpt2_dir, "classifier": classifier_dir})
    demo = app.build_demo()  # for the configured test models
    _, local_url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True,
                                  **app.launch_options())
    try:
        yield local_url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def ui(url, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir()
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=FLAGS, headless=True,
            viewport={"width": 1280, "height": 900}, accept_downloads=True,
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.get_by_text("dlm · text diffusion, live").wait_for()
        yield page
        context.close()


def open_tab(ui, name: str) -> None:
    ui.get_by_role("tab", name=name).click()


def shot(ui, name: str) -> None:
    ui.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_page_shows_the_models(ui):
    ui.locator("#models").get_by_text("diffusion").first.wait_for()
    ui.wait_for_function("document.querySelector('#models').innerText.includes('parameters')")


def test_generate_streams_into_the_canvas(ui):
    open_tab(ui, "Generate")
    ui.locator("#prompt textarea").fill("the cat")
    ui.locator("#generate-button").click()
    ui.wait_for_function("document.querySelector('#stats').innerText.includes('Done')")
    assert ui.locator("#final-text textarea").input_value().startswith("the cat")
    assert ui.locator("#canvas-0").inner_text().strip()
    shot(ui, "1-generate")


def test_the_steps_slider_stops_at_the_length(ui):
    """Declared up to MAX_STEPS for the API; the page load keeps it at the length, and so does moving the length."""
    open_tab(ui, "Generate")
    length, steps = ui.locator("#length input[type=range]"), ui.locator("#steps input[type=range]")
    ui.wait_for_function("document.querySelector('#steps input[type=range]').max"
                         " === document.querySelector('#length input[type=range]').value")
    assert int(steps.get_attribute("max")) < 256
    length.fill("20")
    length.dispatch_event("input")
    ui.wait_for_function("document.querySelector('#steps input[type=range]').max === '20'")


def test_animate_and_download_the_gif(ui):
    from PIL import Image

    open_tab(ui, "Animate")
    ui.locator("#animate-button").click()
    ui.locator("#gif img").wait_for()
    link = ui.locator("#downloads a[download='denoising.gif']")
    link.wait_for()
    with ui.expect_download() as download:
        link.click()
    target = ARTIFACTS / "downloaded.gif"
    download.value.save_as(target)
    with Image.open(target) as image:
        assert image.n_frames > 1
    ui.locator("#race-gif img").wait_for()
    shot(ui, "2-animate")


def test_upload_and_classify_a_csv(ui, tmp_path):
    open_tab(ui, "Classify")
    path = tmp_path / "reviews.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "review", "sentiment"])
        writer.writerows([(1, "the cat sat on the mat", "positive"), (2, "it was the worst of times", "negative"),
                          (3, "<b>not bold</b> once upon a time", "positive")])
    ui.locator("#upload input[type=file]").set_input_files(str(path))
    ui.get_by_text("3 rows; columns").wait_for()
    ui.locator("#classify-button").click()
    ui.locator("#classify-summary").get_by_text("Accuracy").wait_for()
    ui.locator("#results").get_by_text("<b>not bold</b>").filter(visible=True).first.wait_for()  # shown as text...
    assert ui.locator("#results b", has_text="not bold").count() == 0  # ...never as markup
    shot(ui, "3-classify")


def test_compare_races_and_shows_metrics(ui):
    open_tab(ui, "Compare")
    ui.locator("#race-button").click()
    ui.get_by_text("finished first").wait_for()
    ui.locator("#metrics").get_by_text("time to first step (s)").filter(visible=True).first.wait_for()
    shot(ui, "4-compare")


def test_learn_shows_measured_numbers(ui):
    open_tab(ui, "Learn")
    ui.get_by_text("autoregressive, 64 tokens, KV cache").wait_for()  # the measured table
    shot(ui, "5-learn")


def test_a_bad_upload_gets_its_message_in_the_page(ui, tmp_path):
    open_tab(ui, "Classify")
    path = tmp_path / "latin.csv"
    path.write_bytes("text\ncaf\u00e9\n".encode("latin-1"))
    clear = ui.locator("#upload button[aria-label='Clear']")
    if clear.count():  # the CSV of the earlier test is still there
        clear.click()
    ui.locator("#upload input[type=file]").set_input_files(str(path))
    ui.locator("#upload-info").get_by_text("is not UTF-8 text").wait_for()  # the reason beside the file...
    ui.locator(".toast-body", has_text="is not UTF-8 text").first.wait_for()  # ...and in a toast
    shot(ui, "6-bad-upload")
    ui.locator("#classify-button").click()  # classifying anyway gives the same reason
    ui.locator(".toast-body", has_text="is not UTF-8 text").first.wait_for()


def test_a_bad_template_gets_its_message_and_the_next_request_works(ui):
    open_tab(ui, "Generate")
    ui.get_by_label("Fill in the blanks").check()
    # the mode switch refills the text box from the server: wait for it, or it may overwrite what we type
    ui.locator("#prompt").get_by_text("Template (write [MASK]").wait_for()
    ui.locator("#prompt textarea").fill("a template without any blanks")
    ui.locator("#generate-button").click()
    ui.get_by_text("infill template has no blanks").first.wait_for()
    ui.get_by_label("Continue a prompt").check()
    ui.locator("#prompt").get_by_text("Prompt (may be empty)").wait_for()
    ui.locator("#prompt textarea").fill("once upon a time")
    ui.locator("#generate-button").click()
    ui.wait_for_function("document.querySelector('#final-text textarea').value.startsWith('once upon a time')")
    assert "Done" in ui.locator("#stats").inner_text()


XSS = "<img src=x onerror=window.__xss=1>"


def test_user_text_never_becomes_markup(ui):
    open_tab(ui, "Generate")
    ui.locator("#prompt textarea").fill(XSS)
    ui.locator("#generate-button").click()
    ui.wait_for_function("document.querySelector('#stats').innerText.includes('Done')")
    open_tab(ui, "Classify")
    clear = ui.locator("#upload button[aria-label='Clear']")
    if clear.count():
        clear.click()
    ui.locator("#classify-text textarea").fill(XSS + "\nthe cat")
    ui.get_by_label("Zero-shot").check()
    ui.get_by_label("Labels (comma-separated)").fill(f"{XSS}, plain")
    ui.locator("#classify-button").click()
    ui.locator("#classify-summary").get_by_text("text(s) classified").wait_for()
    ui.locator("#results").get_by_text("onerror").filter(visible=True).first.wait_for()  # shown, as text
    assert ui.evaluate("window.__xss") is None
    assert ui.locator("img[src='x']").count() == 0


def payload(n: int) -> str:
    """Markup that sets window.__xss<n> if it is ever rendered as HTML (an attribute break included)."""
    return f"\"'><img src=x{n} onerror=window.__xss{n}=1><svg onload=window.__xss{n}=1>"


def short_payload(n: int) -> str:
    """The same within a class name's 40 characters."""
    return f"<img src=x{n} onerror=window.__xss{n}=1>"


def test_a_payload_in_every_field_and_label_stays_text(ui, tmp_path):
    """Markup in the infilling template, the Compare prompt, a CSV's column names, its labels and texts, the
    zero-shot labels and label prompt, and a file name: shown as text everywhere (tables, labels, confusion
    matrix, canvases, toasts), never run."""
    open_tab(ui, "Generate")
    ui.get_by_label("Fill in the blanks").check()
    ui.locator("#prompt").get_by_text("Template (write [MASK]").wait_for()
    ui.locator("#prompt textarea").fill(f"{payload(1)} the [MASK] sat [MASK]")
    ui.locator("#generate-button").click()
    ui.wait_for_function("document.querySelector('#stats').innerText.includes('Done')")
    ui.get_by_label("Continue a prompt").check()
    ui.locator("#prompt").get_by_text("Prompt (may be empty)").wait_for()

    open_tab(ui, "Compare")
    ui.locator("#compare-prompt textarea").fill(payload(2))
    ui.locator("#race-button").click()
    ui.get_by_text("finished first").wait_for()

    open_tab(ui, "Classify")
    clear = ui.locator("#upload button[aria-label='Clear']")
    if clear.count():
        clear.click()
    ui.get_by_label("Zero-shot").check()
    ui.get_by_label("Labels (comma-separated)").fill(f"{short_payload(3)}, plain")
    ui.get_by_label("Label prompt").fill(f"{payload(4)} {{label}}:")
    path = tmp_path / f"{payload(5)[:12].replace('/', '_')}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([f"text {payload(6)}", "label", f"note {payload(7)}"])
        writer.writerows([(f"the cat sat {payload(8)}", short_payload(3), "x"), ("once upon a time", "plain", "y"),
                          ("it was the best of times", payload(9), "z")])  # a label that is no class: a warning toast
    # (the toast may be gone before the summary arrives; the flags below cover what it showed)
    ui.locator("#upload input[type=file]").set_input_files(str(path))
    ui.get_by_text("3 rows; columns").wait_for()
    ui.locator("#classify-button").click()
    ui.locator("#classify-summary").get_by_text("text(s) classified").wait_for()
    ui.locator("#results").get_by_text("onerror").filter(visible=True).first.wait_for()  # shown, as text
    ui.get_by_text("true ↓ / predicted →").filter(visible=True).first.wait_for()  # the confusion matrix, headed
    shot(ui, "7-payloads")                                                          # by the payload label
    for n in range(1, 10):
        assert ui.evaluate(f"window.__xss{n}") is None, f"payload {n} ran"
    assert ui.locator("img[src^='x']").count() == 0 and ui.locator("svg[onload]").count() == 0
