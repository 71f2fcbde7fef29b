"""Soak benchmark: the real agent for a long run through repeated broker and camera outages.

    scripts/soak [--minutes 10] [--broker-every 60 --broker-down 10]
                 [--camera-every 45 --camera-down 8] [--json]

A private Mosquitto, a real RTSP camera and the real agent process (two cameras: that RTSP
stream and the sample video looping in real time); a watcher subscribes to all of the
agent's topics. On schedule the broker is stopped and started again, and the RTSP server
is killed and started again on the same port. The agent's resident memory is read every
--sample-every s. At the end the agent gets SIGTERM and must exit 0; then the report (see
docs/soak.md): RSS over time and its growth, messages produced, delivered, duplicated,
never delivered (and whether during an outage), and dropped as the agent counts them.

The RTSP camera is tests/rtsp.py's RtspServer, imported rather than copied: it is the
camera the fault tests use (a looping re-encode without B-frames, killed by process
group), so the soak and the tests run one server and a fix to it reaches both.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType

import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for tests.rtsp and tests.helpers, when run as a script
from tests.helpers import terminate  # noqa: E402
from tests.rtsp import RtspServer  # noqa: E402

SAMPLES = Path(os.environ.get("EDGE_AGENT_SAMPLES", REPO / "samples"))
PREFIX = f"soak-{uuid.uuid4().hex[:8]}"
CAMERAS = {"gate": "rtsp", "street": "file"}
LIVE_LATENCY_S = 3.0
"""A detection that arrives within this long of its capture means no backlog is left."""
WINDOW_BEFORE_S, WINDOW_AFTER_S = 1.0, 5.0
"""A lost frame counts as inside an outage from 1 s before it until 5 s after the agent is
seen back: what was in flight when it began, and the burst a camera's reopen brings."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """Mosquitto with sessions on disk, so the watcher misses nothing across a restart."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.conf, self.log = workdir / "mosquitto.conf", workdir / "mosquitto.log"
        user = pwd.getpwuid(os.geteuid()).pw_name  # as root it would switch to 'mosquitto'
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nuser {user}\nmax_queued_messages 1000000\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["mosquitto", "-c", str(self.conf)], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,  # Ctrl-C is for the soak
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise TimeoutError(f"mosquitto not listening on {self.port} after {timeout}s")

    def stop(self) -> None:
        """SIGTERM, as `systemctl restart mosquitto` does: it saves sessions first."""
        if self.process is not None:
            terminate(self.process)
        self.process = None


class Watcher:
    """A QoS 1 subscriber on the agent's topics; keeps its session across broker restarts."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, dict[int, int]] = {camera: {} for camera in CAMERAS}
        self.captured_at: dict[str, dict[int, float]] = {camera: {} for camera in CAMERAS}
        self.live_at: dict[str, float] = {}  # camera -> last arrival with no backlog
        self.new_at: dict[str, float] = {}  # camera -> last arrival of a new sequence
        self.online_at = 0.0  # last live (not retained) "online" status
        self.by_kind: dict[str, int] = {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, clean_session=False,
                                  client_id=f"soak-watcher-{uuid.uuid4().hex}")
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    @staticmethod
    def _on_connect(client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, *_: object) -> None:
        if not flags.session_present:  # subscribing again would replay the retained status
            client.subscribe(f"{PREFIX}/#", qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now, kind = time.monotonic(), msg.topic.rsplit("/", 1)[-1]
        with self.lock:
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            if kind == "status" and msg.payload == b"online" and not msg.retain:
                self.online_at = now
            if kind != "detections":
                return
            payload = json.loads(msg.payload)
            camera, sequence = payload["camera"], payload["sequence"]
            captured = datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
            seen = self.seen.setdefault(camera, {})
            if sequence not in seen:
                self.new_at[camera] = now
            seen[sequence] = seen.get(sequence, 0) + 1
            self.captured_at.setdefault(camera, {})[sequence] = captured.timestamp()
            if time.time() - captured.timestamp() < LIVE_LATENCY_S:
                self.live_at[camera] = now

    def count(self, kind: str = "detections") -> int:
        with self.lock:
            return self.by_kind.get(kind, 0)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Outage:
    kind: str  # "broker" or "camera"
    start_s: float  # since the agent started
    down_at: float  # time.time(): compared with capture timestamps
    down_mono: float
    up_mono: float | None = None
    recovered_mono: float | None = None  # when the watcher saw the agent back


@dataclass
class Sample:
    t: int
    rss_mib: float | None
    received: int
    down: str


def rss_mib(pid: int) -> float | None:
    """VmRSS from /proc; `ps` where there is no /proc; None once the process is gone."""
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    with suppress(OSError, ValueError):
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True,
                             text=True, check=False).stdout
        return round(int(out.strip()) / 1024, 1)
    return None


def growth_per_hour(samples: list[Sample], warmup_s: float) -> float | None:
    """Least-squares slope of RSS over time after warm-up, in MiB per hour."""
    points = [(s.t / 3600, s.rss_mib) for s in samples if s.t >= warmup_s and s.rss_mib]
    if len(points) < 3:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_r = sum(r for _, r in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (r - mean_r) for t, r in points) / spread if spread else None


def write_config(workdir: Path, port: int, rtsp_url: str, backend: str) -> Path:
    config = workdir / "agent.yaml"
    models, video = SAMPLES / "models", SAMPLES / "media" / "vtest.mp4"
    config.write_text(
        f"device_id: soak\nstate_dir: {workdir / 'state'}\n"
        f"model:\n  path: {models / 'yolox_nano.onnx'}\n  labels: {models / 'coco_labels.txt'}\n"
        f"backend:\n  type: {backend}\n"
        f"mqtt:\n  host: 127.0.0.1\n  port: {port}\n  topic_prefix: {PREFIX}\n"
        f"cameras:\n  - id: gate\n    type: rtsp\n    url: {rtsp_url}\n"
        f"  - id: street\n    type: file\n    path: {video}\n    loop: true\n    realtime: true\n"
    )
    return config


def agent_counters(log_text: str) -> dict[str, dict[str, int]]:
    """The agent's own end-of-run figures, from its last lines (pipeline.py, publish.py)."""
    counters: dict[str, dict[str, int]] = {}
    for camera, *figures in re.findall(
        r"camera (\S+): (\d+) frames published, (\d+) not delivered, (\d+) dropped at capture",
        log_text,
    ):
        names = ("published", "not_delivered", "dropped_at_capture")
        counters[camera] = dict(zip(names, map(int, figures), strict=True))
    if closed := re.findall(r"MQTT closed: (\d+) spooled messages \(detections and events\) "
                            r"published, (\d+) acknowledged, (\d+) dropped", log_text):
        names = ("published", "acknowledged", "dropped")
        counters["mqtt"] = dict(zip(names, map(int, closed[-1]), strict=True))
    return counters


def gap_report(watcher: Watcher, outages: list[Outage], end: float) -> dict[str, dict]:
    """Per camera: produced, delivered, duplicates and the sequences never delivered, each
    run of missing ones placed, by its neighbours' capture times, in an outage or not."""
    windows = [(o.kind, o.down_at - WINDOW_BEFORE_S,
                o.down_at + (o.recovered_mono or end) - o.down_mono + WINDOW_AFTER_S)
               for o in outages]
    report = {}
    with watcher.lock:
        for camera, seen in watcher.seen.items():
            captured = watcher.captured_at[camera]
            kinds = ("camera", "broker") if CAMERAS.get(camera) == "rtsp" else ("broker",)
            missing = dict.fromkeys((*kinds, "outside"), 0)
            top, sequence = max(seen, default=-1), 0
            while sequence <= top:
                first = sequence
                while sequence not in seen:
                    sequence += 1
                if sequence > first:
                    start, stop = captured.get(first - 1, captured[sequence]), captured[sequence]
                    where = next((kind for kind in kinds for k, a, b in windows
                                  if k == kind and a <= stop and start <= b), "outside")
                    missing[where] += sequence - first
                sequence += 1
            report[camera] = {"produced": top + 1, "delivered_unique": len(seen),
                              "duplicates": sum(seen.values()) - len(seen),
                              "gaps": sum(missing.values()),
                              **{f"gaps_{kind}": n for kind, n in missing.items()}}
    return report


class Soak:
    """The run: children up, outages on schedule, RSS samples, then a clean stop."""

    def __init__(self, args: argparse.Namespace, workdir: Path, stack: ExitStack) -> None:
        self.args, self.log = args, workdir / "agent.log"
        self.samples: list[Sample] = []
        self.outages: list[Outage] = []
        self.exit_code: int | None = None
        self.stop_s: float | None = None
        self.died_at: float | None = None
        self.broker = Broker(workdir)
        self.broker.start()
        stack.callback(self.broker.stop)
        self.camera = stack.enter_context(RtspServer(SAMPLES / "media" / "vtest.mp4"))
        self.watcher = Watcher(self.broker.port)
        stack.callback(self.watcher.close)
        config = write_config(workdir, self.broker.port, self.camera.url, args.backend)
        with self.log.open("w") as sink:
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config)],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the soak, which stops it with TERM
            )
        stack.callback(self._kill_agent)
        self.started = time.monotonic()

    def _kill_agent(self) -> None:
        if self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait()

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _sample(self) -> None:
        down = "+".join(o.kind for o in self.outages if o.up_mono is None) or "-"
        self.samples.append(Sample(round(self._elapsed()), rss_mib(self.agent.pid),
                                   self.watcher.count(), down))

    def _recovered(self, outage: Outage) -> bool:
        """The agent is back: a live "online" after a broker restart, new frames after a
        camera restart."""
        with self.watcher.lock:
            seen = self.watcher.online_at if outage.kind == "broker" else \
                self.watcher.new_at.get("gate", 0.0)
        return outage.up_mono is not None and seen > outage.up_mono

    def _bring_up(self, outage: Outage) -> None:
        try:
            (self.broker.start if outage.kind == "broker" else self.camera.start)()
        except (RuntimeError, TimeoutError, OSError) as exc:  # tried again on the next tick
            print(f"soak: cannot restart the {outage.kind}: {exc}", file=sys.stderr)
            return
        outage.up_mono = time.monotonic()

    def cycle(self) -> None:
        """Until --minutes have passed: outages on schedule, an RSS sample every period."""
        args = self.args
        every = {"broker": args.broker_every, "camera": args.camera_every}
        down = {"broker": args.broker_down, "camera": args.camera_down}
        next_down = {kind: self.started + every[kind] for kind in every}
        current: dict[str, Outage | None] = dict.fromkeys(every)
        next_sample = self.started + args.sample_every
        while (now := time.monotonic()) < self.started + args.minutes * 60:
            if self.agent.poll() is not None:
                self.died_at = self._elapsed()
                return
            for kind, outage in current.items():
                if outage is None and every[kind] > 0 and now >= next_down[kind]:
                    (self.broker.stop if kind == "broker" else self.camera.stop)()
                    began = Outage(kind, round(self._elapsed(), 1), time.time(), now)
                    self.outages.append(began)
                    current[kind], next_down[kind] = began, now + every[kind]
                elif outage is not None and outage.up_mono is None:
                    if now >= outage.down_mono + down[kind]:
                        self._bring_up(outage)
                elif outage is not None and self._recovered(outage):
                    outage.recovered_mono, current[kind] = now, None
            if now >= next_sample:
                self._sample()
                next_sample += args.sample_every
            time.sleep(0.2)

    def settle(self) -> None:
        """End every outage, then wait until both cameras' messages arrive live again."""
        deadline = time.monotonic() + self.args.settle
        for outage in self.outages:
            while outage.up_mono is None and time.monotonic() < deadline:
                self._bring_up(outage)
                time.sleep(0 if outage.up_mono else 1)
        restored = time.monotonic()
        while time.monotonic() < deadline and self.agent.poll() is None:
            with self.watcher.lock:
                if all(self.watcher.live_at.get(c, 0.0) > restored for c in CAMERAS):
                    break
            time.sleep(0.2)
        for outage in self.outages:
            if outage.recovered_mono is None and self._recovered(outage):
                outage.recovered_mono = time.monotonic()

    def stop(self) -> None:
        """SIGTERM, as systemd sends it; it must exit 0 within --stop-timeout."""
        if self.agent.poll() is None:
            self._sample()
            started = time.monotonic()
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(self.args.stop_timeout)
                self.stop_s = time.monotonic() - started
            except subprocess.TimeoutExpired:
                self._kill_agent()
        self.exit_code = self.agent.returncode
        count, quiet_since = self.watcher.count(), time.monotonic()
        deadline = quiet_since + 15  # the last acknowledged messages reach the watcher
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 2:
            time.sleep(0.2)
            if self.watcher.count() != count:
                count, quiet_since = self.watcher.count(), time.monotonic()

    def report(self, interrupted: bool) -> dict:
        rss = [s.rss_mib for s in self.samples if s.rss_mib is not None]
        warmup = min(self.args.warmup, self.args.minutes * 30)
        log_text = self.log.read_text(errors="replace")
        counters = agent_counters(log_text)
        cameras = gap_report(self.watcher, self.outages, time.monotonic())
        for camera, row in cameras.items():  # lost: accepted by the agent, never delivered
            row["agent"] = agent = counters.get(camera)
            row["lost"] = agent["published"] - row["delivered_unique"] if agent else None
        clean = self.exit_code == 0 and self.stop_s is not None and self.died_at is None
        return {
            "settings": {k: v for k, v in vars(self.args).items() if k not in ("json", "keep")},
            "interrupted": interrupted, "duration_s": round(self._elapsed(), 1),
            "rss": {"samples": [asdict(s) for s in self.samples],
                    "min_mib": min(rss, default=None), "max_mib": max(rss, default=None),
                    "last_mib": rss[-1] if rss else None, "warmup_s": warmup,
                    "growth_mib_per_hour": growth_per_hour(self.samples, warmup)},
            "outages": [
                {"kind": o.kind, "start_s": o.start_s,
                 "down_s": round(o.up_mono - o.down_mono, 1) if o.up_mono else None,
                 "recovered_after_s": round(o.recovered_mono - o.up_mono, 1)
                 if o.recovered_mono and o.up_mono else None}
                for o in self.outages
            ],
            "cameras": cameras, "agent_mqtt": counters.get("mqtt"),
            "watcher_received": dict(sorted(self.watcher.by_kind.items())),
            "agent": {"died_at_s": self.died_at, "exit_code": self.exit_code,
                      "stop_s": round(self.stop_s, 2) if self.stop_s is not None else None,
                      "clean_exit": clean,
                      "log_tail": [] if clean else log_text.splitlines()[-15:]},
        }


def table(heads: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    def cell(value: object) -> str:
        return "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text)]) for i, h in enumerate(heads)]
    for row in [list(heads), *text]:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def print_report(report: dict) -> None:
    settings, rss, agent = report["settings"], report["rss"], report["agent"]
    print(f"soak: {report['duration_s']:.0f} s; broker down {settings['broker_down']:g} s every "
          f"{settings['broker_every']:g} s, RTSP camera down {settings['camera_down']:g} s every "
          f"{settings['camera_every']:g} s" + ("; INTERRUPTED" if report["interrupted"] else ""))
    print()
    table(("t s", "RSS MiB", "received", "down"), [tuple(s.values()) for s in rss["samples"]])
    growth = rss["growth_mib_per_hour"]
    print(f"RSS MiB: min {rss['min_mib']}, max {rss['max_mib']}, last {rss['last_mib']}; "
          f"growth after {rss['warmup_s']:g} s warm-up: "
          + (f"{growth:+.1f} MiB/h" if growth is not None else "- (under 3 samples)"))
    print()
    table(("outage", "at s", "down s", "agent back after s"),
          [(o["kind"], o["start_s"], o["down_s"], o["recovered_after_s"] or "never")
           for o in report["outages"]])
    print()
    keys = ("produced", "delivered_unique", "duplicates", "gaps", "gaps_broker", "gaps_camera",
            "gaps_outside", "lost")
    counted = ("published", "not_delivered", "dropped_at_capture")
    table(("camera", "produced", "delivered", "dups", "gaps", "in broker", "in camera",
           "outside", "lost", "| agent: published", "not delivered", "capture drops"),
          [(camera, *(row.get(k) for k in keys), *((row["agent"] or {}).get(k) for k in counted))
           for camera, row in report["cameras"].items()])
    counts = report["agent_mqtt"] or {}
    print("agent MQTT: " + ", ".join(f"{counts.get(k, '-')} {k}"
                                     for k in ("published", "acknowledged", "dropped")))
    print("watcher received: " + ", ".join(f"{n} {kind}"
                                           for kind, n in report["watcher_received"].items()))
    if agent["died_at_s"] is not None:
        print(f"agent DIED at {agent['died_at_s']:.0f} s with code {agent['exit_code']}")
    else:
        print(f"agent exit after SIGTERM: code {agent['exit_code']} in {agent['stop_s']} s "
              f"(limit {settings['stop_timeout']:g} s)")
    print(f"verdict: {'OK' if agent['clean_exit'] else 'FAIL'}")
    for line in agent["log_tail"]:
        print(f"  | {line}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--minutes", type=float, default=10.0, help="run time before the stop (default 10)")
    add("--broker-every", type=float, default=60.0, help="s between broker stops; 0: none")
    add("--broker-down", type=float, default=10.0, help="s the broker stays down")
    add("--camera-every", type=float, default=45.0, help="s between RTSP kills; 0: none")
    add("--camera-down", type=float, default=8.0, help="s the RTSP server stays down")
    add("--sample-every", type=float, default=10.0, help="s between RSS samples")
    add("--warmup", type=float, default=60.0, help="s of RSS left out of the growth fit")
    add("--settle", type=float, default=60.0, help="most s to wait for live streams at the end")
    add("--stop-timeout", type=float, default=30.0, help="s the agent has to exit on SIGTERM")
    add("--backend", default="auto", help="backend type in the agent's config (default auto)")
    add("--keep", action="store_true", help="keep the work folder (config, logs, spool)")
    add("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    for kind in ("broker", "camera"):
        every, down = getattr(args, f"{kind}_every"), getattr(args, f"{kind}_down")
        if every < 0 or down <= 0 or (every and down >= every):
            parser.error(f"--{kind}-down ({down:g}) must be above 0 and below "
                         f"--{kind}-every ({every:g}), or --{kind}-every 0 for no outages")
    if args.minutes <= 0 or args.sample_every <= 0 or args.stop_timeout <= 0:
        parser.error("--minutes, --sample-every and --stop-timeout must be above 0")
    return args


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for needed in ("models/yolox_nano.onnx", "models/coco_labels.txt", "media/vtest.mp4"):
        if not (SAMPLES / needed).is_file():
            sys.exit(f"soak: {SAMPLES / needed} is missing: run scripts/fetch-samples")
    if shutil.which("mosquitto") is None:
        sys.exit("soak: mosquitto is not installed: run scripts/setup")
    signal.signal(signal.SIGTERM, _interrupt)  # a TERM or HUP ends the run like Ctrl-C
    signal.signal(signal.SIGHUP, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="edge-agent-soak-"))
    interrupted, soak, report = False, None, None
    with ExitStack() as stack:  # children stop in reverse: agent, watcher, camera, broker
        try:
            soak = Soak(args, workdir, stack)
            print(f"soak: agent pid {soak.agent.pid}, work folder {workdir}", file=sys.stderr)
            soak.cycle()
            soak.settle()
        except KeyboardInterrupt:
            interrupted = True
            print("soak: interrupted; stopping the agent and every child", file=sys.stderr)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # the stop below has its own time limits
        if soak is not None:
            soak.stop()
            report = soak.report(interrupted)
    clean = report is not None and report["agent"]["clean_exit"]
    if args.keep or (report is not None and not clean and not interrupted):
        print(f"soak: work folder kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if report is not None and args.json:
        print(json.dumps(report, indent=2))
    elif report is not None:
        print_report(report)
    return 130 if interrupted else 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
