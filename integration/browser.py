"""Headless Chromium driven by Selenium, with the console's own vocabulary: rows and their
cells by label, the log panel, the dialog, the notices, and the browser's own error log.

Chromium starts with a fresh profile and without its background network traffic (the machine
has no network beyond loopback). Every wait polls with a deadline; nothing sleeps to
synchronise. On an error inside `with Browser(...)`, the page is saved as failure.png.
"""

import shutil
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

DEADLINE = 60.0
DESKTOP = (1400, 1000)
PHONE = (390, 844)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


class Fail(Exception):
    """A check of the console failed; the message says which and what was seen."""


class Browser:
    def __init__(self, work):
        self.work = Path(work)
        self.errors = []

    def __enter__(self):
        opts = Options()
        for f in FLAGS + [f"--user-data-dir={self.work / 'chromium'}",
                          f"--window-size={DESKTOP[0]},{DESKTOP[1]}"]:
            opts.add_argument(f)
        opts.binary_location = shutil.which("chromium")
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=shutil.which("chromedriver"),
                          log_output=str(self.work / "chromedriver.log"))
        self.d = webdriver.Chrome(service=service, options=opts)
        return self

    def __exit__(self, kind, *_):
        try:
            if kind is not None:
                self.d.save_screenshot(str(self.work / "failure.png"))
        finally:
            self.d.quit()
        return False

    # -- waiting --------------------------------------------------------------------------

    def until(self, what, cond, deadline=DEADLINE):
        end = time.monotonic() + deadline
        last = None
        while True:
            try:
                v = cond()
                if v:
                    return v
            except (StaleElementReferenceException, WebDriverException) as e:
                last = e
            if time.monotonic() > end:
                raise Fail(f"timed out waiting for {what}" + (f" ({last.msg})" if last else ""))
            time.sleep(0.05)

    def js(self, script, *a):
        return self.d.execute_script(script, *a)

    def by_id(self, id_):
        return self.d.find_element(By.ID, id_)

    def visible(self, id_):
        return self.by_id(id_).is_displayed()

    def wait_text(self, id_, text):
        return self.until(f"#{id_} to say {text!r}", lambda: text in self.by_id(id_).text)

    # -- actions --------------------------------------------------------------------------

    def open(self, url):
        self.d.get(url)

    def click(self, id_):
        self.until(f"#{id_} clickable", lambda: self.by_id(id_).is_enabled())
        self.by_id(id_).click()

    def type(self, id_, text):
        e = self.by_id(id_)
        e.clear()
        e.send_keys(text)

    def clear(self, id_):
        e = self.by_id(id_)
        e.send_keys(Keys.CONTROL, "a")
        e.send_keys(Keys.DELETE)

    def press_escape(self):
        self.d.switch_to.active_element.send_keys(Keys.ESCAPE)

    def press(self, id_, *keys):
        """Focus #id_ and press `keys` there (as from the keyboard, no click)."""
        e = self.by_id(id_)
        self.js("arguments[0].focus();", e)
        e.send_keys(*keys)

    def value(self, id_):
        return self.js("return arguments[0].value;", self.by_id(id_))

    def force_click(self, id_):
        """Click a disabled control anyway, as someone editing the page would."""
        self.js("arguments[0].disabled = false; arguments[0].click();", self.by_id(id_))

    def sign_in(self, token):
        self.until("the sign-in form", lambda: self.visible("token"))
        self.type("token", token)
        self.by_id("token").send_keys(Keys.ENTER)
        self.until("the console after sign-in", lambda: self.visible("console-view"))

    def sign_out(self):
        self.click("sign-out")
        self.until("the sign-in form after sign-out", lambda: self.visible("sign-in-view"))

    def mark_page(self):
        self.js("window.__sameDocument = 'yes';")

    def assert_same_page(self):
        if self.js("return window.__sameDocument") != "yes":
            raise Fail("the page was reloaded")

    # -- the process table ----------------------------------------------------------------

    def row(self, name):
        return self.d.find_element(By.CSS_SELECTOR, f'tr[data-name="{name}"]')

    def cell_text(self, name, label):
        css = ".state" if label == "State" else f'[data-label="{label}"]'
        return self.row(name).find_element(By.CSS_SELECTOR, css).text.strip()

    def wait_cell(self, name, label, expected):
        test = expected if callable(expected) else (lambda t: t == expected)
        seen = []

        def check():
            t = self.cell_text(name, label)
            seen[:] = [t]
            return test(t)
        try:
            self.until(f"{name}'s {label}", check)
        except Fail as e:
            raise Fail(f"{e}: it shows {seen[0] if seen else None!r}, expected {expected!r}") from None

    def shown_rows(self):
        """The names of the rows the filter leaves visible, in table order."""
        return [r.get_attribute("data-name")
                for r in self.d.find_elements(By.CSS_SELECTOR, "#process-rows tr") if r.is_displayed()]

    def wait_shown_rows(self, names):
        self.until(f"exactly the rows {names}", lambda: self.shown_rows() == names)

    def click_bulk(self, action):
        b = self.d.find_element(By.CSS_SELECTOR, f'[data-bulk="{action}"]')
        self.until(f"the selection's {action} enabled", b.is_enabled)
        b.click()

    def row_button(self, name, label):
        for b in self.row(name).find_elements(By.CSS_SELECTOR, "td.actions button"):
            if b.text.strip() == label:
                return b
        raise Fail(f"{name} has no {label} button")

    def click_row_button(self, name, label):
        self.until(f"{name}'s {label} enabled", lambda: self.row_button(name, label).is_enabled())
        self.row_button(name, label).click()

    def force_click_row_button(self, name, label):
        """Click a disabled button anyway, as someone editing the page would."""
        b = self.row_button(name, label)
        self.js("arguments[0].disabled = false; arguments[0].click();", b)

    def admin_controls(self):
        return [(e.get_attribute("aria-label") or e.text or e.get_attribute("id"), not e.is_enabled())
                for e in self.d.find_elements(By.CSS_SELECTOR, ".admin")]

    def keyboard_through_rows(self, names):
        first = self.row(names[0])
        self.js("arguments[0].focus();", first)
        active = lambda: self.d.switch_to.active_element.get_attribute("data-name")
        first.send_keys(Keys.ARROW_DOWN)
        self.until("ArrowDown to move to the next row", lambda: active() == names[1])
        self.d.switch_to.active_element.send_keys(Keys.END)
        self.until("End to move to the last row", lambda: active() == names[-1])
        self.d.switch_to.active_element.send_keys(Keys.HOME)
        self.until("Home to move to the first row", lambda: active() == names[0])
        self.d.switch_to.active_element.send_keys(Keys.SPACE)
        self.wait_text("selected", "1 selected")
        self.d.switch_to.active_element.send_keys(Keys.SPACE)
        self.wait_text("selected", "none selected")
        self.d.switch_to.active_element.send_keys(Keys.ENTER)
        self.wait_text("log-state", f"following {names[0]}")

    # -- logs -----------------------------------------------------------------------------

    def log_lines_containing(self, text):
        return [l for l in self.by_id("log-lines").find_elements(By.TAG_NAME, "li") if text in l.text]

    def wait_log_line(self, text):
        self.until(f"the log line {text!r}", lambda: self.log_lines_containing(text))

    def visible_log_lines(self):
        return [l.text for l in self.by_id("log-lines").find_elements(By.TAG_NAME, "li") if l.is_displayed()]

    # -- environment, dialog, notices -----------------------------------------------------

    def wait_dialog(self, title):
        self.until(f"the dialog {title!r}",
                   lambda: self.visible("dialog") and title in self.by_id("dialog-title").text)
        return self.by_id("dialog").text

    def wait_dialog_closed(self):
        self.until("the dialog to close", lambda: not self.visible("dialog"))

    def wait_dialog_error(self, text):
        """The problem shown inside the open dialog, once it contains `text`."""
        self.until(f"the dialog to show a problem with {text!r}",
                   lambda: self.visible("dialog-error") and text in self.by_id("dialog-error").text)
        return self.by_id("dialog-error").text

    def wait_notice(self, text):
        def find():
            notes = [n.text for n in self.d.find_elements(By.CSS_SELECTOR, ".notice")]
            bad = [n for n in notes if "failed" in n or "Could not" in n]
            if bad and text not in " ".join(bad):
                raise Fail(f"an error notice instead of {text!r}: {bad}")
            return any(text in n for n in notes)
        return self.until(f"a notice saying {text!r}", find, deadline=120)

    def checkpoint_ids(self):
        return [li.get_attribute("data-id") for li in self.d.find_elements(By.CSS_SELECTOR, "#checkpoints li")]

    def checkpoint(self, cid):
        return self.d.find_element(By.CSS_SELECTOR, f'#checkpoints li[data-id="{cid}"]')

    def wait_checkpoint(self, cid):
        self.until(f"checkpoint {cid} in the list", lambda: self.checkpoint(cid))

    def click_checkpoint_button(self, cid, label):
        for b in self.checkpoint(cid).find_elements(By.TAG_NAME, "button"):
            if b.text.strip() == label:
                self.until(f"{label} enabled", b.is_enabled)
                b.click()
                return
        raise Fail(f"checkpoint {cid} has no {label} button")

    # -- the browser's own state ----------------------------------------------------------

    def assert_no_console_errors(self, allowed=()):
        """No error in the browser's log since the last call, but those mentioning one of
        `allowed` (the statuses of refusals the test provoked, which Chromium logs)."""
        allowed = (allowed,) if isinstance(allowed, str) else tuple(allowed)
        entries = self.d.get_log("browser")
        bad = [e["message"] for e in entries if e["level"] == "SEVERE"
               and not any(a in e["message"] for a in allowed)]
        if bad:
            raise Fail(f"the browser logged errors: {bad}")

    def assert_token_only_in_session_storage(self, token):
        if token in self.d.current_url:
            raise Fail("the token is in the URL")
        if self.js("return document.cookie"):
            raise Fail(f"the page set cookies: {self.js('return document.cookie')!r}")
        if self.js("return sessionStorage.getItem('state-manager.token')") != token:
            raise Fail("the token is not in sessionStorage")
        if self.js("return localStorage.length"):
            raise Fail("the page wrote to localStorage")

    def views(self, where=None):
        """The desktop and the phone layouts (saved in `where` if given); the phone's must not
        be wider than the screen."""
        def dismiss():
            for close in self.d.find_elements(By.CSS_SELECTOR, ".notice button"):
                close.click()  # a notice that went by itself meanwhile is stale: until() retries
            return not self.d.find_elements(By.CSS_SELECTOR, ".notice")
        self.until("the notices dismissed", dismiss)
        if where:
            self.whole_page(DESKTOP[0], Path(where) / "console-desktop.png")
        self.d.set_window_size(*PHONE)
        self.until("the phone layout", lambda: self.js("return window.innerWidth") <= PHONE[0])
        overflow = self.js("return document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 0:
            raise Fail(f"at phone width the page is {overflow}px wider than the screen")
        if where:
            self.whole_page(PHONE[0], Path(where) / "console-phone.png", most=1800)
        self.d.set_window_size(*DESKTOP)

    def whole_page(self, width, path, most=2400):
        """Save the page at `width` as tall as its content (up to `most` pixels). The viewport is
        set through the DevTools protocol: a headless window is clamped to its screen, so a
        taller window alone still cut the page off."""
        tall = self.js("return document.documentElement.scrollHeight")
        for _ in range(3):  # a taller viewport can reflow: measure again
            self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": min(tall, most), "deviceScaleFactor": 1, "mobile": False})
            now = self.js("return document.documentElement.scrollHeight")
            if now == tall:
                break
            tall = now
        self.js("window.scrollTo(0, 0)")
        self.d.save_screenshot(str(path))
        self.d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
