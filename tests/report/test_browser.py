"""The HTML report in a real browser: headless Chromium from file://."""

import pytest

from greenprof.report.html import write_html
from greenprof.session import Session
from greenprof.testing.browser import find_chromium, headless_chromium, open_report

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="chromium and chromedriver are not installed; `make browser` installs them",
)
EVIL = "<script>alert(1)</script>"


def _column(driver, index: int, attribute: str | None = None) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#layers tbody tr'),"
        " r => arguments[1] ? r.cells[arguments[0]].getAttribute(arguments[1])"
        " : r.cells[arguments[0]].textContent)",
        index,
        attribute,
    )


def test_report_renders_sorts_and_runs_nothing_it_should_not(tmp_path, synthetic_estimated) -> None:
    layers = synthetic_estimated.layers()
    layers.loc[layers["module"] == "embed", "module"] = EVIL
    session = Session(
        synthetic_estimated.meta, layers, synthetic_estimated.samples(), synthetic_estimated.spans()
    )
    report = write_html(session, tmp_path / "report.html")
    with headless_chromium(tmp_path / "chromium-profile") as driver:
        assert open_report(driver, report) < 10.0
        widths = driver.execute_script("return Array.from(document.images, i => i.naturalWidth)")
        assert len(widths) == 4 and all(w > 0 for w in widths)
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        assert driver.execute_script("return document.title").endswith("(ESTIMATED)")
        assert EVIL in _column(driver, 0)  # shown as text, never run

        energy = driver.find_element("css selector", "#layers th:nth-child(4)")
        energy.click()
        values = [float(v) for v in _column(driver, 3, "data-v")]
        assert values == sorted(values, reverse=True)
        assert energy.get_attribute("aria-sort") == "descending"
        energy.click()
        assert [float(v) for v in _column(driver, 3, "data-v")] == sorted(values)
        driver.find_element("css selector", "#layers th:nth-child(1)").click()
        names = [n.lower() for n in _column(driver, 0)]
        assert names == sorted(names)

        driver.save_screenshot(str(tmp_path / "report.png"))
        # Even a script that slipped past escaping would not run: the page's CSP pins its own.
        injected = driver.execute_script(
            "const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
            "document.body.appendChild(s); return window.ran === 1;"
        )
        assert injected is False
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_the_layer_table_fits_a_1400_px_window_with_long_names(
    tmp_path, synthetic_estimated
) -> None:
    layers = synthetic_estimated.layers()
    long_name = "encoder." + ".".join(f"block_{i}_with_a_long_name" for i in range(12))
    layers.loc[layers["module"] == "embed", "module"] = long_name
    session = Session(
        synthetic_estimated.meta, layers, synthetic_estimated.samples(), synthetic_estimated.spans()
    )
    report = write_html(session, tmp_path / "report.html")
    with headless_chromium(tmp_path / "chromium-profile") as driver:
        driver.set_window_size(1400, 900)
        open_report(driver, report)
        fit = driver.execute_script(
            "const box = document.querySelector('#layers').closest('.scroll');"
            "const edge = box.getBoundingClientRect().right;"
            "const last = Array.from(document.querySelectorAll('#layers tr'),"
            " r => r.cells[r.cells.length - 1].getBoundingClientRect().right);"
            "return {overflow: box.scrollWidth - box.clientWidth, edge: edge,"
            " last: Math.max(...last), page: document.documentElement.scrollWidth,"
            " window: window.innerWidth};"
        )
    # The last column ("measured by") is whole: nothing scrolls sideways, nothing is cut.
    assert fit["overflow"] <= 1
    assert fit["last"] <= fit["edge"] + 1
    assert fit["page"] <= fit["window"]
    assert long_name in report.read_text()
