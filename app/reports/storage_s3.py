"""Media in an S3-compatible object store (AWS S3, MinIO, Ceph...), behind MediaStore.

Keys are the same content-addressed keys as on disk, under an optional prefix. An S3
PUT is atomic (readers see the old object or the whole new one, never a part), so no
temp files are needed; every put re-uploads, which renews LastModified, the sweeper's
clock, exactly as the local store renews a file's mtime. Credentials come from boto3's
usual chain (environment, shared config, instance role), never from Settings.
"""

from __future__ import annotations

import base64
import hashlib
import io
import mimetypes
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.reports.storage import StorageFull, StorageUnavailable, is_key, key_for, validate_key

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
# Fail fast: a request waiting on a dead store holds a web thread; the client retries.
_CONFIG = Config(
    connect_timeout=3,
    read_timeout=15,
    retries={"mode": "standard", "max_attempts": 3},
    max_pool_connections=16,
)


def _missing(exc: ClientError) -> bool:
    """Whether the store answered "no such key" (GET says NoSuchKey, HEAD a bare 404).

    NoSuchBucket is not "no such photo": a misconfigured store is unavailable, not empty.
    """
    return exc.response.get("Error", {}).get("Code") in _MISSING


class S3MediaStore:
    """Objects in one bucket under one prefix; the bucket is made by the operator, not here."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        client=None,
    ):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if client is None:
            # Path-style addressing for self-hosted endpoints (MinIO and friends have no
            # per-bucket DNS names); a session per store: boto3's default one is not thread-safe.
            s3 = {"addressing_style": "path"} if endpoint_url else {}
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                config=_CONFIG.merge(Config(s3=s3)),
            )
        self.client = client

    def put(self, data: bytes, *, suffix: str = ".jpg") -> str:
        """Upload once per call (a retry or a second copy renews the object); raise StorageFull."""
        key = key_for(data, suffix)
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.prefix + key,
                Body=data,
                ContentMD5=md5,  # the store refuses a body damaged on the way
                ContentType=mimetypes.guess_type(key)[0] or "application/octet-stream",
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageFull() from exc
        return key

    def open(self, key: str) -> BinaryIO:
        """Read the whole object (derivatives are small) so no connection outlives the call."""
        name = self.prefix + validate_key(key)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
            with body:
                return io.BytesIO(body.read())
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(key) from None
            raise StorageUnavailable() from exc
        except BotoCoreError as exc:
            raise StorageUnavailable() from exc

    def path(self, key: str) -> Path | None:
        """There is no local file: views send the bytes from open()."""
        validate_key(key)
        return None

    def exists(self, key: str) -> bool:
        """Whether the object is there (HEAD)."""
        name = self.prefix + validate_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise StorageUnavailable() from exc
        except BotoCoreError as exc:
            raise StorageUnavailable() from exc
        return True

    def delete(self, key: str) -> None:
        """Remove the object; S3 answers 204 for absent keys too, so retries are harmless."""
        name = self.prefix + validate_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=name)
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailable() from exc

    def iter_keys(self) -> Iterator[tuple[str, float]]:
        """List the prefix page by page; objects not shaped like a key are skipped."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    key = item["Key"][len(self.prefix) :]
                    if is_key(key):
                        yield key, item["LastModified"].timestamp()
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailable() from exc

    def clean_temp(self, older_than_seconds: float) -> int:
        """Nothing to clean: single-part PUTs leave no partial objects behind."""
        return 0
