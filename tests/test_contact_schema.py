"""schemas/contact.schema.json: every record has a revision; a retraction carries identity fields only."""

from __future__ import annotations

import pytest

from tests.contact_records import contact, retraction
from tests.schemas import assert_valid

RESOLVED = "2024-05-06T09:10:00.000Z"


def test_a_contact_and_a_retraction_are_valid():
    assert_valid("contact", contact("c1", 1, "Sales", RESOLVED))
    assert_valid("contact", retraction("c1", 2, "Sales"))


@pytest.mark.parametrize("field", ["revision", "retracted"])
def test_revision_and_retracted_are_required_on_every_record(field):
    for record in (contact("c1", 1, "Sales", RESOLVED), retraction("c1", 2, "Sales")):
        with pytest.raises(AssertionError):
            assert_valid("contact", {k: v for k, v in record.items() if k != field})


@pytest.mark.parametrize("revision", [0, -1, 1.5, "2", None])
def test_a_revision_is_a_positive_integer(revision):
    with pytest.raises(AssertionError):
        assert_valid("contact", {**contact("c1", 1, "Sales", RESOLVED), "revision": revision})


def test_a_retraction_has_no_other_field():
    with pytest.raises(AssertionError):
        assert_valid("contact", {**retraction("c1", 2, "Sales"), "resolved_at": RESOLVED})
    with pytest.raises(AssertionError):
        assert_valid("contact", {**retraction("c1", 2, "Sales"), "extra": 1})


@pytest.mark.parametrize("field", ["queue", "emitted_at", "conversation_id", "cycle", "integration"])
def test_a_retraction_still_names_what_it_retracts(field):
    with pytest.raises(AssertionError):
        assert_valid("contact", {k: v for k, v in retraction("c1", 2, "Sales").items() if k != field})


def test_a_contact_not_retracted_keeps_every_field_and_no_other():
    full = contact("c1", 1, "Sales", RESOLVED)
    with pytest.raises(AssertionError):
        assert_valid("contact", {k: v for k, v in full.items() if k != "messages"})
    with pytest.raises(AssertionError):
        assert_valid("contact", {**full, "extra": 1})
    with pytest.raises(AssertionError):
        assert_valid("contact", {**full, "retracted": "no"})
