"""The config loader over thousands of generated bad files: never a traceback or a hang.

Mutations of the reference configs (random tags, numbers, deep nesting, aliases,
control characters, booleans, huge strings, truncations, type swaps, broken bytes),
seeded for reproducibility. Every file either loads or fails with ConfigError whose
every line is one located line; no file takes long, memory stays bounded; and a
handful go through the real `edge-agent check-config`, which exits 0 or 2.
"""

from __future__ import annotations

import random
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.config.loader import load_config
from edge_agent.errors import ConfigError
from tests.helpers import REPO

SEED = 9
VARIANTS = 2000
SUBPROCESS_SAMPLES = 8
MAX_SECONDS_PER_FILE = 2.0
MAX_TOTAL_SECONDS = 90.0
"""CPU seconds (process time, so parallel test workers do not count): ~20 on this box."""
MAX_RSS_GROWTH_MB = 300

NASTY_VALUES = [
    "!!int x", "!!float ''", "!!timestamp 2026-13-45", "!!binary aGk=", "!!set {a}",
    "!!omap [a: 1]", "!custom x", "!!python/name:os.system", "!!str", "!!map x", "!!seq x",
    "1" * 4301, "9" * 41, "1e999", "-1e999", ".inf", "-.inf", ".nan", "0x1F", "0o17",
    "0b101", "1_000", "18:83", "-0", "0755", "2026-11-30", "2026-13-45 10:00",
    "no", "yes", "on", "off", "y", "n", "NO", "True", "~", "null", '""', "''",
    '"\\0"', '"\\x1b[2J"', '"a\\nb"', '"\\t"', '"\\ud800"', '"\\U0001F600"', '"\\x7f"',
    "$SYS", "$share/x", "+", "'#'", "a/+/b", "'a/#'", "/", "é", "\u202e", "x" * 70_000,
    "[1, 2]", "{a: 1}", "[]", "{}", "*undefined", "&anchor x", "? a", "|", ">",
    '"unclosed', "'unclosed", "[unclosed", "{a: [}", "a: b: c", "- item", "@at", "`tick",
    "%percent", "${EDGE_AGENT_FUZZ_UNSET}", "$${LITERAL}", "rtsp://u:p@ss@h/x?password=s",
    "http://h", "127.0.0.1:9108", "[" * 40 + "]" * 40, "[" * 600 + "]" * 600,
    "{a: " * 50 + "1" + "}" * 50, "-1", "99999999999", "0.0000001", "1.5", "-1.5",
]
NASTY_BYTES = [b"\x00", b"\x07", b"\x1b", b"\t", b"\r", b"\x7f", b"\xff", b"\xfe\xff",
               b"\xef\xbb\xbf", b"\xc3", b"\xe9", b"\x85", b"\xe2\x80\xa8", b"\n", b": ", b"- ",
               b"#", b"&a ", b"*a ", b"!!", b"%YAML 1.1\n", b"---\n", b"...\n", b"\"", b"'",
               b"[", b"{", b"}", b"]", b",", b"? ", b"|\n", b">\n"]
BOMB = (b'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
        + b"".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n".encode()
                   for p, n in zip("abcdefgh", "bcdefghi", strict=True)))
VALUE_LINE = re.compile(rb"^(\s*(?:- )?[A-Za-z_]+:) (.+)$")


def _lines(text: bytes) -> list[bytes]:
    return text.split(b"\n")


def _value_lines(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if VALUE_LINE.match(line)]


def _set_value(rng: random.Random, text: bytes) -> bytes:
    lines = _lines(text)
    index = rng.choice(_value_lines(lines) or [0])
    match = VALUE_LINE.match(lines[index])
    key = match.group(1) if match else b"extra:"
    lines[index] = key + b" " + rng.choice(NASTY_VALUES).encode("utf-8", "surrogatepass")
    return b"\n".join(lines)


def _type_swap(rng: random.Random, text: bytes) -> bytes:
    lines = _lines(text)
    index = rng.choice(_value_lines(lines) or [0])
    match = VALUE_LINE.match(lines[index])
    if not match:
        return text
    key, value = match.groups()
    indent = b" " * (len(key) - len(key.lstrip()) + 2)
    swaps = [key + b"\n" + indent + b"- " + value, key + b"\n" + indent + b"value: " + value,
             key + b" [" + value + b"]", key + b" {x: " + value + b"}", key, key + b" " + key]
    lines[index] = rng.choice(swaps)
    return b"\n".join(lines)


def _insert_bytes(rng: random.Random, text: bytes) -> bytes:
    at = rng.randrange(len(text) + 1)
    return text[:at] + rng.choice(NASTY_BYTES) + text[at:]


def _truncate(rng: random.Random, text: bytes) -> bytes:
    return text[: rng.randrange(len(text) + 1)]


def _shuffle_lines(rng: random.Random, text: bytes) -> bytes:
    lines = _lines(text)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    action = rng.randrange(4)
    if action == 0:
        lines[i], lines[j] = lines[j], lines[i]
    elif action == 1:
        lines.insert(j, lines[i])
    elif action == 2:
        del lines[i]
    else:
        lines[i] = b" " * rng.choice([1, 2, 3, 5, 8]) + lines[i]
    return b"\n".join(lines)


def _nest(rng: random.Random, text: bytes) -> bytes:
    depth = rng.choice([10, 33, 100, 600, 3000])
    opener, closer = rng.choice([(b"[", b"]"), (b"{a: ", b"}")])
    return text + b"\nextra: " + opener * depth + b"1" + closer * depth + b"\n"


def _aliases(rng: random.Random, text: bytes) -> bytes:
    choices = [BOMB + text, b"x: &x [1, *x]\n" + text, text.replace(b"model:", b"model: &m", 1)
               + b"\nmodel2: *m\n", text + b"\ncameras: *nothing\n",
               text.replace(b"cameras:", b"cameras: &c", 1) + b"\nextra: [*c, *c, *c]\n"]
    return rng.choice(choices)


def _huge(rng: random.Random, text: bytes) -> bytes:
    size = rng.choice([10_000, 100_000, 300_000])
    kind = rng.randrange(3)
    if kind == 0:
        return text + b"\nextra: " + b"x" * size + b"\n"
    if kind == 1:
        return text + b"\n" + b"k" * size + b": 1\n"
    return text + b"\nextra: [" + b"1, " * (size // 3) + b"1]\n"


MUTATIONS: list[Callable[[random.Random, bytes], bytes]] = [
    _set_value, _set_value, _set_value, _type_swap, _insert_bytes, _insert_bytes, _truncate,
    _shuffle_lines, _shuffle_lines, _nest, _aliases, _huge,
]


def variants(seed: int, count: int) -> list[bytes]:
    """`count` mutated configs, the same ones for the same seed."""
    rng = random.Random(seed)
    sources = [(REPO / "configs" / name).read_bytes() for name in ("agent.yaml", "demo.yaml")]
    found = []
    for _ in range(count):
        text = rng.choice(sources)
        for _ in range(rng.choice([1, 1, 2, 3])):
            text = rng.choice(MUTATIONS)(rng, text)
        found.append(text)
    return found


LOCATED = re.compile(r"^(?P<path>.+?):(?P<line>\d+):")


def assert_located(message: str, path: Path) -> None:
    """Every line names the file and (except the file-level ones) the line."""
    file_level = ("the file is larger than", "more problems", "cannot read the config file")
    for line in message.splitlines():
        assert line.startswith(f"{path}:"), line
        assert "cannot load the config" not in line, f"an unforeseen loader error: {line}"
        assert "Traceback" not in line
        if not any(words in line for words in file_level):
            assert LOCATED.match(line), line


def _load_error(path: Path) -> ConfigError | None:
    """The loader's refusal, or None when the mutated file is still a valid config."""
    try:
        load_config(path)
    except ConfigError as error:
        return error
    return None


def test_thousands_of_mutated_configs_fail_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGE_AGENT_FUZZ_UNSET", raising=False)
    generated = variants(SEED, VARIANTS)
    path = tmp_path / "agent.yaml"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    refused = slowest = 0.0
    slowest_text = b""
    for number, text in enumerate(generated):
        path.write_bytes(text)
        begun = time.process_time()
        error = _load_error(path)
        elapsed = time.process_time() - begun
        if error is not None:
            refused += 1
            assert str(error) == "\n".join(error.problems), f"variant {number}"
            try:
                assert_located(str(error), path)
            except AssertionError:
                print(f"variant {number} (seed {SEED}):\n{text[:2000]!r}")
                raise
        if elapsed > slowest:
            slowest, slowest_text = elapsed, text
    total = time.process_time() - started
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert slowest < MAX_SECONDS_PER_FILE, f"{slowest:.2f} s for {slowest_text[:300]!r}"
    assert total < MAX_TOTAL_SECONDS
    assert growth_mb < MAX_RSS_GROWTH_MB
    assert refused > 0.6 * VARIANTS  # the mutations do break most files


def test_a_sample_through_the_real_check_config(tmp_path: Path) -> None:
    """The command a technician runs: exit 0 or 2, never a traceback, every line located."""
    generated = variants(SEED + 1, 400)
    rng = random.Random(SEED)
    picked = rng.sample(generated, SUBPROCESS_SAMPLES)
    picked.append(BOMB + generated[0])
    exits = []
    for number, text in enumerate(picked):
        path = tmp_path / f"agent-{number}.yaml"
        path.write_bytes(text)
        done = subprocess.run(
            [sys.executable, "-m", "edge_agent.cli", "check-config", str(path)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        exits.append(done.returncode)
        assert done.returncode in (0, 2), done.stderr
        assert "Traceback" not in done.stderr
        if done.returncode == 2:
            *problems, summary = done.stderr.splitlines()
            assert re.fullmatch(rf"{re.escape(str(path))}: \d+ problems?", summary), summary
            assert_located("\n".join(problems), path)
    assert exits[-1] == 2
