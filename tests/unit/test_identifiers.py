"""Reference, pseudonym and receipt formats of CONTRACT.md."""

from __future__ import annotations

from app.identifiers import (
    PSEUDONYM_RE,
    REF_RE,
    new_pseudonym,
    new_receipt,
    new_tip_ref,
    normalise_receipt,
    normalise_ref,
    receipt_from_key,
)


def test_refs_and_pseudonyms_match_the_contract():
    assert all(REF_RE.match(new_tip_ref()) for _ in range(500))
    assert all(PSEUDONYM_RE.match(new_pseudonym(n)) for n in (4, 5, 6) for _ in range(100))
    # 2,000 draws from 32**6 collide once about one run in 500; five collisions would
    # mean the references are far less random than they should be.
    assert len({new_tip_ref() for _ in range(2000)}) >= 1995


def test_typed_refs_are_forgiving_but_strict():
    assert normalise_ref(" t-7k3m9q ") == "T-7K3M9Q"
    assert normalise_ref("7K3M9Q") == "T-7K3M9Q"
    assert normalise_ref("T-7K3MOQ") == "T-7K3M0Q"  # O typed for zero
    assert normalise_ref("T-7K3M9") is None
    assert normalise_ref("../etc") is None


def test_receipts_are_sixteen_digits():
    r = new_receipt()
    assert normalise_receipt(r) == r and len(r) == 19
    assert normalise_receipt(r.replace("-", "")) == r
    assert normalise_receipt("1234-5678") is None


def test_receipt_from_key_is_stable_and_keyed():
    a = receipt_from_key("secret-a", "0b0e4a5e-9f1e-4a3c-8d55-4c1a1e2b3c4d")
    assert a == receipt_from_key("secret-a", "0b0e4a5e-9f1e-4a3c-8d55-4c1a1e2b3c4d")
    assert a != receipt_from_key("secret-b", "0b0e4a5e-9f1e-4a3c-8d55-4c1a1e2b3c4d")
    assert normalise_receipt(a) == a
