"""Incidents within 150 m and 30 min, reused photos and text, merge and split; both databases."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from sqlalchemy import select

from app.config import Settings
from app.errors import DomainError
from app.grids.index import METRES_PER_DEGREE
from app.people.services import create_reporter
from app.reports.duplicates import (
    duplicate_candidates,
    merge_tips,
    photo_distance,
    split_tip,
    text_hash,
)
from app.reports.errors import TipsNotMergeable
from app.reports.models import Incident, Tip, TipEvent, TipLink
from app.reports.photos import process_photo
from app.reports.services import Upload, submit_tip
from app.reports.storage import LocalMediaStore
from app.reports.triage import seed_urgent_words, set_urgent_word
from tests.layers import centre_of

T0 = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai: daytime
LAT, LON = centre_of("G1")


def north_of(metres: float) -> tuple[float, float]:
    return LAT + metres / METRES_PER_DEGREE, LON


# --- photo fixtures: scenes that look like something, and their edited copies ------------------


def scene(seed: int, width: int = 1200, height: int = 900) -> Image.Image:
    """A synthetic photo: smooth colour field, overlapping shapes, blur and sensor noise."""
    rng = np.random.default_rng(seed)
    im = Image.fromarray((rng.random((6, 8, 3)) * 255).astype("uint8"))
    im = im.resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    r = random.Random(seed)
    for _ in range(25):
        x0, y0 = r.randrange(width), r.randrange(height)
        box = [x0, y0, x0 + r.randrange(40, width // 2), y0 + r.randrange(40, height // 2)]
        colour = tuple(r.randrange(256) for _ in range(3))
        (draw.rectangle if r.random() < 0.5 else draw.ellipse)(box, fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(2))
    noisy = np.asarray(im).astype(float) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype("uint8"))


def jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def crop(im: Image.Image, share: float) -> Image.Image:
    w, h = im.size
    return im.crop((int(w * share), int(h * share), int(w * (1 - share)), int(h * (1 - share))))


def edited_copies(im: Image.Image) -> dict[str, bytes]:
    """What a re-sender does to a photo: recompress, shrink, crop a little."""
    w, h = im.size
    return {
        "quality 35": jpeg(im, 35),
        "half size": jpeg(im.resize((w // 2, h // 2)), 75),
        "quarter size, quality 50": jpeg(im.resize((w // 4, h // 4)), 50),
        "as PNG": (lambda buf: (im.save(buf, "PNG"), buf.getvalue())[1])(io.BytesIO()),
        "cropped 3 % a side": jpeg(crop(im, 0.03), 85),
    }


def phash(data: bytes) -> str:
    return process_photo(data).phash


def test_photo_threshold_separates_copies_from_other_scenes():
    """The tuning behind photo_match_bits (12), measured on these fixtures.

    Here (six 800 × 600 scenes): recompressed, resized, PNG 0 bits; cropped 3 % a side
    8-10; different scenes 26-38. Sixty 1,200 × 900 scenes: copies 0-2, 3 % crops 0-12,
    5 % crops 4-16 (not reliably caught), different scenes 18 or more over 1,770 pairs.
    """
    threshold = Settings.__dataclass_fields__["photo_match_bits"].default
    originals = {seed: scene(seed, 800, 600) for seed in range(6)}
    hashes = {seed: phash(jpeg(im)) for seed, im in originals.items()}
    copies = {}
    for seed, im in originals.items():
        for name, data in edited_copies(im).items():
            copies[(seed, name)] = photo_distance(hashes[seed], phash(data))
    assert max(d for (_, name), d in copies.items() if "crop" not in name) <= 2
    assert max(copies.values()) <= threshold, copies
    others = [photo_distance(hashes[a], hashes[b]) for a, b in itertools.combinations(hashes, 2)]
    assert min(others) > threshold + 4, sorted(others)


# --- intake helpers -----------------------------------------------------------------------------


@pytest.fixture
def submit(seeded, settings):
    """Submit a tip through the intake service at a given time; return its stored row."""
    store = LocalMediaStore(settings.media_dir)

    def _submit(
        *,
        at: dt.datetime = T0,
        category: str = "theft",
        text: str = "电动车被偷 e-bike stolen",
        where: tuple[float, float] | None = (LAT, LON),
        reporter_id: int | None = None,
        photos: list[bytes] = (),
    ) -> Tip:
        fields = {"category": category, "description": text}
        if where is not None:
            fields.update(latitude=where[0], longitude=where[1], accuracy_m=10)
        with seeded() as s:
            result = submit_tip(
                s,
                settings,
                store,
                fields=fields,
                uploads=[Upload(p, f"p{i}.jpg") for i, p in enumerate(photos)],
                channel="api",
                reporter_id=reporter_id,
                now=at,
            )
            s.commit()
            return s.scalar(select(Tip).where(Tip.ref == result.ref))

    return _submit


def tip(seeded, tip_id: int) -> Tip:
    with seeded() as s:
        return s.get(Tip, tip_id)


def links(seeded, tip_id: int) -> set[tuple[int, str]]:
    with seeded() as s:
        rows = s.execute(select(TipLink.other_tip_id, TipLink.kind).where(TipLink.tip_id == tip_id))
        return {tuple(r) for r in rows}


@pytest.fixture
def reporters(seeded):
    with seeded() as s:
        ids = [create_reporter(s, "taxi_driver").id for _ in range(3)]
        s.commit()
    return ids


# --- same incident ------------------------------------------------------------------------------


def test_tips_within_150_m_and_30_min_join_one_incident(submit, seeded):
    a = submit(text="两人在打架")
    b = submit(at=T0 + dt.timedelta(minutes=20), where=north_of(100), text="Two men fighting")
    assert a.incident_id is None  # alone when it came in
    assert b.incident_id is not None
    assert tip(seeded, a.id).incident_id == b.incident_id
    with seeded() as s:
        incident = s.get(Incident, b.incident_id)
        assert incident.first_tip_id == a.id
        rows = s.execute(
            select(TipLink.tip_id, TipLink.distance).where(TipLink.kind == "same_incident")
        )
        distances = {tip_id: distance for tip_id, distance in rows}
    assert distances.keys() == {a.id, b.id}  # both directions
    assert distances[a.id] == pytest.approx(100, abs=1)
    # a third tip joins the same incident
    c = submit(at=T0 + dt.timedelta(minutes=25), where=north_of(-40))
    assert c.incident_id == b.incident_id
    assert "same_incident" in {k for _, k in links(seeded, c.id)}


@pytest.mark.parametrize(
    ("minutes", "metres", "category"),
    [
        (10, 200, "theft"),  # too far
        (31, 0, "theft"),  # too late
        (10, 50, "fraud"),  # another category
    ],
)
def test_tips_outside_the_window_stay_apart(submit, seeded, minutes, metres, category):
    a = submit()
    b = submit(at=T0 + dt.timedelta(minutes=minutes), where=north_of(metres), category=category)
    assert b.incident_id is None and tip(seeded, a.id).incident_id is None
    assert not {k for _, k in links(seeded, b.id)} & {"same_incident"}


def test_just_inside_the_edges(submit):
    submit()
    b = submit(at=T0 + dt.timedelta(minutes=29, seconds=59), where=north_of(149))
    assert b.incident_id is not None


def test_a_tip_without_location_skips_the_spatial_check(submit):
    submit()
    b = submit(at=T0 + dt.timedelta(minutes=1), where=None)
    assert b.incident_id is None and "needs_location" in b.flags


def test_an_earlier_tip_entered_later_becomes_the_first(submit, seeded):
    a = submit(at=T0)
    b = submit(at=T0 - dt.timedelta(minutes=5), where=north_of(30))  # entered on behalf, later
    with seeded() as s:
        assert s.get(Incident, b.incident_id).first_tip_id == b.id
    assert tip(seeded, a.id).incident_id == b.incident_id


def test_a_split_tip_is_not_pulled_back_and_new_tips_join_the_nearest(submit, seeded):
    a = submit()
    b = submit(at=T0 + dt.timedelta(minutes=5), where=north_of(120))
    with seeded() as s:
        split_tip(s, b.id, actor_id=1)
        s.commit()
    c = submit(at=T0 + dt.timedelta(minutes=6), where=north_of(110))  # nearest: b
    assert c.incident_id == tip(seeded, b.id).incident_id != tip(seeded, a.id).incident_id
    assert {a.id, b.id} <= {other for other, _ in links(seeded, c.id)}


# --- photos -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def street():
    return scene(101)


def test_a_photo_reused_by_another_reporter_is_flagged(submit, seeded, reporters, street):
    first, second, third = reporters
    a = submit(reporter_id=first, photos=[jpeg(street)], text="路口有人打架")
    # another reporter, another place and day, the same picture shrunk and recompressed
    b = submit(
        reporter_id=second,
        photos=[jpeg(street.resize((600, 450)), 40)],
        text="Fight at the crossing",
        at=T0 + dt.timedelta(days=3),
        where=north_of(5000),
    )
    assert a.flags == [] and "photo_reused" in b.flags
    assert (a.id, "similar_photo") in links(seeded, b.id)
    assert (b.id, "similar_photo") in links(seeded, a.id)
    with seeded() as s:
        bits = s.scalar(select(TipLink.distance).where(TipLink.tip_id == b.id))
    assert 0 <= bits <= 12
    # a different scene from a third reporter is not
    c = submit(reporter_id=third, photos=[jpeg(scene(7))], at=T0 + dt.timedelta(days=3))
    assert not {"photo_reused", "repeat_photo"} & set(c.flags)


def test_the_same_reporter_resending_is_a_repeat_not_reuse(submit, reporters, street):
    first = reporters[0]
    submit(reporter_id=first, photos=[jpeg(street)])
    again = submit(
        reporter_id=first, photos=[jpeg(crop(street, 0.03), 80)], at=T0 + dt.timedelta(hours=5)
    )
    assert "repeat_photo" in again.flags and "photo_reused" not in again.flags


def test_an_anonymous_resend_counts_as_reuse(submit, reporters, street):
    submit(reporter_id=reporters[0], photos=[jpeg(street)])
    anon = submit(photos=[jpeg(street, 60)], at=T0 + dt.timedelta(days=1))
    assert "photo_reused" in anon.flags


def test_photos_older_than_the_window_are_not_compared(submit, reporters, street):
    submit(reporter_id=reporters[0], photos=[jpeg(street)], at=T0 - dt.timedelta(days=31))
    late = submit(reporter_id=reporters[1], photos=[jpeg(street)])
    assert "photo_reused" not in late.flags


# --- text ---------------------------------------------------------------------------------------


def test_the_same_text_three_times_a_day_from_one_reporter(submit, seeded, reporters):
    me = reporters[0]
    texts = ["二中门口有人卖假药！", "二中门口 有人卖假药", "二中门口，有人卖假药。。"]
    made = [
        submit(reporter_id=me, text=t, at=T0 + dt.timedelta(hours=3 * i), category="fraud")
        for i, t in enumerate(texts)
    ]
    assert [("repeat_text" in m.flags) for m in made] == [False, False, True]
    assert len({m.text_hash for m in made}) == 1 and made[0].text_hash == text_hash(texts[0])
    assert {(made[0].id, "same_text"), (made[1].id, "same_text")} <= links(seeded, made[2].id)
    # a day later the count starts again
    later = submit(reporter_id=me, text=texts[0], at=T0 + dt.timedelta(hours=40))
    assert "repeat_text" not in later.flags


def test_the_same_text_three_times_in_ten_minutes_from_anyone(submit, reporters):
    texts = [
        "Someone is selling FAKE medicine at the gate!",
        "someone is selling fake medicine at the gate",
    ]
    a = submit(text=texts[0], category="fraud")
    b = submit(text=texts[1], reporter_id=reporters[1], at=T0 + dt.timedelta(minutes=4))
    c = submit(text=texts[0].upper(), at=T0 + dt.timedelta(minutes=9), where=None)
    assert "repeat_text" not in a.flags and "repeat_text" not in b.flags
    assert "repeat_text" in c.flags
    # spread over more than ten minutes by different people: linked, not flagged
    d = submit(text="有人打架", at=T0 + dt.timedelta(hours=2))
    e = submit(text="有人打架!", at=T0 + dt.timedelta(hours=2, minutes=15))
    f = submit(text="有人打架", at=T0 + dt.timedelta(hours=2, minutes=30))
    assert not any("repeat_text" in x.flags for x in (d, e, f))


def test_photo_only_tips_have_no_text_hash(submit, street):
    only_photo = submit(text="", photos=[jpeg(street)])
    assert only_photo.text_hash is None


# --- priority at intake -------------------------------------------------------------------------


def test_intake_stores_priority_rank_and_reasons(submit):
    t = submit(category="robbery_violence", text="有人持刀抢劫 help")
    assert (t.priority, t.priority_rank) == ("urgent", 0)
    assert {"rule": "urgent_word", "points": 4, "detail": "持刀"} in t.priority_reasons
    assert t.priority_reasons[0]["rule"] == "severity"
    plain = submit(category="public_facility", text="路灯坏了", where=None)
    assert (plain.priority, plain.priority_rank) == ("low", 3)


def test_an_edited_word_list_applies_to_the_next_tip(submit, seeded):
    with seeded() as s:
        assert seed_urgent_words(s) > 0
        assert seed_urgent_words(s) == 0  # idempotent
        s.commit()
    assert submit(category="suspicious", text="车站有可疑包裹", where=None).priority == "normal"
    with seeded() as s:
        set_urgent_word(s, "可疑包裹", 4)
        set_urgent_word(s, "打架", 2, active=False)
        for word, weight in (("  ", 2), ("炸弹", 99)):
            with pytest.raises(DomainError) as refused:
                set_urgent_word(s, word, weight)
            assert refused.value.code == "invalid_urgent_word"
        s.commit()
    t = submit(category="suspicious", text="车站有可疑包裹，有人打架", where=None)
    assert [r["detail"] for r in t.priority_reasons if r["rule"] == "urgent_word"] == ["可疑包裹"]


# --- merge, split and the candidates list -------------------------------------------------------


def test_merge_and_split_with_audit(submit, seeded):
    a = submit(text="仓库门被撬")
    b = submit(at=T0 + dt.timedelta(hours=2), where=north_of(900), text="warehouse broken into")
    assert a.incident_id is None and b.incident_id is None
    with seeded() as s:
        merge_tips(s, b.id, a.id, actor_id=7)
        s.commit()
    ma, mb = tip(seeded, a.id), tip(seeded, b.id)
    assert ma.incident_id == mb.incident_id is not None and mb.duplicate_of_id == a.id
    with seeded() as s:
        assert s.get(Incident, ma.incident_id).first_tip_id == a.id
        events = s.execute(select(TipEvent.tip_id, TipEvent.action, TipEvent.actor_id)).all()
        candidates = duplicate_candidates(s, a.id)
    assert (b.id, "merged", 7) in events and (a.id, "merged_in", 7) in events
    assert [(c["ref"], c["same_incident"], c["duplicate_of_this"]) for c in candidates] == [
        (b.ref, True, True)
    ]
    assert candidates[0]["distance_m"] == pytest.approx(900, abs=2)

    with seeded() as s:
        split_tip(s, b.id, actor_id=7)
        s.commit()
        assert (
            s.scalar(
                select(TipEvent.action).where(TipEvent.tip_id == b.id).order_by(TipEvent.id.desc())
            )
            == "split"
        )
        assert duplicate_candidates(s, a.id) == []
    sa, sb = tip(seeded, a.id), tip(seeded, b.id)
    assert sb.incident_id not in (None, sa.incident_id) and sb.duplicate_of_id is None


def test_merges_that_make_no_sense_are_refused(submit, seeded):
    a = submit()
    b = submit(at=T0 + dt.timedelta(hours=2))
    with seeded() as s:
        with pytest.raises(TipsNotMergeable):
            merge_tips(s, a.id, a.id, actor_id=1)
        with pytest.raises(TipsNotMergeable):
            split_tip(s, a.id, actor_id=1)  # alone: nothing to split from
        merge_tips(s, b.id, a.id, actor_id=1)
        with pytest.raises(TipsNotMergeable):
            merge_tips(s, a.id, b.id, actor_id=1)  # would make a cycle


def test_candidates_list_links_and_respects_scope(submit, seeded, reporters, street):
    a = submit(reporter_id=reporters[0], photos=[jpeg(street)], text="有人偷电瓶")
    b = submit(
        text="battery thief",
        reporter_id=reporters[1],
        photos=[jpeg(street, 50)],
        at=T0 + dt.timedelta(minutes=3),
        where=north_of(60),
    )
    with seeded() as s:
        [c] = duplicate_candidates(s, b.id)
        assert c["ref"] == a.ref and c["kinds"] == ["same_incident", "similar_photo"]
        assert c["distance_m"] == pytest.approx(60, abs=1) and c["photo_bits"] <= 12
        assert c["same_reporter"] is False and c["same_incident"] is True
        assert duplicate_candidates(s, b.id, visible=Tip.id != a.id) == []
