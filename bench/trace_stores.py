"""The trace stores of the benchmark: a local directory, or S3 served by a moto server.

``store_setup(kind, workdir)`` yields a ``StoreSetup``: the store's URL, the ``TIDEGATE_*``
variables that point the daemon at it, the same settings as a ``Config`` for the reader, and
the count and bytes of the block objects written so far. For ``s3`` it starts
``python -m moto.server`` on a free loopback port, creates the bucket and stops the server on
exit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procwatch import free_port, stop_process
from tidegate.config import Config

MOTO_READY_TIMEOUT_S = 30.0
BUCKET = "tidegate-bench"
S3_PREFIX = "traces"
REGION = "us-east-1"


def aws_environment() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


class Moto:
    """``python -m moto.server`` on a free loopback port, with the benchmark's bucket."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "moto.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.client: Any = None

    def __enter__(self) -> Moto:
        env = {**os.environ, **aws_environment()}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_ready()
            import boto3  # type: ignore[import-untyped]

            self.client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            self.client.create_bucket(Bucket=BUCKET)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            stop_process(self.process, 10)
            self.process = None

    def _wait_ready(self) -> None:
        assert self.process is not None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + MOTO_READY_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.process.returncode}")
            try:
                with opener.open(f"{self.endpoint}/moto-api/", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer means the server is up
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not answer in {MOTO_READY_TIMEOUT_S} s")
            time.sleep(0.1)

    def objects(self) -> tuple[int, int]:
        """(count, bytes) of the block objects."""
        count = size = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=f"{S3_PREFIX}/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                count += 1
                size += int(item["Size"])
        return count, size


def file_objects(root: Path) -> tuple[int, int]:
    """(count, bytes) of the block files under ``root`` (temporary files excluded)."""
    count = size = 0
    for directory, _, files in os.walk(root):
        for name in files:
            if not name.startswith("."):
                count += 1
                size += os.stat(os.path.join(directory, name)).st_size
    return count, size


@dataclass
class StoreSetup:
    kind: str
    url: str
    env: dict[str, str]  # TIDEGATE_* settings of the daemon
    config: Config  # the same settings, for the reader
    moto: Moto | None = None
    root: Path | None = None

    def objects(self) -> tuple[int, int]:
        if self.moto is not None:
            return self.moto.objects()
        assert self.root is not None
        return file_objects(self.root)


@contextlib.contextmanager
def store_setup(kind: str, workdir: Path) -> Iterator[StoreSetup]:
    config = Config()
    if kind == "file":
        root = workdir / "traces-file"
        url = root.as_uri()
        config.traces.store = url
        yield StoreSetup(kind, url, {"TIDEGATE_TRACES_STORE": url}, config, root=root)
        return
    with Moto(workdir) as moto:
        url = f"s3://{BUCKET}/{S3_PREFIX}"
        settings = {
            "traces.store": url,
            "s3.endpoint_url": moto.endpoint,
            "s3.region": REGION,
            "s3.access_key_id": "testing",
            "s3.secret_access_key": "testing",
        }
        env = {}
        for dotted, value in settings.items():
            section, key = dotted.split(".")
            setattr(getattr(config, section), key, value)
            env["TIDEGATE_" + dotted.upper().replace(".", "_")] = value
        yield StoreSetup(kind, url, env, config, moto=moto)
