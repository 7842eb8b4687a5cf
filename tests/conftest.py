"""Shared fixtures: real DBN files, a local lake, and a real S3 endpoint (moto server over HTTP)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from spymaster.lake import Lake
from spymaster.settings import StorageSettings
from tests.support import S3_BUCKET, s3_settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on 127.0.0.1, spoken to over HTTP by boto3, pyarrow, s3fs and LanceDB alike."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=S3_BUCKET)
    yield url
    server.stop()


@pytest.fixture
def local_lake(tmp_path: Path) -> Lake:
    return Lake(StorageSettings(lake_uri=str(tmp_path / "lake")))


@pytest.fixture
def s3_lake(s3_endpoint: str) -> Lake:
    """A fresh prefix in the moto bucket per test, so tests never see each other's objects."""
    return Lake(s3_settings(s3_endpoint, f"t-{uuid.uuid4().hex[:10]}"))


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    """The same test on a local folder and on S3 over HTTP."""
    if request.param == "local":
        return Lake(StorageSettings(lake_uri=str(tmp_path / "lake")))
    endpoint = request.getfixturevalue("s3_endpoint")
    return Lake(s3_settings(endpoint, f"t-{uuid.uuid4().hex[:10]}"))
