"""`tail --final`'s fold: the highest revision per contact_id wins, retractions hide, order does not matter."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from connectors.cli.tail import fold_contacts, raises_revision
from tests.contact_records import contact, retraction
from tests.schemas import assert_valid

T1, T2, T3 = "2024-05-06T09:10:00.000Z", "2024-05-06T09:20:00.000Z", "2024-05-06T09:30:00.000Z"


def ids(contacts) -> list[tuple[str, int]]:
    return [(c["contact_id"], c["revision"]) for c in contacts]


def test_the_highest_revision_wins_and_a_correction_keeps_its_place_by_resolved_at():
    folded = fold_contacts([contact("c1", 1, "Sales", T3), contact("c2", 1, "Sales", T2),
                            contact("c1", 2, "Sales", T1)])
    assert ids(folded) == [("acme:c1:1", 2), ("acme:c2:1", 1)]


def test_ties_on_resolved_at_sort_by_contact_id():
    folded = fold_contacts([contact("c2", 1, "Sales", T1), contact("c1", 1, "Support", T1)])
    assert ids(folded) == [("acme:c1:1", 1), ("acme:c2:1", 1)]


def test_a_retraction_at_the_highest_revision_hides_the_contact_until_a_higher_revision_brings_it_back():
    gone = [contact("c1", 1, "Sales", T1), retraction("c1", 2, "Sales")]
    assert fold_contacts(gone) == []
    assert ids(fold_contacts(gone + [contact("c1", 3, "Sales", T2)])) == [("acme:c1:1", 3)]


def test_a_repeat_keeps_the_later_emission_and_a_stale_revision_changes_nothing():
    """A worker that crashed after emitting revision 2 re-emits revision 2 after recovery,
    folded from possibly more events: the later emission is the one to keep."""
    first, repeat = contact("c1", 2, "Sales", T1), {**contact("c1", 2, "Sales", T2), "emitted_at": "2024-05-08T10:00:00.000Z"}
    for order in ([first, repeat], [repeat, first]):
        folded = fold_contacts([contact("c1", 1, "Sales", T1), *order, contact("c1", 1, "Sales", T2)])
        assert folded == [repeat] and folded[0] is repeat


@pytest.mark.parametrize("order", [(0, 1, 2), (0, 2, 1), (2, 1, 0)])
def test_a_moved_contact_counts_once_under_its_new_queue_whatever_order_its_records_arrive_in(order):
    records = [contact("c1", 1, "Sales", T1), retraction("c1", 2, "Sales"), contact("c1", 3, "Support", T1)]
    folded = fold_contacts([records[i] for i in order])
    assert [(c["queue"], c["revision"]) for c in folded] == [("Support", 3)]


def test_folding_one_queue_alone_never_double_counts_a_moved_contact():
    sales = [contact("c1", 1, "Sales", T1), retraction("c1", 2, "Sales")]
    support = [contact("c1", 3, "Support", T1)]
    assert fold_contacts(sales) == [] and ids(fold_contacts(support)) == [("acme:c1:1", 3)]


def test_a_record_from_before_revisions_counts_as_revision_1():
    legacy = {k: v for k, v in contact("c1", 1, "Sales", T1).items() if k not in ("revision", "retracted")}
    assert fold_contacts([legacy]) == [legacy]
    assert ids(fold_contacts([legacy, contact("c1", 2, "Sales", T2)])) == [("acme:c1:1", 2)]
    assert fold_contacts([contact("c1", 2, "Sales", T2), legacy])[0]["revision"] == 2


def test_raises_revision_is_what_the_live_phase_prints():
    highest: dict[str, int] = {}
    stream = [contact("c1", 1, "Sales", T1), contact("c1", 1, "Sales", T1), retraction("c1", 3, "Sales"),
              contact("c1", 2, "Support", T1), contact("c2", 1, "Sales", T2), contact("c1", 4, "Sales", T1)]
    printed = [ids([c])[0] for c in stream if raises_revision(highest, c)]
    assert printed == [("acme:c1:1", 1), ("acme:c1:1", 3), ("acme:c2:1", 1), ("acme:c1:1", 4)]
    assert {contact_id: order[0] for contact_id, order in highest.items()} == {"acme:c1:1": 4, "acme:c2:1": 1}


def test_the_records_used_here_are_valid_contacts():
    for record in (contact("c1", 1, "Sales", T1), retraction("c1", 2, "Sales")):
        assert_valid("contact", record)


revisions = st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3"]), st.integers(1, 6), st.booleans(),
                               st.sampled_from([T1, T2, T3])), max_size=30)


@given(revisions, st.randoms(use_true_random=False))
def test_the_fold_does_not_depend_on_the_order_of_distinct_revisions(records, rnd):
    unique = {(conv, rev): (retracted, at) for conv, rev, retracted, at in records}  # one record per revision
    built = [retraction(conv, rev, "Sales") if retracted else contact(conv, rev, "Sales", at)
             for (conv, rev), (retracted, at) in unique.items()]
    shuffled = built[:]
    rnd.shuffle(shuffled)
    assert fold_contacts(shuffled) == fold_contacts(built)
    top = {}
    for record in built:
        if record["revision"] > top.get(record["contact_id"], {"revision": 0})["revision"]:
            top[record["contact_id"]] = record
    expected = sorted((r for r in top.values() if not r["retracted"]), key=lambda r: (r["resolved_at"], r["contact_id"]))
    assert fold_contacts(built) == expected
