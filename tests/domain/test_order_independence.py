"""The rule of docs/contacts.md §2, as a property: any delivery order of a chat's events, with
any duplicates, folds to the same final contacts as delivering them once in time order.

Whole chats of 1–4 cycles come from the simulator's timelines (both payload formats; reopen
by user, by agent or system, and implicit; group transfers; private notes; bots; deleted and
spam closes; notes after the close), rendered as the ingress would store them, and run through
the worker's ContactProcessor with plain dicts for tables. The simulator's own expectation,
computed from the timeline without the state machine, is the third opinion.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from connectors.simulation.scenario import GROUP_NAMES, expected_contacts
from connectors.simulation.chats import (AGENTS, GROUPS, SimChat, _close, _converse, _open, _Plan, _Timeline,
                                         _uuid)
from connectors.simulation.shapes import iso, render
from streams.domain.group_names import GroupNames
from streams.domain.metrics import WorkerMetrics
from streams.domain.processor import ContactProcessor

START_MS = 1_714_982_400_000  # 2024-05-06T08:00:00Z
UNSTABLE = {"emitted_at", "revision", "retracted"}


def build_chat(seed: int, fmt: str, variant: str, story: str, reopens: list[str], terminal: str | None,
               note_after: bool) -> SimChat:
    """One chat drawn like the simulator's, with the number of cycles and the ending chosen."""
    rng = random.Random(seed)
    group = rng.choice(GROUPS)["id"] if story != "agentless" else None
    agent = rng.choice([a["id"] for a in AGENTS if group is None or group in a["groups"]])
    assignment = "none" if group is None else rng.choice(["together", "later", "group_only"])
    plan = _Plan(story, assignment, group, agent, terminal if fmt == "app" else None, reopens)
    chat = SimChat(f"conv-{seed}", fmt, variant, _uuid(rng), _uuid(rng), _uuid(rng), START_MS)
    line = _Timeline(rng, chat, START_MS + 48 * 3_600_000)
    for n in range(1, len(reopens) + 2):
        _open(line, plan, n)
        _converse(line, plan, n)
        chat.cycles.append(_close(line, plan, last=n == len(reopens) + 1))
    if note_after:
        line.wait(30, 600)
        line.say(("agent", agent), "private")
        chat.after_close, line.events = line.events, []
    return chat


def envelopes(chat: SimChat) -> list[bytes]:
    """The chat's raw envelopes in time order, as the ingress writes them."""
    events = [event for cycle in chat.cycles for event in cycle] + chat.after_close
    out = []
    for event in events:
        body = orjson.dumps(render(chat, event))
        out.append(orjson.dumps({
            "v": 1, "event_id": hashlib.sha256(b"acme" + body).hexdigest(), "integration": "acme",
            "received_at": iso(event.time_ms + 1_000), "format": chat.fmt, "retry_count": 0,
            "payload": orjson.loads(body)}))
    return out


def final_contacts(batches: list[list[bytes]], commits: list[bool] | None = None
                   ) -> tuple[list[dict], list[tuple[str, int]]]:
    """What a consumer keeps (highest revision per contact_id, retractions dropped), and every
    (contact_id, revision) in the order written. With `commits`, the batches are staged as the
    worker stages its fetches, and the group is committed after batch i when commits[i] is true
    (and after the last)."""
    names = GroupNames()
    for group_id, name in GROUP_NAMES.items():
        names.learn("acme", group_id, name)
    sent = []

    async def emit(records):
        sent.extend(records)

    processor = ContactProcessor(chats={}, pending={}, names=names, emit=emit, metrics=WorkerMetrics(),
                                 expiry_ms=7 * 86_400_000, group_wait_ms=30_000, partition_of=lambda key: 0)

    async def feed():
        for i, batch in enumerate(batches):
            if commits is None:
                await processor.process([(None, value, 0) for value in batch])
                continue
            await processor.stage([(None, value, 0) for value in batch])
            if commits[i % len(commits)] if commits else False:
                await processor.commit_staged()
        await processor.commit_staged()

    asyncio.run(feed())
    latest, order = {}, []
    for _, value in sent:
        record = orjson.loads(value)
        order.append((record["contact_id"], record["revision"]))
        if record["revision"] > latest.get(record["contact_id"], {}).get("revision", 0):
            latest[record["contact_id"]] = record
    final = [{k: v for k, v in record.items() if k not in UNSTABLE}
             for _, record in sorted(latest.items()) if not record["retracted"]]
    return final, order


def split(values: list[bytes], cuts: list[int]) -> list[list[bytes]]:
    """The deliveries cut into worker batches at the given points."""
    bounds = sorted({c % (len(values) + 1) for c in cuts} | {0, len(values)})
    return [values[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


chats = st.builds(
    build_chat, seed=st.integers(0, 10**9), fmt=st.sampled_from(["webhook", "app"]),
    variant=st.sampled_from(["2022", "2018", "s", "ms"]),
    story=st.sampled_from(["answered", "answered", "unanswered", "outbound", "agentless"]),
    reopens=st.lists(st.sampled_from(["explicit", "implicit"]), max_size=3),
    terminal=st.sampled_from([None, None, "deleted", "spam"]), note_after=st.booleans())


def _variant_fits(chat: SimChat) -> bool:
    return chat.variant in (("2022", "2018") if chat.fmt == "webhook" else ("s", "ms"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chats, st.randoms(use_true_random=False), st.lists(st.integers(0, 10**6), max_size=40),
       st.lists(st.integers(0, 10**6), max_size=6), st.none() | st.lists(st.booleans(), max_size=6))
def test_any_order_with_any_duplicates_gives_the_in_order_contacts(chat, rnd, dups, cuts, commits):
    if not _variant_fits(chat):
        chat.variant = "2022" if chat.fmt == "webhook" else "ms"
    in_order = envelopes(chat)
    delivered = in_order + [in_order[d % len(in_order)] for d in dups]
    rnd.shuffle(delivered)
    expected, _ = final_contacts([in_order])
    got, order = final_contacts(split(delivered, cuts), commits)
    assert got == expected
    oracle = [{k: v for k, v in c.items() if k not in UNSTABLE} for c in expected_contacts("acme", chat)]
    assert expected == sorted(oracle, key=lambda c: c["contact_id"])
    for contact_id in {c for c, _ in order}:  # revisions only ever go up, and by one or two
        revisions = [r for c, r in order if c == contact_id]
        assert revisions == sorted(revisions) and revisions[0] == 1
