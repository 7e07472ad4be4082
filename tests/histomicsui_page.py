"""HistomicsUI as a pathologist uses it, through selenium: open a slide, pick an analysis, fill its form,
Submit, show the annotations, look at the screen. Used by tests/test_dsa_job.py."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image
from selenium.common.exceptions import (ElementNotInteractableException, NoSuchElementException,
                                        StaleElementReferenceException)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as visible
from selenium.webdriver.support.ui import WebDriverWait

PAGE_TIMEOUT = 60.0
TILES_SETTLE = 3.0  # seconds for tiles and annotation layers to draw after a view change


class HistomicsUI:
    """One browser tab on a Girder server's ``/histomics`` page, logged in with a Girder token."""

    def __init__(self, driver: WebDriver, server_url: str, token: str):
        self.driver = driver
        self.server_url = server_url.rstrip("/")
        driver.get(f"{self.server_url}/api/v1/system/version")  # same origin, to set the login
        driver.execute_script("localStorage.setItem('girderToken', arguments[0])", token)  # Girder 5's client
        driver.add_cookie({"name": "girderToken", "value": token, "path": "/"})  # tile requests

    def _wait_visible(self, selector: str):
        return WebDriverWait(self.driver, PAGE_TIMEOUT).until(
            visible.visibility_of_element_located((By.CSS_SELECTOR, selector)))

    def _click(self, selector: str, by: str = By.CSS_SELECTOR) -> None:
        """Click the element once it is visible; again if the page re-rendered it meanwhile."""
        def clicked(driver: WebDriver) -> bool:
            try:
                element = driver.find_element(by, selector)
                if not element.is_displayed():
                    return False
                element.click()
                return True
            except (StaleElementReferenceException, ElementNotInteractableException, NoSuchElementException):
                return False

        WebDriverWait(self.driver, PAGE_TIMEOUT).until(clicked)

    def open_slide(self, item_id: str, bounds: tuple[int, int, int, int] | None = None) -> None:
        """Open the slide's item, framed on ``bounds`` (left, top, right, bottom in base pixels) if given."""
        view = f"&bounds={','.join(map(str, bounds))},0" if bounds else ""
        self.driver.get(f"{self.server_url}/histomics/#?image={item_id}{view}")
        self.driver.refresh()  # a hash change alone keeps a previously opened page
        self._wait_visible(".h-analyses-dropdown-link")
        self._wait_visible(".h-image-view-container")
        time.sleep(TILES_SETTLE)

    def analyses(self) -> list[str]:
        """The CLI names the Analyses menu lists (every image and tag)."""
        self._click(".h-analyses-dropdown-link")
        items = self.driver.find_elements(By.CSS_SELECTOR, "a.h-analysis-item")
        names = [item.get_attribute("data-cli") for item in items]
        self._click(".h-analyses-dropdown-link")  # close it again
        return names

    def choose_analysis(self, image: str, tag: str, cli: str) -> None:
        """Analyses > image > tag > CLI, as a person clicks through the menu; waits for the CLI's form."""
        self._click(".h-analyses-dropdown-link")
        self._click(f"a[data-name='{image}']")
        self._click(f"//a[@data-name='{image}']/following-sibling::ul//a[normalize-space(text())='{tag}']", By.XPATH)
        self._click(f"a.h-analysis-item[data-cli='{cli}'][data-image='{image}'][data-version='{tag}']")
        self._wait_visible(".s-info-panel-submit")

    def set_parameter(self, name: str, value: str) -> None:
        """Type ``value`` into the form's field for parameter ``name``."""
        field = self._wait_visible(f"input#{name}")
        field.clear()
        field.send_keys(value)

    def submit(self) -> None:
        self._click(".s-info-panel-submit")

    def show_all_annotations(self, shown: bool = True) -> None:
        """Press the annotation panel's eye (show all) or crossed eye (hide all), then let the layer draw."""
        self._click(".h-show-all-annotations" if shown else ".h-hide-all-annotations")
        time.sleep(TILES_SETTLE)

    def _open_annotation_groups(self):
        """The annotation panel with every group folder opened (annotations are listed by group)."""
        panel = self._wait_visible("#h-annotation-panel")
        collapsed = ".h-annotation-group.h-group-collapsed .h-annotation-group-name"
        for _ in self.driver.find_elements(By.CSS_SELECTOR, collapsed):
            self._click(collapsed)
        return panel

    def annotation_panel_text(self) -> str:
        """The annotation panel's text, every group folder opened."""
        return self._open_annotation_groups().text

    def annotation_shown(self, annotation_id: str) -> bool:
        """Whether the panel shows this annotation as drawn (its open eye)."""
        self._open_annotation_groups()
        selector = f".h-annotation[data-id='{annotation_id}'] .h-toggle-annotation"

        def state(driver: WebDriver) -> str | None:  # read again if the panel re-rendered meanwhile
            try:
                classes = driver.find_element(By.CSS_SELECTOR, selector).get_attribute("class").split()
            except (StaleElementReferenceException, NoSuchElementException):
                return None
            return "hidden" if "icon-eye-off" in classes else "shown"

        return WebDriverWait(self.driver, PAGE_TIMEOUT).until(state) == "shown"

    def show_annotation(self, annotation_id: str, shown: bool = True) -> None:
        """Press one annotation's eye in the panel (if it is not already as asked), then let the layer draw."""
        if self.annotation_shown(annotation_id) != shown:
            self._click(f".h-annotation[data-id='{annotation_id}'] .h-toggle-annotation")
            time.sleep(TILES_SETTLE)

    def screenshot(self) -> np.ndarray:
        """The window as an (H, W, 3) uint8 array."""
        return np.asarray(Image.open(io.BytesIO(self.driver.get_screenshot_as_png())).convert("RGB"))

    def save_screenshot(self, path: Path, width: int = 1000, colors: int | None = None) -> None:
        """A reduced PNG of the window, for people to look at (test artefacts; with a palette of ``colors``,
        small enough to commit for the README)."""
        picture = Image.fromarray(self.screenshot())
        picture.thumbnail((width, width))
        if colors:
            picture = picture.quantize(colors)
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(path, optimize=True)

    def slide_pixels_of(self, color: tuple[int, int, int], tolerance: int = 40) -> int:
        """How many screen pixels of the slide view, between the left and right panels, are near ``color``."""
        picture = self.slide_view().astype(int)
        return int((np.abs(picture - np.array(color)).max(axis=2) <= tolerance).sum())

    def slide_view(self) -> np.ndarray:
        """The screen pixels of the slide view, between the left and right panels, as (H, W, 3) uint8."""
        scale = self.driver.execute_script("return window.devicePixelRatio") or 1
        left = self.driver.find_element(By.CSS_SELECTOR, ".h-panel-group-left").rect
        right = self.driver.find_element(By.CSS_SELECTOR, ".h-panel-group-right").rect
        view = self.driver.find_element(By.CSS_SELECTOR, ".h-image-view-container").rect
        x0, x1 = (left["x"] + left["width"]) * scale, right["x"] * scale
        y0, y1 = view["y"] * scale, (view["y"] + view["height"]) * scale
        return self.screenshot()[int(y0):int(y1), int(x0):int(x1)]
