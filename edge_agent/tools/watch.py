"""`edge-agent watch`: a live per-camera table from the box's own MQTT topics.

For a technician without an MQTT tool: connects with the config's own broker settings
(auth, TLS), subscribes to `<prefix>/<device_id>/#` and shows, per camera, the frame
rate, inference time, delivery delay and what is being detected. The state and the
table live in edge_agent.tools.watch_view; a malformed message shows as bad and watching goes
on (edge_agent.tools.watch_message says what is checked).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge_agent.config.model import MqttConfig
from edge_agent.errors import AgentError
from edge_agent.tools.options import add_config_option
from edge_agent.tools.watch_view import WatchState, render

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

__all__ = ["BrokerError", "WatchState", "connect", "render"]


class BrokerError(AgentError):
    """The broker cannot be used; `detail` says what happened, `fix` what to change."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(f"{detail}\n  fix: {fix}")
        self.detail = detail
        self.fix = fix


def connect(
    config: MqttConfig,
    client_id: str,
    timeout: float = 10.0,
    on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None] | None = None,
) -> mqtt.Client:
    """A paho client connected with the config's auth and TLS, or BrokerError saying why."""
    import paho.mqtt.client as mqtt

    from edge_agent.publish.publisher import tls_context

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    if config.username is not None:
        client.username_pw_set(config.username, config.password)
    if config.tls is not None:
        client.tls_set_context(tls_context(config.tls))
        if config.tls.insecure:
            client.tls_insecure_set(True)
    answered = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(_c: mqtt.Client, _u: object, _f: object, code: Any, _p: object) -> None:
        outcome["code"] = code
        answered.set()

    def on_disconnect(_c: mqtt.Client, _u: object, _f: object, code: Any, _p: object) -> None:
        outcome.setdefault("closed", code)
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    if on_message is not None:
        client.on_message = on_message
    where = f"{config.host}:{config.port}"
    try:
        client.connect(config.host, config.port, config.keepalive)
    except OSError as exc:
        raise BrokerError(*_socket_problem(exc, config)) from exc
    client.loop_start()
    answered.wait(timeout)
    code = outcome.get("code")
    if code is not None and not code.is_failure:
        return client
    client.loop_stop()
    client.disconnect()
    if code is not None:
        raise BrokerError(f"broker refused: {str(code).lower()}", _refusal_fix(str(code), config))
    tls_hint = (
        "is this the broker's TLS port? set the mqtt.tls section for it"
        if config.tls is None else "does the broker speak TLS on this port?"
    )
    if "closed" in outcome:
        raise BrokerError(f"{where} closed the connection without an MQTT answer", tls_hint)
    raise BrokerError(f"{where} sent no MQTT answer within {timeout:.0f} s", tls_hint)


def _socket_problem(exc: OSError, config: MqttConfig) -> tuple[str, str]:
    import socket
    import ssl

    where = f"{config.host}:{config.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS: the broker's certificate is not trusted ({exc.verify_message})",
                "set mqtt.tls.ca_file to the CA that signed the broker's certificate, and "
                "make mqtt.host the name in that certificate")
    if isinstance(exc, ssl.SSLError):
        return (f"TLS handshake with {where} failed: {exc.reason or exc}",
                "check that this port speaks TLS (8883 usually) and the mqtt.tls files")
    if isinstance(exc, socket.gaierror):
        return (f"cannot resolve {config.host}: {exc.strerror}",
                "check mqtt.host (name or address) and this box's DNS")
    if isinstance(exc, ConnectionRefusedError):
        return (f"nothing listens on {where} (connection refused)",
                "check mqtt.host and mqtt.port, and that the broker runs "
                "(systemctl status mosquitto on the broker)")
    if isinstance(exc, TimeoutError):
        return (f"no answer from {where} (timed out)",
                "check mqtt.host, the network route and firewalls between this box and the "
                "broker")
    return (f"cannot connect to {where}: {exc.strerror or exc}",
            "check mqtt.host, mqtt.port and the network")


def _refusal_fix(reason: str, config: MqttConfig) -> str:
    lowered = reason.lower()
    if "authoriz" in lowered or "user name or password" in lowered:
        if config.username is None:
            return ("the broker wants a login: set mqtt.username and mqtt.password "
                    "(check mqtt.username/password)")
        return ("check mqtt.username/password (and that the broker's password file has "
                "this user)")
    if "identifier" in lowered:
        return "set mqtt.client_id to a value the broker accepts, or remove it"
    if "unavailable" in lowered:
        return "the broker is up but not serving: check its log"
    return "check the broker's log for why it refused this client"


# -- the command ------------------------------------------------------------------------


def _watch(args: argparse.Namespace) -> int:
    from edge_agent.config.loader import load_config

    config = load_config(args.config)
    device_id = args.device_id or config.device_id
    base = f"{config.mqtt.topic_prefix.rstrip('/')}/{device_id}"
    state = WatchState(base_topic=base, broker=f"{config.mqtt.host}:{config.mqtt.port}",
                       window_s=args.window)
    lock = threading.Lock()

    def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        # paho's network thread runs this: an exception here would end the thread and
        # watching with it, silently. on_message never raises; this guards the rest.
        try:
            topic = message.topic
        except UnicodeDecodeError:  # a topic that is not UTF-8 (MQTT forbids it)
            topic = repr(message._topic)[2:-1]
        try:
            with lock:
                state.on_message(topic, message.payload, time.monotonic(), time.time())
        except Exception as exc:
            log.warning("watch: message on %s not handled: %s", topic, exc)

    client = connect(config.mqtt, f"edge-agent-watch-{uuid.uuid4().hex[:12]}",
                     on_message=on_message)
    client.suppress_exceptions = True  # any other callback fault is logged, not fatal
    try:
        subscribed = threading.Event()
        client.on_subscribe = lambda *_args: subscribed.set()
        client.subscribe(f"{base}/#", qos=0)
        if not subscribed.wait(10):
            raise BrokerError(f"the broker did not confirm the subscription to {base}/#",
                              "check the broker's ACL for this user")
        _show(state, lock, args, sys.stdout.isatty())
    except KeyboardInterrupt:
        pass
    finally:
        client.loop_stop()
        client.disconnect()
    return 0


def _show(state: WatchState, lock: threading.Lock, args: argparse.Namespace, tty: bool) -> None:
    """Redraw once a second; with --once print a single table after --seconds (default 3)."""
    started = time.monotonic()
    if args.once:
        time.sleep(args.seconds if args.seconds is not None else 3.0)
        with lock:
            print(render(state, time.monotonic(), time.time()), flush=True)
        return
    while True:
        with lock:
            text = render(state, time.monotonic(), time.time())
        # Clear only a terminal: piped into a file or a journal, escapes are noise.
        sys.stdout.write(("\x1b[H\x1b[2J" if tty else "\n") + text + "\n")
        sys.stdout.flush()
        if args.seconds is not None and time.monotonic() - started >= args.seconds:
            return
        time.sleep(1.0)


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "watch", help="live table per camera (fps, latency, detections) from the box's topics"
    )
    add_config_option(parser, "agent YAML: broker, auth, TLS, topic prefix, device id")
    parser.add_argument("--device-id", help="watch another box on the same broker")
    parser.add_argument("--seconds", type=float,
                        help="stop after this long (default: until Ctrl-C; with --once: 3)")
    parser.add_argument("--once", action="store_true",
                        help="listen for --seconds, print one table and exit (scripts)")
    parser.add_argument("--window", type=float, default=10.0,
                        help="seconds of messages behind the fps and per-class figures")
    parser.set_defaults(handler=_watch)
