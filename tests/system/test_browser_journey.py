"""A person's journey in a real browser (Debian's chromium, headless, via chromedriver):
subscribe through the form, follow the verification link from the email the outbox sink
wrote, and see the subscription with its price-history chart on the manage page; then add
a webhook channel on that page, confirm it by the link of the test message it receives,
choose it for one subscription, pause it and remove it. The whole pipeline runs as real
processes (Stack). Screenshots: test-artifacts/browser/."""

from __future__ import annotations

import email
import email.policy
import json
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.support.wait import WebDriverWait

from launcher.demo.run import demo_settings
from launcher.demo.shop import DEFAULT_PRODUCTS, DemoProduct
from launcher.processes import free_port
from launcher.stack import Stack
from pricewatch.settings import Settings
from tests.conftest import ARTIFACTS, REQUIRE_SERVICES, Broker, fresh_database
from tests.helpers import wait_for
from tests.system.conftest import WebhookReceiver

pytestmark = pytest.mark.timeout(300)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = ARTIFACTS / "browser"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = "chromium/chromedriver missing: run `make browser-deps`"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument("--window-size=1200,1000")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    # The whole page, not just the window: set the height to the document's.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, max(600, min(int(height) + 120, 4000)))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _emailed_link(outbox: Path, kind: str, page: str) -> str | None:
    """The ``page`` link in the first ``kind`` email the outbox sink wrote."""
    for path in sorted(outbox.glob(f"{kind}-*.eml")) if outbox.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
        found = re.search(rf"(http://\S+{page}\?token=\S+)", body.get_content())
        if found:
            return found.group(1)
    return None


def _open_emailed_link(driver: Any, settings: Settings, kind: str, page: str) -> None:
    """Wait for the ``kind`` email and open its ``page`` link, as its reader would."""
    link = wait_for(
        lambda: _emailed_link(settings.outbox_path, kind, page),
        timeout=60,
        what=f"the {kind} email",
    )
    driver.get(link)


def _shop_page(settings: Settings, product: DemoProduct) -> str:
    return f"http://{settings.api_host}:{settings.demo_shop_port}/products/{product.slug}"


def _price_rows(database_url: str, url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM prices pr JOIN products p USING (product_id) WHERE p.url = %s",
            (url,),
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.integration
def test_subscribe_verify_and_manage_in_a_real_browser(
    browser: Any,
    tmp_path: Path,
    broker: Broker,
    postgres_server: str,
    unique_prefix: str,
    hook: WebhookReceiver,
) -> None:
    from selenium.webdriver.common.by import By

    for database_url in fresh_database(postgres_server):
        settings = demo_settings(
            Settings(
                data_dir=tmp_path / "data",
                app_id=f"{unique_prefix}pw",
                topic_prefix=unique_prefix,
                api_port=free_port(),
                demo_shop_port=free_port(),
                default_check_interval_seconds=1.0,
                scheduler_tick_seconds=0.2,
                kafka_bootstrap_servers=broker.bootstrap_servers,
                kafka_embedded=broker.embedded,
                database_url=database_url,
                allowed_private_hosts=f"127.0.0.1:{hook.port}",  # the webhook channel
            )
        )
        with Stack(settings) as stack:
            try:
                manage_url = _journey(browser, stack, By)
                _channels(browser, manage_url, By, hook)
            finally:
                target = ARTIFACTS / "browser-logs"
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(stack.logs_dir, target)


def heading(driver: Any, By: Any, text: str) -> None:
    """Wait for the page whose h1 says ``text`` (after a click or a navigation)."""

    def shown(d: Any) -> bool:
        try:
            return text in d.find_element(By.TAG_NAME, "h1").text
        except WebDriverException:
            # The old page went away while we read it: a stale element, or (seen in CI)
            # chromedriver's "Node with given id does not belong to the document". Either
            # is transient; a page that never shows ``text`` still times out below.
            return False

    WebDriverWait(driver, 15).until(shown)


def _journey(driver: Any, stack: Stack, By: Any) -> str:
    """The journey; the manage page's URL (its link's token) for what follows."""
    settings = stack.settings
    product = DEFAULT_PRODUCTS[0]
    product_url = _shop_page(settings, product)
    address = f"browser-{uuid.uuid4().hex[:6]}@example.com"

    # 1. The form: every input is found by its label, as a screen reader would.
    driver.get(f"{settings.api_base_url}/")
    assert "Watch a product" in driver.title or "Watch a price" in driver.title

    def field(label: str) -> Any:
        target = driver.find_element(By.XPATH, f"//label[contains(., '{label}')]")
        return driver.find_element(By.ID, target.get_attribute("for"))

    field("Your email address").send_keys(address)
    field("Product page address").send_keys(product_url)
    field("Target price").send_keys(str(product.price - 1))
    field("it is back in stock").click()
    _shot(driver, "1-subscribe-form")
    driver.find_element(By.XPATH, "//button[contains(., 'Watch this product')]").click()
    heading(driver, By, "Check your inbox")  # a click does not wait for the next page
    _shot(driver, "2-check-your-inbox")

    # 2. The email the outbox sink wrote, and its link.
    _open_emailed_link(driver, settings, "verify", "/verify")
    # Opening the link only asks (mail scanners open links too); the button confirms.
    heading(driver, By, "Confirm your address")
    assert product_url in driver.page_source
    _shot(driver, "3-confirm-address")
    driver.find_element(By.XPATH, "//button[contains(., 'Confirm my address')]").click()
    heading(driver, By, "Address confirmed")
    _shot(driver, "4-verified")
    # Pages are fetched only for verified subscribers: the first check follows the link.
    wait_for(
        lambda: _price_rows(settings.database(), product_url) > 0,
        timeout=60,
        what="a first price in the history",
    )

    # 3. The manage page: the subscription, its current price and its chart.
    driver.find_element(By.LINK_TEXT, "See and change your subscriptions").click()
    heading(driver, By, "Your subscriptions")
    page = driver.page_source
    assert product.title in page
    assert address in page
    charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 1 and charts[0].find_elements(By.TAG_NAME, "polyline")
    assert charts[0].size["width"] > 200  # drawn, not collapsed
    target = field("Target price")
    assert target.get_attribute("value").startswith(str(product.price - 1).split(".")[0])
    _shot(driver, "5-manage")

    # 4. Change the target through the form: saved, and still readable on a phone.
    target.clear()
    target.send_keys("1")
    driver.find_element(By.XPATH, "//button[contains(., 'Save')]").click()
    WebDriverWait(driver, 15).until(lambda d: "Saved." in d.page_source)
    driver.set_window_size(390, 844)
    _shot(driver, "6-manage-mobile")
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 400, f"the page scrolls sideways on a phone ({width}px)"
    manage_url = driver.current_url
    driver.set_window_size(1200, 1000)

    # 5. A second product from the same, now confirmed, address: the form answers the same
    # as for a stranger, and the alert starts only from the link emailed to the address.
    second = DEFAULT_PRODUCTS[1]
    second_url = _shop_page(settings, second)
    driver.get(f"{settings.api_base_url}/")
    field("Your email address").send_keys(address)
    field("Product page address").send_keys(second_url)
    field("it sells out").click()
    driver.find_element(By.XPATH, "//button[contains(., 'Watch this product')]").click()
    heading(driver, By, "Check your inbox")
    _open_emailed_link(driver, settings, "confirm-subscription", "/confirm")
    heading(driver, By, "Start this alert?")
    assert second_url in driver.page_source and "when it sells out" in driver.page_source
    _shot(driver, "7-confirm-alert")
    driver.find_element(By.XPATH, "//button[contains(., 'Start this alert')]").click()
    heading(driver, By, "Alert started")
    driver.get(manage_url)
    heading(driver, By, "Your subscriptions")
    # Both listed; the second by its address until its first check learns the title.
    sections = driver.find_elements(By.CSS_SELECTOR, "section.card h2")
    assert {element.text for element in sections} >= {product.title}
    assert any(second_url in element.text or second.title in element.text for element in sections)
    return str(manage_url)


def _channels(driver: Any, manage_url: str, By: Any, hook: WebhookReceiver) -> None:
    """Add, confirm, choose, pause and remove a channel through the pages."""
    driver.get(manage_url)
    heading(driver, By, "Your subscriptions")
    assert "No channels yet." in driver.page_source

    # 1. Add a webhook: its form is folded away under "Add a channel".
    driver.find_element(By.XPATH, "//summary[contains(., 'a webhook')]").click()
    url_field = driver.find_element(By.ID, "add-webhook-url")
    url_field.send_keys(f"http://127.0.0.1:{hook.port}/pricewatch")
    driver.find_element(By.ID, "add-webhook-label").send_keys("my server")
    _shot(driver, "8-add-channel")
    driver.find_element(By.XPATH, "//button[contains(., 'Add a webhook')]").click()
    heading(driver, By, "Channel added")
    secret = driver.find_element(By.ID, "signing-secret").text
    assert secret.startswith("whsec_")
    _shot(driver, "9-channel-added")
    driver.find_element(By.LINK_TEXT, "Back to your subscriptions").click()
    heading(driver, By, "Your subscriptions")
    assert "waiting for confirmation" in driver.page_source
    assert secret not in driver.page_source  # shown once

    # 2. The test message reaches the webhook with its link; open it and press Confirm.
    def confirm_link() -> str | None:
        for _, body in hook.received:
            event = json.loads(body)
            if event["type"] == "org.pricewatch.channel.confirmation":
                return str(event["data"]["confirm_url"])
        return None

    driver.get(wait_for(confirm_link, timeout=60, what="the channel's test message"))
    heading(driver, By, "Confirm this channel?")
    driver.find_element(By.XPATH, "//button[contains(., 'Confirm this channel')]").click()
    heading(driver, By, "Channel confirmed")

    # 3. Choose it for the first subscription only: untick "every channel", tick it.
    driver.get(manage_url)
    heading(driver, By, "Your subscriptions")
    assert "my server" in driver.page_source and "waiting for confirmation" not in (
        driver.page_source
    )
    form = driver.find_elements(By.CSS_SELECTOR, "section.card form")[0]
    every = form.find_element(By.XPATH, ".//input[@name='channels_all']")
    assert every.is_selected()
    every.click()
    form.find_element(By.XPATH, ".//input[@name='channel']").click()
    _shot(driver, "10-choose-channel")
    form.find_element(By.XPATH, ".//button[contains(., 'Save')]").click()
    WebDriverWait(driver, 15).until(lambda d: "Saved." in d.page_source)
    form = driver.find_elements(By.CSS_SELECTOR, "section.card form")[0]
    assert not form.find_element(By.XPATH, ".//input[@name='channels_all']").is_selected()
    assert form.find_element(By.XPATH, ".//input[@name='channel']").is_selected()

    # 4. Pause it, resume it, remove it.
    driver.find_element(By.XPATH, "//button[@value='pause']").click()
    WebDriverWait(driver, 15).until(lambda d: "Channel paused" in d.page_source)
    assert driver.find_elements(By.XPATH, "//button[@value='resume']")
    _shot(driver, "11-channel-paused")
    driver.find_element(By.XPATH, "//button[@value='resume']").click()
    WebDriverWait(driver, 15).until(lambda d: "Channel resumed." in d.page_source)
    driver.find_element(By.XPATH, "//button[@value='remove']").click()
    WebDriverWait(driver, 15).until(lambda d: "Channel removed." in d.page_source)
    assert "No channels yet." in driver.page_source
    _shot(driver, "12-channel-removed")
