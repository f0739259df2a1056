"""End to end with the S3 backend: a tip with a photo through the API, then the staff URL."""

from __future__ import annotations

import io
import uuid

import boto3
import pytest

from app import create_app
from app.reports.storage_s3 import S3MediaStore
from tests.images import phone_jpeg
from tests.integration.test_admin_support import make_staff, staff_token
from tests.layers import centre_of
from tests.s3server import s3_bucket, s3_endpoint, s3_env  # noqa: F401 (fixtures)


@pytest.fixture
def s3_app(settings, engine, seeded, s3_bucket, s3_endpoint):  # noqa: F811
    """The app with media in the test S3 server."""
    application = create_app(
        settings.with_(
            media_backend="s3",
            s3_bucket=s3_bucket,
            s3_endpoint_url=s3_endpoint,
            s3_prefix="media",
        )
    )
    yield application
    application.extensions["tipline"].engine.dispose()


def test_tip_photo_goes_to_s3_and_staff_get_it_back(
    s3_app,
    seeded,
    settings,
    s3_bucket,  # noqa: F811
    s3_endpoint,  # noqa: F811
):
    store = s3_app.extensions["tipline"].store
    assert isinstance(store, S3MediaStore)
    client = s3_app.test_client()
    lat, lon = centre_of("G1")
    response = client.post(
        "/api/v1/tips",
        data={
            "category": "theft",
            "description": "电动车被盗",
            "latitude": str(lat),
            "longitude": str(lon),
            "photos": [(io.BytesIO(phone_jpeg(640, 480)), "phone.jpg")],
        },
        headers={"Idempotency-Key": str(uuid.uuid4())},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    ref = response.get_json()["ref"]

    # Nothing on the local disk; a derivative and a thumbnail in the bucket.
    assert not settings.media_dir.exists() or not any(settings.media_dir.rglob("*.jpg"))
    s3 = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)
    objects = s3.list_objects_v2(Bucket=s3_bucket, Prefix="media/").get("Contents", [])
    assert len(objects) == 2

    make_staff(seeded, "g1", "grid_worker", ["G1"])
    auth = {"Authorization": f"Bearer {staff_token(seeded, 'g1')}"}
    tip = client.get(f"/api/v1/staff/tips/{ref}", headers=auth).get_json()
    [photo] = tip["photos"]
    for url in (photo["url"], photo["thumbnail_url"]):
        served = client.get(url, headers=auth)
        assert served.status_code == 200
        assert served.mimetype == "image/jpeg"
        assert served.headers["X-Content-Type-Options"] == "nosniff"
        stored = {s3.get_object(Bucket=s3_bucket, Key=o["Key"])["Body"].read() for o in objects}
        assert served.data in stored
    assert b"GPS" not in served.data  # the derivative lost its metadata on the way in
