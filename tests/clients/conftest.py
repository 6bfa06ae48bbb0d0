"""Fixtures for the client-compatibility suite.

One `mock-upstream` and one `reprise` process are started per pytest session,
both bound to 127.0.0.1:0; their addresses are read from their startup output.
Every test gets a freshly reset mock (call counters and `/_mock/last`), but the
reprise cache lives for the whole session, so tests must use unique prompts
(see the `prompt` fixture).

Binaries: `$REPRISE_BIN` / `$MOCK_UPSTREAM_BIN`, else `target/debug/reprise`
and `target/debug/mock-upstream` under the repository root (`cargo build --bins`).
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

import anthropic
import httpx
import openai
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = float(os.environ.get("REPRISE_TEST_STARTUP_TIMEOUT", "30"))
LOG_TAIL_LINES = 200

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
MOCK_LISTEN_RE = re.compile(r"^mock-upstream listening on (http://127\.0\.0\.1:\d+)\s*$")
REPRISE_LISTEN_RE = re.compile(r"listening on (?:http://)?([0-9.]+:[0-9]+)")


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


def _binary(env_var: str, default_name: str) -> Path:
    explicit = os.environ.get(env_var)
    path = Path(explicit) if explicit else REPO_ROOT / "target" / "debug" / default_name
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.exit(
            f"{default_name} binary not found at {path} "
            f"(set ${env_var} or run `cargo build --bins`)",
            returncode=2,
        )
    return path


class ManagedProcess:
    """A child process whose stdout and stderr are drained by background threads.

    Every line (ANSI codes stripped) is kept in a bounded tail for failure
    messages and pushed to a queue so startup can wait for a specific line
    without ever letting a pipe fill up.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._lock = threading.Lock()
        self._startup = True
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        self._threads = [
            threading.Thread(target=self._drain, args=("stdout", self.proc.stdout), daemon=True),
            threading.Thread(target=self._drain, args=("stderr", self.proc.stderr), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _drain(self, stream_name: str, pipe: Any) -> None:
        for raw in iter(pipe.readline, ""):
            line = strip_ansi(raw.rstrip("\r\n"))
            with self._lock:
                self.tail.append(f"[{stream_name}] {line}")
            if self._startup:
                self._lines.put((stream_name, line))
        self._lines.put((stream_name, None))  # EOF marker

    def log_text(self) -> str:
        with self._lock:
            return "\n".join(self.tail)

    def wait_for_line(self, pattern: re.Pattern[str], streams: set[str], what: str) -> re.Match[str]:
        """Wait for the first line on one of `streams` matching `pattern`."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        eof: set[str] = set()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"timed out after {STARTUP_TIMEOUT_S}s waiting for {what}")
            try:
                stream_name, line = self._lines.get(timeout=min(remaining, 0.25))
            except queue.Empty:
                if self.proc.poll() is not None and eof >= {"stdout", "stderr"}:
                    self._fail(f"exited with status {self.proc.returncode} before {what}")
                continue
            if line is None:
                eof.add(stream_name)
                if eof >= {"stdout", "stderr"}:
                    self.proc.wait(timeout=5)
                    self._fail(f"exited with status {self.proc.returncode} before {what}")
                continue
            if stream_name in streams:
                m = pattern.search(line)
                if m:
                    self.started()
                    return m

    def first_stdout_line(self, what: str) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"timed out after {STARTUP_TIMEOUT_S}s waiting for {what}")
            try:
                stream_name, line = self._lines.get(timeout=min(remaining, 0.25))
            except queue.Empty:
                continue
            if stream_name != "stdout":
                continue
            if line is None:
                self.proc.wait(timeout=5)
                self._fail(f"closed stdout (status {self.proc.returncode}) before {what}")
            self.started()
            return line

    def started(self) -> None:
        """Stop queueing lines (startup is over); the tail is still kept."""
        self._startup = False

    def _fail(self, message: str) -> None:
        self.stop()
        pytest.exit(
            f"{self.name}: {message}\ncommand: {' '.join(self.argv)}\n--- output ---\n{self.log_text()}",
            returncode=3,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for t in self._threads:
            t.join(timeout=2)


# Processes started in this session, for failure reports (see pytest_runtest_makereport).
_PROCESSES: list[ManagedProcess] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for p in _PROCESSES:
            report.sections.append((f"{p.name} output (last {LOG_TAIL_LINES} lines)", p.log_text()))


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def mock_upstream_url() -> Iterator[str]:
    binary = _binary("MOCK_UPSTREAM_BIN", "mock-upstream")
    proc = ManagedProcess(
        "mock-upstream",
        [str(binary), "--listen", "127.0.0.1:0"],
        env=_child_env(NO_COLOR="1"),
    )
    _PROCESSES.append(proc)
    try:
        first = proc.first_stdout_line("its listening line")
        m = MOCK_LISTEN_RE.match(first)
        if not m:
            proc._fail(f"first stdout line is not the listening line: {first!r}")
        assert m is not None
        yield m.group(1)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def reprise_process(mock_upstream_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    binary = _binary("REPRISE_BIN", "reprise")
    config_dir = tmp_path_factory.mktemp("reprise-config")
    config = config_dir / "reprise.toml"
    config.write_text(
        f"""\
[server]
listen = "127.0.0.1:8080"
upstream_timeout = "5s"

[cache]
ttl = "1h"

[routing]
default_provider = "mock"

# Claude models go to the same mock, which also speaks Anthropic at /v1/messages.
# Listed before `mock`, whose `*` catches everything else.
[[providers]]
name = "claude"
kind = "anthropic"
base_url = "{mock_upstream_url}/v1"
models = ["claude-*"]

[[providers]]
name = "mock"
kind = "openai"
base_url = "{mock_upstream_url}/v1"
models = ["*"]
# Off by default for non-OpenAI hosts; on here so OpenAI requests get a prompt_cache_key.
inject_prompt_cache = true
""",
        encoding="utf-8",
    )
    proc = ManagedProcess(
        "reprise",
        [str(binary), "--config", str(config), "--listen", "127.0.0.1:0"],
        env=_child_env(NO_COLOR="1", RUST_LOG=os.environ.get("REPRISE_TEST_RUST_LOG", "info")),
    )
    _PROCESSES.append(proc)
    try:
        # tracing may log to stdout or stderr depending on configuration: watch both.
        m = proc.wait_for_line(REPRISE_LISTEN_RE, {"stdout", "stderr"}, "its `listening on` log line")
        proc.listen_addr = m.group(1)  # type: ignore[attr-defined]
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def reprise_url(reprise_process: ManagedProcess) -> str:
    return f"http://{reprise_process.listen_addr}"  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def mock_http(mock_upstream_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock_upstream_url, timeout=10) as c:
        yield c


@pytest.fixture(autouse=True)
def reset_mock(mock_http: httpx.Client, reprise_url: str) -> None:
    """Reset the mock's counters and last-request record before every test.

    Depends on `reprise_url` so that both processes are up before any test runs.
    """
    r = mock_http.post("/_mock/reset")
    r.raise_for_status()


@pytest.fixture
def mock_calls(mock_http: httpx.Client) -> Callable[[], dict[str, int]]:
    """`mock_calls()` -> `{"chat": n, "embeddings": n, "models": n, "messages": n, "total": n}` since the reset."""

    def calls() -> dict[str, int]:
        r = mock_http.get("/_mock/calls")
        r.raise_for_status()
        return r.json()

    return calls


@pytest.fixture
def mock_last(mock_http: httpx.Client) -> Callable[[], Any]:
    """`mock_last()` -> the parsed JSON body of the last request the mock received."""

    def last() -> Any:
        r = mock_http.get("/_mock/last")
        r.raise_for_status()
        return r.json()

    return last


@pytest.fixture
def mock_last_headers(mock_http: httpx.Client) -> Callable[[], dict[str, str]]:
    """`mock_last_headers()` -> the last upstream request's headers, `{lowercase-name: value}`."""

    def last_headers() -> dict[str, str]:
        r = mock_http.get("/_mock/last_headers")
        r.raise_for_status()
        return r.json()

    return last_headers


@pytest.fixture
def prompt(request: pytest.FixtureRequest) -> str:
    """A prompt unique to this test run (the cache outlives individual tests)."""
    return f"{request.node.name} {uuid.uuid4()}: say something short"


def make_client(reprise_url: str, api_key: str = "sk-test-a") -> openai.OpenAI:
    # max_retries=0: the SDK retries 429/5xx by default, which would skew upstream call counts.
    return openai.OpenAI(base_url=reprise_url + "/v1", api_key=api_key, max_retries=0, timeout=30)


def make_async_client(reprise_url: str, api_key: str = "sk-test-a") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=reprise_url + "/v1", api_key=api_key, max_retries=0, timeout=30)


@pytest.fixture(scope="session")
def client(reprise_url: str) -> Iterator[openai.OpenAI]:
    c = make_client(reprise_url, "sk-test-a")
    yield c
    c.close()


@pytest.fixture(scope="session")
def client_b(reprise_url: str) -> Iterator[openai.OpenAI]:
    """Same proxy, different credential: a different cache namespace."""
    c = make_client(reprise_url, "sk-test-b")
    yield c
    c.close()


@pytest.fixture
def async_client_factory(reprise_url: str) -> Callable[..., openai.AsyncOpenAI]:
    """Returns `factory(api_key="sk-test-a") -> AsyncOpenAI`.

    Create the async client inside the coroutine you `asyncio.run` (and use it as an
    async context manager) so its connection pool is bound to that event loop.
    """

    def factory(api_key: str = "sk-test-a") -> openai.AsyncOpenAI:
        return make_async_client(reprise_url, api_key)

    return factory


def make_anthropic_client(reprise_url: str, api_key: str = "sk-ant-test") -> anthropic.Anthropic:
    # The SDK appends /v1/messages to base_url. max_retries=0 keeps upstream counts exact.
    return anthropic.Anthropic(base_url=reprise_url, api_key=api_key, max_retries=0, timeout=30)


@pytest.fixture(scope="session")
def anthropic_client(reprise_url: str) -> Iterator[anthropic.Anthropic]:
    c = make_anthropic_client(reprise_url)
    yield c
    c.close()
