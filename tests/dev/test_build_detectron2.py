"""dev/build_detectron2.py: where it cannot reach detectron2's official source, the
attempt costs seconds, and a changed local source is rebuilt."""

import os
import socket
import time

from tests.helpers.scripts import load_script


def build_script():
    return load_script("dev/build_detectron2.py")


def test_an_unreachable_source_is_given_up_within_the_timeout():
    script = build_script()
    start = time.monotonic()
    assert not script.reachable(
        "https://host.invalid/detectron2.git", timeout=2.0
    )  # never resolves
    with socket.socket() as silent:  # accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        assert not script.reachable(
            f"https://127.0.0.1:{silent.getsockname()[1]}/detectron2.git", timeout=2.0
        )
    assert time.monotonic() - start < 5.0


def test_a_local_source_is_identified_by_path_size_and_time(tmp_path):
    script = build_script()
    archive = tmp_path / "detectron2.tar.gz"
    archive.write_bytes(b"one")
    first = script.source_identity(str(archive))
    os.utime(archive, (1, 1))
    assert script.source_identity(str(archive)) != first
    assert script.source_identity(script.OFFICIAL) == script.OFFICIAL
