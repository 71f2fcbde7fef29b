"""The MQTT publisher against a real Mosquitto: status, will, info, bounds, auth, TLS."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from edge_agent.config.model import MqttConfig, SpoolConfig, TlsConfig
from edge_agent.publish.outbox import MAX_INFLIGHT
from edge_agent.publish.publisher import Publisher
from tests.helpers import (
    DEVICE,
    config_for,
    free_port,
    persist_sessions,
    persistent_subscriber,
    restart_with,
    wait_for_port,
    wait_until,
)

PUBLISH_LOG = "edge_agent.publish.publisher"
OUTBOX_LOG = "edge_agent.publish.outbox"


# -- status, detections, info --------------------------------------------------------


def test_online_is_retained_after_connect(broker, subscribe, unique_prefix, publishers) -> None:
    publisher = publishers(config_for(broker, unique_prefix))
    publisher.start()
    wait_until(lambda: publisher.connected)

    late = subscribe(f"{unique_prefix}/{DEVICE}/status")  # connects after the publisher

    (status,) = late.wait_for("/status", timeout=5)
    assert status.topic == f"{unique_prefix}/{DEVICE}/status"
    assert status.payload == b"online"
    assert status.retain
    assert status.qos == 1
    assert publisher.last_error is None


def test_detections_arrive_at_qos1_in_order(broker, subscribe, unique_prefix, publishers) -> None:
    collector = subscribe(f"{unique_prefix}/#")
    publisher = publishers(config_for(broker, unique_prefix, qos=1))
    publisher.start()
    wait_until(lambda: publisher.connected)

    sent = [json.dumps({"sequence": n}).encode() for n in range(50)]
    assert all(publisher.publish_detections("cam-a", payload) for payload in sent)

    received = collector.wait_for("/detections", count=50, timeout=5)
    assert [m.payload for m in received] == sent
    assert {m.topic for m in received} == {f"{unique_prefix}/{DEVICE}/cam-a/detections"}
    assert {m.qos for m in received} == {1}
    assert not any(m.retain for m in received)
    wait_until(lambda: publisher.acknowledged == 50)
    assert (publisher.published, publisher.dropped) == (50, 0)


def test_camera_threads_publish_concurrently(broker, subscribe, unique_prefix, publishers) -> None:
    collector = subscribe(f"{unique_prefix}/#")
    publisher = publishers(config_for(broker, unique_prefix, max_queued=10_000))
    publisher.start()
    wait_until(lambda: publisher.connected)
    cameras, frames = 4, 200

    def camera(index: int) -> None:
        for sequence in range(frames):
            payload = json.dumps({"camera": index, "sequence": sequence}).encode()
            assert publisher.publish_detections(f"cam-{index}", payload)

    threads = [threading.Thread(target=camera, args=(i,)) for i in range(cameras)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    collector.wait_for("/detections", count=cameras * frames, timeout=10)
    for index in range(cameras):
        got = [
            json.loads(m.payload)["sequence"] for m in collector.on_topic(f"cam-{index}/detections")
        ]
        assert got == list(range(frames))  # each camera's stream stays in order
    wait_until(lambda: publisher.acknowledged == cameras * frames)
    assert publisher.published == cameras * frames
    assert publisher.dropped == 0


def test_info_is_retained_and_resent_after_reconnect(
    broker, subscribe, unique_prefix, publishers
) -> None:
    publisher = publishers(config_for(broker, unique_prefix))
    publisher.publish_info(b'{"schema_version":1}')  # before start: sent on connect
    publisher.start()
    wait_until(lambda: publisher.connected)

    watcher = subscribe(f"{unique_prefix}/{DEVICE}/info")
    info = watcher.wait_for("/info", timeout=5)[0]
    assert (info.payload, info.retain, info.qos) == (b'{"schema_version":1}', True, 1)

    publisher.publish_info(b'{"schema_version":1,"v":2}')  # while connected: sent now
    info = watcher.wait_for("/info", count=2, timeout=5)[1]
    assert info.payload == b'{"schema_version":1,"v":2}'
    retained = subscribe(f"{unique_prefix}/{DEVICE}/info").wait_for("/info", timeout=5)[0]
    assert retained.payload == b'{"schema_version":1,"v":2}'

    # A broker restart without persistence forgets retained messages; the reconnect
    # must put both status and info back.
    broker.stop()
    wait_until(lambda: not publisher.connected)
    broker.start()
    wait_until(lambda: publisher.connected, timeout=10)
    late = subscribe(f"{unique_prefix}/{DEVICE}/#")
    assert late.wait_for("/info", timeout=5)[0].payload == b'{"schema_version":1,"v":2}'
    assert late.wait_for("/status", timeout=5)[0].payload == b"online"


def test_close_publishes_offline_retained(broker, subscribe, unique_prefix) -> None:
    publisher = Publisher(config_for(broker, unique_prefix), DEVICE)
    publisher.start()
    wait_until(lambda: publisher.connected)
    for n in range(20):
        publisher.publish_detections("cam-a", b"%d" % n)

    publisher.close()
    publisher.close()  # idempotent

    assert not publisher.connected
    assert publisher.acknowledged == 20  # close waited for what was in flight
    assert publisher.publish_detections("cam-a", b"late") is False
    status = subscribe(f"{unique_prefix}/{DEVICE}/status").wait_for("/status", timeout=5)
    assert [(m.payload, m.retain) for m in status] == [(b"offline", True)]


def test_close_lets_the_will_speak_when_offline_is_stuck(
    broker, subscribe, unique_prefix, caplog
) -> None:
    """A clean DISCONNECT would cancel the will and leave "online" retained forever."""
    collector = subscribe(f"{unique_prefix}/{DEVICE}/status")
    publisher = Publisher(config_for(broker, unique_prefix), DEVICE)
    publisher.start()
    wait_until(lambda: publisher.connected)
    assert collector.wait_for("/status", timeout=5)[-1].payload == b"online"
    caplog.set_level(logging.WARNING, logger=PUBLISH_LOG)

    # A backlog far beyond what may be in flight, and no time to send it: "offline" is
    # queued behind it and cannot be acknowledged before close() gives up.
    big = b"x" * 64_000
    for _ in range(MAX_INFLIGHT * 3):
        assert publisher.publish_detections("cam-a", big)
    publisher.close(timeout=0.0)

    assert any("letting the will say it" in r.getMessage() for r in caplog.records)
    wait_until(lambda: collector.on_topic("/status")[-1].payload == b"offline", timeout=5)
    late = subscribe(f"{unique_prefix}/{DEVICE}/status").wait_for("/status", timeout=5)
    assert [(m.payload, m.retain) for m in late] == [(b"offline", True)]


def test_last_will_fires_when_the_process_dies(broker, subscribe, unique_prefix) -> None:
    keepalive = 5
    collector = subscribe(f"{unique_prefix}/+/status")
    script = textwrap.dedent(
        f"""
        import time
        from edge_agent.config.model import MqttConfig
        from edge_agent.publish.publisher import Publisher
        config = MqttConfig(host="127.0.0.1", port={broker.port}, keepalive={keepalive},
                            topic_prefix="{unique_prefix}")
        publisher = Publisher(config, "doomed")
        publisher.start()
        while not publisher.connected:
            time.sleep(0.01)
        print("connected", flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env={**os.environ}
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"connected\n"
        assert collector.wait_for("doomed/status", timeout=5)[-1].payload == b"online"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=5)

        wait_until(
            lambda: collector.on_topic("doomed/status")[-1].payload == b"offline",
            timeout=keepalive * 1.5 + 2,
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    late = subscribe(f"{unique_prefix}/doomed/status").wait_for("/status", timeout=5)
    assert [(m.payload, m.retain) for m in late] == [(b"offline", True)]


# -- broker outages and bounds --------------------------------------------------------


def test_broker_down_at_start_is_not_fatal(broker, subscribe, unique_prefix, publishers) -> None:
    broker.stop()
    publisher = publishers(config_for(broker, unique_prefix))

    publisher.start()  # must not raise
    wait_until(lambda: publisher.last_error is not None)
    assert not publisher.connected
    assert "refused" in publisher.last_error.lower()

    broker.start()
    wait_until(lambda: publisher.connected, timeout=10)
    status = subscribe(f"{unique_prefix}/{DEVICE}/status").wait_for("/status", timeout=5)
    assert status[0].payload == b"online"
    assert publisher.last_error is None


def test_spool_keeps_the_newest_within_its_bound_while_the_broker_is_down(
    broker, unique_prefix, publishers, caplog, tmp_path
) -> None:
    persist_sessions(broker, tmp_path)
    watcher = persistent_subscriber(broker, f"{unique_prefix}/#")
    broker.stop()
    publisher = publishers(config_for(broker, unique_prefix, max_queued=5, qos=1))
    publisher.start()
    caplog.set_level(logging.WARNING, logger=OUTBOX_LOG)

    results = [publisher.publish_detections("cam-a", b"%d" % n) for n in range(20)]

    assert all(results)  # stored; the oldest make room for the newest
    assert (publisher.published, publisher.dropped, publisher.queued) == (20, 15, 5)
    drop_lines = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drop_lines) == 1  # rate-limited: one line, not fifteen
    assert "spool full (5 messages" in drop_lines[0].getMessage()

    broker.start()  # the five newest go out, in order, once the broker is back
    arrived = watcher.wait_for("/cam-a/detections", count=5, timeout=15)
    assert [m.payload for m in arrived] == [b"%d" % n for n in range(15, 20)]
    wait_until(lambda: publisher.acknowledged == 5 and publisher.queued == 0, timeout=10)
    watcher.client.loop_stop()
    watcher.client.disconnect()


def test_qos0_waits_in_the_spool_while_disconnected(broker, unique_prefix, publishers) -> None:
    broker.stop()
    publisher = publishers(config_for(broker, unique_prefix, qos=0))
    publisher.start()

    assert all(publisher.publish_detections("cam-a", b"x") for _ in range(20))
    assert (publisher.published, publisher.dropped, publisher.queued) == (20, 0, 20)
    broker.start()
    # QoS 0's only promise is that it was written to the socket.
    wait_until(lambda: publisher.acknowledged == 20 and publisher.queued == 0, timeout=10)


# -- authentication and TLS -----------------------------------------------------------


def test_username_and_password(broker, subscribe, unique_prefix, publishers, tmp_path) -> None:
    password_file = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(password_file), "agent", "s3cret"], check=True
    )
    auth_port = free_port()
    restart_with(
        broker,
        f"listener {auth_port} 127.0.0.1\nallow_anonymous false\npassword_file {password_file}\n",
    )
    wait_for_port(auth_port)
    collector = subscribe(f"{unique_prefix}/#")

    good = publishers(
        MqttConfig(
            port=auth_port,
            topic_prefix=unique_prefix,
            username="agent",
            password="s3cret",  # noqa: S106 (a throwaway test broker's password)
        )
    )
    wrong = publishers(
        MqttConfig(
            port=auth_port,
            topic_prefix=unique_prefix,
            username="agent",
            password="nope",  # noqa: S106
        ),
        device_id="box-2",
    )
    good.start()
    wrong.start()

    wait_until(lambda: good.connected)
    assert good.publish_detections("cam-a", b"hello")
    assert collector.wait_for("/detections", timeout=5)[0].payload == b"hello"

    wait_until(lambda: wrong.last_error is not None)
    assert not wrong.connected
    assert "authori" in wrong.last_error.lower()  # "Not authorized" (MQTT 3.1.1 code 5)
    assert collector.on_topic("box-2/status") == []


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=edge-agent test CA",
    )  # fmt: skip
    extensions = {
        "server": "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for name, extension in extensions.items():
        (directory / f"{name}.ext").write_text(extension)
        openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={'127.0.0.1' if name == 'server' else 'agent'}",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        )  # fmt: skip
    return {
        name: directory / name
        for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    }


def test_tls_with_ca_file_and_client_certificate(
    broker, subscribe, unique_prefix, publishers, tmp_path
) -> None:
    files = make_certificates(tmp_path)
    tls_port, mutual_port = free_port(), free_port()
    server = (
        f"cafile {files['ca.pem']}\ncertfile {files['server.pem']}\n"
        f"keyfile {files['server.key']}\nallow_anonymous true\n"
    )
    restart_with(
        broker,
        f"listener {tls_port} 127.0.0.1\n{server}"
        f"listener {mutual_port} 127.0.0.1\n{server}require_certificate true\n",
    )
    wait_for_port(tls_port)
    wait_for_port(mutual_port)
    collector = subscribe(f"{unique_prefix}/#")

    trusted = publishers(
        MqttConfig(
            port=tls_port, topic_prefix=unique_prefix, tls=TlsConfig(ca_file=files["ca.pem"])
        )
    )
    mutual = publishers(
        MqttConfig(
            port=mutual_port,
            topic_prefix=unique_prefix,
            tls=TlsConfig(
                ca_file=files["ca.pem"], cert_file=files["client.pem"], key_file=files["client.key"]
            ),
        ),
        device_id="box-mutual",
    )
    untrusted = publishers(  # the system CAs do not know our test CA
        MqttConfig(port=tls_port, topic_prefix=unique_prefix, tls=TlsConfig()),
        device_id="box-untrusted",
    )
    for publisher in (trusted, mutual, untrusted):
        publisher.start()

    wait_until(lambda: trusted.connected and mutual.connected)
    assert trusted.publish_detections("cam-a", b"over tls")
    assert mutual.publish_detections("cam-b", b"over mutual tls")
    assert collector.wait_for(f"{DEVICE}/cam-a/detections", timeout=5)[0].payload == b"over tls"
    assert collector.wait_for("box-mutual/cam-b/detections", timeout=5)[0].payload == (
        b"over mutual tls"
    )

    wait_until(lambda: untrusted.last_error is not None)
    assert not untrusted.connected
    assert "certificate verify failed" in untrusted.last_error


# -- the spool on a bad disk -----------------------------------------------------------


def test_unusable_spool_falls_back_to_memory_and_says_why(
    broker, subscribe, unique_prefix, publishers, tmp_path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    spool = SpoolConfig(path=blocker / "spool.sqlite3")
    publisher = publishers(config_for(broker, unique_prefix, spool=spool))
    assert publisher.outbox.spool_error is not None
    assert str(blocker) in publisher.outbox.spool_error
    collector = subscribe(f"{unique_prefix}/#")
    publisher.start()
    assert all(publisher.publish_detections("cam-a", b"%d" % n) for n in range(10))
    arrived = collector.wait_for("/cam-a/detections", count=10)
    assert [m.payload for m in arrived] == [b"%d" % n for n in range(10)]


def test_full_disk_sends_directly_while_connected(
    broker, subscribe, unique_prefix, publishers, tmp_path
) -> None:
    publisher = publishers(config_for(broker, unique_prefix), state_dir=tmp_path)
    collector = subscribe(f"{unique_prefix}/#")
    publisher.start()
    wait_until(lambda: publisher.connected)
    # SQLite's own "database or disk is full", as on a full file system.
    publisher.outbox._spool._db.execute("PRAGMA max_page_count = 1")
    big = b"x" * 8000
    assert all(publisher.publish_detections("cam-a", big) for _ in range(5))
    collector.wait_for("/cam-a/detections", count=5)
    assert "full" in (publisher.outbox.spool_error or "")
    wait_until(lambda: publisher.acknowledged == 5)
    assert publisher.dropped == 0


def test_a_full_disk_at_start_recovers_and_clears_the_spool_error(
    broker, subscribe, unique_prefix, publishers, tmp_path, monkeypatch
) -> None:
    """Disk full when the agent starts: not a crash, not "corrupt"; health's spool error
    clears once there is room, and what waited in memory moves to the file."""
    import edge_agent.publish.outbox

    full = tmp_path / "state"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(full)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs (a real full disk)")
    try:
        filler = full / "filler"
        with contextlib.suppress(OSError):  # the disk is full now
            filler.write_bytes(b"\0" * (1 << 20))
        monkeypatch.setattr(edge_agent.publish.outbox, "REOPEN_EVERY_S", 0.5)
        publisher = publishers(config_for(broker, unique_prefix), state_dir=full)
        assert "full" in (publisher.outbox.spool_error or "")
        assert not list(full.glob("*.corrupt-*"))
        collector = subscribe(f"{unique_prefix}/#")
        publisher.start()
        wait_until(lambda: publisher.connected)
        for n in range(10):
            assert publisher.publish_detections("cam", b"%d" % n)
        collector.wait_for("/cam/detections", count=10)
        assert publisher.outbox.spool_error is not None  # still full: said, not hidden
        filler.unlink()
        wait_until(lambda: publisher.outbox.spool_error is None, 10)
        assert publisher.outbox.spool.on_disk
        assert publisher.stats().spool_on_disk is True
        for n in range(10, 20):
            assert publisher.publish_detections("cam", b"%d" % n)
        arrived = collector.wait_for("/cam/detections", count=20)
        assert [m.payload for m in arrived] == [b"%d" % n for n in range(20)]
        publisher.close()
    finally:
        subprocess.run(["umount", "-l", str(full)], check=False)


def test_acknowledged_rows_that_cannot_be_deleted_are_not_sent_twice(
    broker, subscribe, unique_prefix, publishers, tmp_path
) -> None:
    publisher = publishers(config_for(broker, unique_prefix), state_dir=tmp_path)
    collector = subscribe(f"{unique_prefix}/#")
    publisher.start()
    wait_until(lambda: publisher.connected)
    spool = publisher.outbox.spool
    spool._db.execute("CREATE TRIGGER refuse BEFORE DELETE ON messages "
                      "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    for n in range(10):
        publisher.publish_detections("cam", b"%d" % n)
    collector.wait_for("/cam/detections", count=10)
    wait_until(lambda: publisher.acknowledged == 10)
    wait_until(lambda: publisher.queued == 0)  # delivered is not "waiting"
    publisher.close()
    assert (tmp_path / "spool.sqlite3.acked").exists()
    db = sqlite3.connect(tmp_path / "spool.sqlite3")
    db.execute("DROP TRIGGER refuse")
    db.commit()
    db.close()
    again = publishers(config_for(broker, unique_prefix), state_dir=tmp_path)
    assert again.queued == 0
    again.start()
    wait_until(lambda: again.connected)
    time.sleep(1.0)
    assert len(collector.on_topic("/cam/detections")) == 10  # none a second time
