"""Landmarks: kept per grid within the staff member's scope, and used to place typed addresses."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.errors import NotFound
from app.reports.models import Landmark
from app.staff.landmarks import (
    LandmarkInvalid,
    create_landmark,
    delete_landmark,
    list_landmarks,
    match_landmark,
    place_by_landmark,
    update_landmark,
)
from tests.extras import add_staff
from tests.layers import centre_of


@pytest.fixture
def people(seeded):
    with seeded() as s:
        add_staff(s, "admin", "admin")
        add_staff(s, "town", "supervisor", ("T1",))
        add_staff(s, "g1", "grid_worker", ("G1",))
        add_staff(s, "g2", "grid_worker", ("G2",))
        s.commit()
    return seeded


def viewer(session, username):
    from app.people.models import StaffUser
    from app.staff.scope import viewer_for

    return viewer_for(
        session, session.scalar(select(StaffUser).where(StaffUser.username == username))
    )


def test_grid_worker_keeps_landmarks_of_their_grid(people):
    lat, lon = centre_of("G1")
    with people() as s:
        g1 = viewer(s, "g1")
        lm = create_landmark(
            s,
            g1,
            grid_code="G1",
            name=" 二中门口 ",
            latitude=lat,
            longitude=lon,
            aliases=["第二中学", "", "二中门口", "市二中", "第二中学"],
        )
        s.commit()
        assert lm.name == "二中门口"
        assert lm.aliases == ["第二中学", "市二中"]  # blanks, repeats and the name dropped
        assert lm.created_by_id == g1.staff_id
        with pytest.raises(LandmarkInvalid) as exc:
            create_landmark(s, g1, grid_code="G2", name="汽车站", latitude=lat, longitude=lon)
        assert "grid_code" in exc.value.fields
        with pytest.raises(LandmarkInvalid):
            create_landmark(s, g1, grid_code="NOPE", name="汽车站", latitude=lat, longitude=lon)


def test_fields_are_checked(people):
    with people() as s:
        g1 = viewer(s, "g1")
        with pytest.raises(LandmarkInvalid) as exc:
            create_landmark(s, g1, grid_code="G1", name="。", latitude=91, longitude=float("nan"))
        assert set(exc.value.fields) == {"name", "latitude", "longitude"}
        with pytest.raises(LandmarkInvalid):
            create_landmark(
                s,
                g1,
                grid_code="G1",
                name="汽车站",
                latitude=40.6,
                longitude=122.5,
                aliases=[f"别名{i}" for i in range(30)],
            )


def test_out_of_scope_landmarks_are_not_there(people):
    with people() as s:
        lm = create_landmark(
            s, viewer(s, "g1"), grid_code="G1", name="汽车站", latitude=40.635, longitude=122.495
        )
        s.commit()
        g2, town, admin = viewer(s, "g2"), viewer(s, "town"), viewer(s, "admin")
        assert list_landmarks(s, g2) == []
        assert [x.id for x in list_landmarks(s, town)] == [lm.id]
        assert [x.id for x in list_landmarks(s, admin, query="汽车站")] == [lm.id]
        assert list_landmarks(s, admin, query="火车站") == []
        with pytest.raises(NotFound):
            update_landmark(s, g2, lm.id, name="火车站", latitude=40.6, longitude=122.5)
        with pytest.raises(NotFound):
            delete_landmark(s, g2, lm.id)
        with pytest.raises(NotFound):
            delete_landmark(s, g2, 999_999)
        s.rollback()
        assert s.get(Landmark, lm.id).name == "汽车站"
        # Moving it needs the new grid in scope too.
        with pytest.raises(LandmarkInvalid):
            update_landmark(
                s,
                viewer(s, "g1"),
                lm.id,
                name="汽车站",
                latitude=40.6,
                longitude=122.5,
                grid_code="G2",
            )
        update_landmark(
            s, town, lm.id, name="长途汽车站", latitude=40.6, longitude=122.5, grid_code="G2"
        )
        s.commit()
        assert list_landmarks(s, viewer(s, "g1")) == []
        assert [x.grid_code for x in list_landmarks(s, g2)] == ["G2"]
        delete_landmark(s, town, lm.id)
        s.commit()
        assert s.scalar(select(Landmark.id)) is None


def test_matching_follows_edits_at_once(people):
    lat, lon = centre_of("G3")
    with people() as s:
        town = viewer(s, "town")
        assert match_landmark(s, "钢都小区3号楼门口有人打架") is None
        small = create_landmark(
            s, town, grid_code="G3", name="钢都小区", latitude=lat, longitude=lon
        )
        big = create_landmark(
            s, town, grid_code="G3", name="钢都小区3号楼", latitude=lat + 0.001, longitude=lon
        )
        s.commit()
        match = match_landmark(s, "钢都小区三号楼门口有人打架")
        assert (match.landmark_id, match.grid_code) == (big.id, "G3")
        assert match_landmark(s.connection(), "钢都小区东门").landmark_id == small.id
        assert place_by_landmark(s, "钢都小区 3#楼") == (lat + 0.001, lon, big.id)
        delete_landmark(s, town, big.id)
        s.commit()
        assert match_landmark(s, "钢都小区3号楼").landmark_id == small.id


def test_place_by_landmark_refuses_weak_or_ambiguous_matches(people):
    with people() as s:
        admin = viewer(s, "admin")
        for code in ("G1", "G4"):
            lat, lon = centre_of(code)
            create_landmark(s, admin, grid_code=code, name="汽车站", latitude=lat, longitude=lon)
        create_landmark(
            s,
            admin,
            grid_code="G2",
            name="二中门口",
            latitude=40.645,
            longitude=122.505,
            aliases=["第二中学"],
        )
        s.commit()
        assert place_by_landmark(s, "汽车站") is None  # two different places
        assert match_landmark(s, "汽车站").candidates == 2
        assert place_by_landmark(s, "人民路") is None
        assert place_by_landmark(s, "") is None
        assert place_by_landmark(s, "第二中学对面")[:2] == (40.645, 122.505)
        assert place_by_landmark(s, "二中旁边")[:2] == (40.645, 122.505)
