"""Drive JupyterLab's Dask sidebar (dask-labextension 7) in headless Chromium through Selenium.

A plain helper for tests, no tests in it. `JupyterLabServer` runs `jupyter lab` in its own
process group on a free localhost port; `launch_cluster_in_sidebar` opens the lab in headless
Chromium, clicks "+ NEW" in the Dask sidebar, waits for the new cluster's card to show enough
workers, saves a screenshot and reads the card. Which cluster class "+ NEW" starts is the
server's dask config `labextension.factory`; `write_factory_config` writes one for DASK_CONFIG.

Every wait has a timeout; when one runs out, or the lab shows an error dialog meanwhile, a
`SidebarError` is raised after the page's screenshot and HTML are saved beside the screenshot
path asked for.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Selectors, from dask-labextension 7.0.0's bundle and JupyterLab 4's DOM. The extension
# registers its sidebar widget with the id "dask-dashboard-launcher", and JupyterLab's side
# bar names each tab after its widget's id in data-id; the launch button is a
# CommandToolbarButton, which JupyterLab marks with the command it runs ("dask:launch-cluster")
# in data-command; each cluster card is an <li class="dask-ClusterListingItem"> carrying the
# server's cluster id in data-cluster-id. These are ids and command names the extension's own
# code refers to (the context menu and restorer use them), so they outlive styling changes,
# unlike the button's visible text or the card's layout.
SIDEBAR_ID = "dask-dashboard-launcher"
SIDEBAR_TAB = f'.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="{SIDEBAR_ID}"]'
SIDEBAR_PANEL = f"#{SIDEBAR_ID}"
LAUNCH_COMMAND = "dask:launch-cluster"
NEW_BUTTON = f'{SIDEBAR_PANEL} .dask-DaskClusterManager [data-command="{LAUNCH_COMMAND}"]'
CLUSTER_CARD = f"{SIDEBAR_PANEL} li.dask-ClusterListingItem[data-cluster-id]"
LAB_SHELL = "#main.jp-LabShell"
DIALOG = ".jp-Dialog"
# The card writes its counts as "<label>: <value>" in .dask-ClusterListingItem-stats divs.
WORKERS_RE = re.compile(r"Number of Workers:\s*(\d+)")

CHROMIUM_FLAGS = (
    "--headless",
    # root has no usable sandbox
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    # Chromium otherwise phones home at start; where only localhost is reachable those
    # connections are refused and can stall or fail the session.
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Not --disable-crashpad-for-testing: Debian's Chromium 156 then dies at start ("FD
    # ownership violation") and its network service restarts in a loop, so no page loads.
)

# JupyterLab asks "Would you like to get notified about official Jupyter news?" in a toast over
# the main area even with news_url=None; answering "never" in the user's settings keeps it off.
_LAB_USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


class SidebarError(AssertionError):
    """A wait in the lab page or on the server ran out, or the lab showed an error dialog; the
    message says what was awaited and where the debug files are."""


class _ServerExited(RuntimeError):
    pass


def chromium_available() -> str | None:
    """None when this harness can run here, else the reason it cannot (for pytest.skip)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        return f"{' and '.join(missing)} missing (Debian: apt-get install chromium chromium-driver)"
    for module, package in (
        ("selenium", "selenium"),
        ("dask_labextension", "dask-labextension"),
        ("jupyterlab", "jupyterlab"),
    ):
        # found, not imported: importing dask_labextension writes its defaults into the dask
        # config directory of this process
        if importlib.util.find_spec(module) is None:
            return f"Python package {package} missing (pip install dask-labextension selenium)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_factory_config(
    directory: Path, module: str, cls: str, args: list | None = None, kwargs: dict | None = None
) -> dict[str, str]:
    """Write `labextension.factory` into DIRECTORY and return the env that makes a server read it.

    The file is named labextension.yaml on purpose: dask-labextension copies its defaults into
    the DASK_CONFIG directory under that name at import unless a file of that name is there.
    """
    import yaml

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    factory = {
        "module": module,
        "class": cls,
        "args": list(args or []),
        "kwargs": dict(kwargs or {}),
    }
    (directory / "labextension.yaml").write_text(
        yaml.safe_dump({"labextension": {"factory": factory}}, sort_keys=False)
    )
    return {"DASK_CONFIG": str(directory)}


def _group_members(pgid: int, not_before: float) -> list[int]:
    """Live pids in process group PGID started at or after NOT_BEFORE (a reused pgid's are not);
    zombies left out, as dasklaunch's own process handling counts them."""
    from dasklaunch.runtime.proc import group_members

    return group_members(pgid, not_before)


class JupyterLabServer:
    """`jupyter lab` on 127.0.0.1 in a process group of its own, for one test.

    ROOT_DIR is the lab's file root; LOG_PATH receives the server's stdout and stderr; ENV is
    added to the server's environment (DASK_CONFIG, PATH, ...). DASK_* variables of this
    process are not passed on: they would override the factory the caller configures. The
    server's user-level Jupyter config, settings, workspaces, runtime and IPython files live in
    STATE_DIR (default: a folder beside the log), so a saved layout from another run cannot
    change what the sidebar shows.
    """

    def __init__(
        self,
        root_dir: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        state_dir: Path | None = None,
        port: int | None = None,
        token: str | None = None,
        ready_timeout: float = 90.0,
    ):
        self.root_dir = Path(root_dir)
        self.log_path = Path(log_path)
        self.extra_env = dict(env or {})
        self.state_dir = Path(state_dir) if state_dir else self.log_path.with_suffix(".jupyter")
        self.port = port
        self.token = token or uuid.uuid4().hex
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.pgid: int | None = None
        self.started: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def lab_url(self) -> str:
        return f"{self.url}lab?token={self.token}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
        config_dir = self.state_dir / "config"
        env.update(
            {
                "JUPYTER_CONFIG_DIR": str(config_dir),
                "JUPYTER_RUNTIME_DIR": str(self.state_dir / "runtime"),
                "IPYTHONDIR": str(self.state_dir / "ipython"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def _write_user_settings(self) -> None:
        settings = self.state_dir / "config" / "lab" / "user-settings"
        for name, values in _LAB_USER_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))

    def start(self) -> JupyterLabServer:
        if self.proc is not None:
            raise RuntimeError("this JupyterLabServer was started already")
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._write_user_settings()
        # A port picked here may be taken before the server binds it; the server then exits
        # (port_retries=0), and a new port is tried rather than letting it move silently.
        explicit_port = self.port is not None
        for _attempt in range(1 if explicit_port else 3):
            if not explicit_port:
                self.port = free_port()
            self._spawn()
            try:
                self._wait_ready()
                return self
            except _ServerExited:
                self.stop()
                if explicit_port or "already in use" not in self.log_tail():
                    raise
                self.proc = None
            except BaseException:
                self.stop()
                raise
        raise RuntimeError(f"jupyter lab could not bind a port; log: {self.log_path}")

    def _spawn(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            # no news feed and no update check: there is nothing to reach them at
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        with open(self.log_path, "ab") as log:
            shown = " ".join(argv).replace(self.token, "<token>")
            log.write(f"\n=== {shown}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv,
                cwd=self.root_dir,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started = time.time()
        self.pid = self.pgid = self.proc.pid

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last_error: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise _ServerExited(
                    f"jupyter lab exited with {self.proc.returncode} before it "
                    f"answered /api/status; log {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            try:
                status = self.api("GET", "api/status", timeout=5)
                if isinstance(status, dict) and "started" in status:
                    return
                last_error = status
            except (OSError, urllib.error.URLError) as exc:
                last_error = exc
            time.sleep(0.2)
        raise SidebarError(
            f"jupyter lab did not answer {self.url}api/status within "
            f"{self.ready_timeout:.0f} s (last: {last_error!r}); log "
            f"{self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        """One authenticated REST call; the decoded JSON answer, or None for an empty one."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path.lstrip("/"),
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def list_clusters(self) -> list[dict]:
        return self.api("GET", "dask/clusters")

    def delete_cluster(self, cluster_id: str, timeout: float = 60) -> bool:
        """Close a cluster through the server; False if the server did not know it."""
        try:
            self.api("DELETE", f"dask/clusters/{cluster_id}", timeout=timeout)
        except urllib.error.HTTPError as exc:
            # dask-labextension 7 raises its 404 inside a try that answers every error with a
            # 500, so an unknown id reads "500 ... not found".
            body = exc.read().decode(errors="replace")
            if exc.code == 404 or (exc.code == 500 and "not found" in body):
                return False
            raise
        return True

    def delete_all_clusters(self, timeout: float = 60) -> list[str]:
        ids = [cluster["id"] for cluster in self.list_clusters()]
        for cluster_id in ids:
            self.delete_cluster(cluster_id, timeout=timeout)
        return ids

    def live_members(self) -> list[int]:
        """Live processes of the server's group (the server, kernels, cluster processes)."""
        if self.pgid is None:
            return []
        return _group_members(self.pgid, self.started)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the whole group, wait, then SIGKILL what is left; returns once none is live."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self.proc.poll() is None or self.live_members()):
            time.sleep(0.1)
        if self.proc.poll() is None or self.live_members():
            self._signal_group(signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (self.proc.poll() is None or self.live_members()):
                time.sleep(0.1)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        left = self.live_members()
        if left:
            raise RuntimeError(
                f"jupyter lab's process group {self.pgid} still has {left} after SIGKILL"
            )

    def _signal_group(self, sig: int) -> None:
        # Only while members of ours live: once the group is empty its id may be reused.
        if self.live_members():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, sig)

    def __enter__(self) -> JupyterLabServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def chromium(
    profile_dir: Path | None = None,
    log_path: Path | None = None,
    window_size: tuple[int, int] = (1400, 1000),
) -> Iterator[Any]:
    """A headless Chromium under Selenium in PROFILE_DIR (default: a temporary folder, removed
    after), quit on leaving, with nothing of it left running.

    The driver and browser run in a session of their own, so that what quit() leaves of them is
    ended by their process group. Chromium's crash handler is the exception: it makes itself a
    session of its own and ends when the browser does; XDG_CONFIG_HOME points it at a crash
    database inside PROFILE_DIR (not ~/.config/chromium), by which it is awaited after quit().
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    own_profile = profile_dir is None
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-")) if own_profile else profile_dir
    profile = Path(profile).resolve()
    profile.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    # An explicit binary and driver keep Selenium Manager from looking for (or downloading)
    # either.
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={window_size[0]},{window_size[1]}")
    options.add_argument(f"--user-data-dir={profile / 'user-data'}")
    env = dict(os.environ)
    env.update(XDG_CONFIG_HOME=str(profile / "config"), XDG_CACHE_HOME=str(profile / "cache"))
    service = Service(
        executable_path=CHROMEDRIVER,
        log_output=str(log_path) if log_path else subprocess.DEVNULL,
        env=env,
        popen_kw={"start_new_session": True},
    )
    started = time.time()
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except BaseException:
        # the driver may have started the browser before failing: end its group too
        if service.process is not None:
            _end_group(service.process.pid, started)
        if own_profile:
            shutil.rmtree(profile, ignore_errors=True)
        raise
    pgid = driver.service.process.pid
    try:
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            try:
                _end_group(pgid, started)
                _await_crash_handlers(profile / "config", started)
            finally:
                if own_profile:
                    shutil.rmtree(profile, ignore_errors=True)


def _end_group(pgid: int, not_before: float, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    sig = signal.SIGTERM
    while _group_members(pgid, not_before):
        if time.monotonic() > deadline:
            if sig == signal.SIGKILL:
                raise RuntimeError(f"Chromium's process group {pgid} survived SIGKILL")
            sig, deadline = signal.SIGKILL, time.monotonic() + timeout
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        time.sleep(0.2)


def _await_crash_handlers(config_home: Path, not_before: float, timeout: float = 10) -> None:
    """Wait for the crash handlers whose database lies under CONFIG_HOME (ours) to end.

    They are only waited for, never signalled: they end with the browser they watch, and one
    that does not is a leak to report, not something to guess at.
    """
    import psutil

    prefix = f"--database={config_home}{os.sep}"

    def handlers() -> list[int]:
        found = []
        for proc in psutil.process_iter(["pid", "create_time", "status", "cmdline"]):
            info = proc.info
            if info["status"] == psutil.STATUS_ZOMBIE or (info["create_time"] or 0) < (
                not_before - 1.0
            ):
                continue
            if any(arg.startswith(prefix) for arg in info["cmdline"] or ()):
                found.append(info["pid"])
        return found

    deadline = time.monotonic() + timeout
    while (left := handlers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        raise RuntimeError(f"Chromium's crash handlers {left} outlived the browser by {timeout} s")


@dataclass
class SidebarCluster:
    """What the cluster's card in the Dask sidebar showed."""

    id: str
    name: str
    workers: int
    workers_text: str
    stats: list[str]
    screenshot: Path
    seconds: float


class DaskSidebar:
    """The Dask sidebar of one lab page, for one server, in one driver.

    SCREENSHOT is where `launch_cluster` saves its picture; debug files for a timeout go
    beside it, named after it.
    """

    def __init__(self, driver: Any, server: JupyterLabServer, screenshot: Path):
        self.driver = driver
        self.server = server
        self.screenshot = Path(screenshot)

    # -- waiting -------------------------------------------------------------------------

    def wait(
        self,
        what: str,
        condition: Callable[[], Any],
        timeout: float,
        poll: float = 0.25,
        detail: Callable[[], str] | None = None,
    ) -> Any:
        """CONDITION's first truthy value; SidebarError naming WHAT after TIMEOUT seconds.

        Exceptions from CONDITION count as "not yet" (the last one is reported). A dialog the
        lab opens meanwhile (dask-labextension reports a failed start in one) ends the wait at
        once, with its text. DETAIL, if given, adds what the page shows at the failure.
        """
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            try:
                value = condition()
                if value:
                    return value
                last_error = None
            except Exception as exc:  # a stale element or a page being replaced
                last_error = exc
            dialog = self._dialog_text()
            if dialog:
                self._fail(f"the lab showed a dialog while waiting for {what}: {dialog!r}", detail)
            if time.monotonic() >= deadline:
                error = f" (last error: {last_error!r})" if last_error else ""
                self._fail(f"timed out after {timeout:.0f} s waiting for {what}{error}", detail)
            time.sleep(poll)

    def _dialog_text(self) -> str:
        try:
            return self.driver.execute_script(
                "const d = document.querySelector(arguments[0]);"
                "return d ? d.innerText.trim() : '';",
                DIALOG,
            )
        except Exception:
            return ""

    def save_debug(self, label: str = "failure") -> tuple[Path, Path]:
        """Save the page's screenshot and HTML beside the screenshot path."""
        base = self.screenshot.with_name(f"{self.screenshot.stem}-{label}")
        png, html = base.with_suffix(".png"), base.with_suffix(".html")
        png.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            self.driver.save_screenshot(str(png))
        with contextlib.suppress(Exception):
            html.write_text(self.driver.page_source)
        return png, html

    def _fail(self, message: str, detail: Callable[[], str] | None = None) -> None:
        lines = [message]
        with contextlib.suppress(Exception):
            if detail is not None:
                lines.append(detail())
        with contextlib.suppress(Exception):
            lines.append(f"page: {self.driver.current_url}")
        png, html = self.save_debug()
        lines.append(f"saved {png} and {html}")
        lines.append(f"server log {self.server.log_path} ends:\n{self.server.log_tail(20)}")
        raise SidebarError("\n".join(lines))

    # -- page ----------------------------------------------------------------------------

    def _displayed(self, selector: str) -> bool:
        return bool(
            self.driver.execute_script(
                "const e = document.querySelector(arguments[0]);"
                "return !!e && e.getClientRects().length > 0"
                " && !e.classList.contains('lm-mod-hidden');",
                selector,
            )
        )

    def open(self, timeout: float = 60) -> None:
        """Load the lab and show the Dask sidebar with its cluster manager."""
        from selenium.common.exceptions import TimeoutException

        self.driver.set_page_load_timeout(timeout)
        try:
            self.driver.get(self.server.lab_url)
        except TimeoutException:
            self._fail(f"timed out after {timeout:.0f} s loading {self.server.url}lab")
        self.wait(
            "JupyterLab's shell (#main.jp-LabShell)", lambda: self._displayed(LAB_SHELL), timeout
        )
        self.wait(
            f"the Dask tab in the left side bar ({SIDEBAR_TAB}); is dask-labextension "
            f"installed and enabled?",
            lambda: self._displayed(SIDEBAR_TAB),
            timeout,
        )
        last_click = [-1e9]

        def panel_shown() -> bool:
            if self._displayed(SIDEBAR_PANEL):
                return True
            # A click on the tab of an open panel closes it again: click only while it is
            # closed, and give each click time to show the panel before the next.
            if time.monotonic() - last_click[0] > 2.0:
                last_click[0] = time.monotonic()
                self.driver.find_element("css selector", SIDEBAR_TAB).click()
            return False

        self.wait(f"the Dask sidebar panel ({SIDEBAR_PANEL}) to show", panel_shown, timeout)
        self.wait(
            f'the "+ NEW" button ({NEW_BUTTON})', lambda: self._displayed(NEW_BUTTON), timeout
        )

    def _click(self, selector: str) -> bool:
        self.driver.find_element("css selector", selector).click()
        return True

    def cards(self) -> list[dict]:
        """Every cluster card shown now: id, name, stats lines, read in one go."""
        return self.driver.execute_script(
            """
            return Array.from(document.querySelectorAll(arguments[0])).map(li => ({
              id: li.dataset.clusterId,
              name: (li.querySelector('.dask-ClusterListingItem-title') || {}).innerText || '',
              stats: Array.from(li.querySelectorAll('.dask-ClusterListingItem-stats'))
                          .map(d => d.innerText.trim()),
            }));
            """,
            CLUSTER_CARD,
        )

    def _new_button_enabled(self) -> bool:
        # JupyterLab disables the button while a start is under way (isEnabled: isReady).
        return bool(
            self.driver.execute_script(
                "const b = document.querySelector(arguments[0]);"
                "return !!b && !b.disabled && b.getAttribute('aria-disabled') !== 'true'"
                " && !b.classList.contains('lm-mod-disabled');",
                NEW_BUTTON,
            )
        )

    def launch_cluster(self, min_workers: int = 1, timeout: float = 120) -> SidebarCluster:
        """Click "+ NEW"; wait for the new card to show MIN_WORKERS workers; screenshot it."""
        before = {card["id"] for card in self.cards()}
        before |= {cluster["id"] for cluster in self.server.list_clusters()}
        self.wait('the "+ NEW" button to be enabled', self._new_button_enabled, timeout)
        started = time.monotonic()
        # A click that raised (say, covered by a toast) did not happen and is tried again; one
        # that went through is never repeated, as each starts a cluster.
        self.wait('a click on "+ NEW" to go through', lambda: self._click(NEW_BUTTON), timeout)

        def ready() -> dict | None:
            for card in self.cards():
                if card["id"] in before:
                    continue
                text = next((s for s in card["stats"] if WORKERS_RE.search(s)), "")
                match = WORKERS_RE.search(text)
                if match and int(match.group(1)) >= min_workers:
                    return dict(card, workers=int(match.group(1)), workers_text=text)
            return None

        card = self.wait(
            f"a new cluster card ({CLUSTER_CARD}) showing at least {min_workers} worker(s)",
            ready,
            timeout,
            detail=lambda: (
                f"cards shown: {self.cards()!r}; server lists: {self.server.list_clusters()!r}"
            ),
        )
        seconds = time.monotonic() - started
        self.driver.execute_script(
            "const e = document.querySelector(arguments[0]); if (e) e.scrollIntoView();",
            f'{CLUSTER_CARD}[data-cluster-id="{card["id"]}"]',
        )
        self.screenshot.parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(self.screenshot)):
            raise RuntimeError(f"Chromium could not save {self.screenshot}")
        return SidebarCluster(
            id=card["id"],
            name=card["name"],
            workers=card["workers"],
            workers_text=card["workers_text"],
            stats=card["stats"],
            screenshot=self.screenshot,
            seconds=seconds,
        )

    def shutdown_cluster(self, cluster_id: str, timeout: float = 60) -> None:
        """Click the card's SHUTDOWN button and wait until the card and the server forget it."""
        button = f'{CLUSTER_CARD}[data-cluster-id="{cluster_id}"] .dask-ClusterListingItem-stop'
        self.wait(
            f"the SHUTDOWN button of cluster {cluster_id} ({button})",
            lambda: self._displayed(button),
            timeout,
        )
        self.wait(f"a click on {button} to go through", lambda: self._click(button), timeout)
        self.wait(
            f"cluster {cluster_id} to leave the server's list and the sidebar",
            lambda: (
                all(c["id"] != cluster_id for c in self.server.list_clusters())
                and all(c["id"] != cluster_id for c in self.cards())
            ),
            timeout,
        )


def launch_cluster_in_sidebar(
    server: JupyterLabServer,
    screenshot: Path,
    min_workers: int = 1,
    timeout: float = 120,
    shutdown: str | None = "ui",
    chromium_log: Path | None = None,
) -> SidebarCluster:
    """Open the lab in a fresh headless Chromium, start a cluster with "+ NEW", screenshot it.

    SHUTDOWN: "ui" clicks the card's SHUTDOWN button afterwards, "api" deletes the cluster
    through the REST API, None leaves it running (close it with server.delete_cluster). A
    cluster that this call started is deleted through the API if anything fails on the way.
    """
    if shutdown not in ("ui", "api", None):
        raise ValueError(f"shutdown must be 'ui', 'api' or None, not {shutdown!r}")
    known = {cluster["id"] for cluster in server.list_clusters()}
    profile = Path(screenshot).with_name(f"{Path(screenshot).stem}-chromium-profile")
    result = None
    try:
        with chromium(profile_dir=profile, log_path=chromium_log) as driver:
            sidebar = DaskSidebar(driver, server, screenshot)
            sidebar.open(timeout=timeout)
            result = sidebar.launch_cluster(min_workers=min_workers, timeout=timeout)
            if shutdown == "ui":
                sidebar.shutdown_cluster(result.id, timeout=timeout)
        if shutdown == "api":
            server.delete_cluster(result.id, timeout=timeout)
    except BaseException:
        # A cluster the failed call started (seen or not) must not outlive it.
        with contextlib.suppress(Exception):
            for cluster in server.list_clusters():
                if cluster["id"] not in known:
                    server.delete_cluster(cluster["id"], timeout=timeout)
        raise
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return result
