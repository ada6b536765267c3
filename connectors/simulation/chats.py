"""Simulated chats as plain timelines: who did what when, before any Freshchat payload shape.

The simulator decides every event's time and effect here first; the payload shapes
(simulation_shapes) and the expected contacts (simulation) are both derived from these
timelines, so the expectation never depends on how a payload is parsed.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

__all__ = ["GROUPS", "AGENTS", "BOT_ID", "SimEvent", "SimChat", "generate_chat", "COARSE_KINDS"]

GROUPS = [
    {"id": "6f1d2c3b-0a1e-4c5d-8e7f-000000000101", "name": "Customer Support"},
    {"id": "6f1d2c3b-0a1e-4c5d-8e7f-000000000102", "name": "Billing"},
    {"id": "6f1d2c3b-0a1e-4c5d-8e7f-000000000103", "name": "Support technique — Montréal"},
    {"id": "6f1d2c3b-0a1e-4c5d-8e7f-000000000104", "name": "カスタマーサポート"},
    {"id": "6f1d2c3b-0a1e-4c5d-8e7f-000000000105", "name": "Ventas España"},
    {"id": "6f1d2c3b-0a1e-4c5d-8e7f-000000000106", "name": "Kundendienst Zürich"},
]
AGENTS = [
    {"id": f"a7e3c9d1-5b2f-4e8a-9c6d-0000000002{n:02d}", "name": name, "groups": [GROUPS[g]["id"] for g in groups]}
    for n, (name, groups) in enumerate([
        ("Amélie Dubois", (0, 2)), ("Brian O'Neill", (0, 1)), ("Chen Wei", (1,)), ("Dana Kowalski", (0,)),
        ("佐藤 花子", (3,)), ("Élodie Tremblay", (2,)), ("Javier Ruiz", (4, 0)), ("Jürgen Weiß", (5,)),
        ("Keiko Tanaka", (3, 0)), ("Lukas Meier", (5, 1)),
    ], start=1)
]
BOT_ID = "b0b0b0b0-f4ed-4d1e-8b07-00000000f4ed"
SYSTEM_ID = "system"
COARSE_KINDS = {"assign", "resolve", "terminal"}  # app updates timed by the envelope timestamp
HOUR = 3_600_000
DAY_SPAN = 48 * HOUR  # every event of a scenario lies within two days of its start
TEXTS = {
    "user": ["Hi, my order has not arrived", "Bonjour, ma facture est erronée", "注文がまだ届きません",
             "Can I change my plan?", "¿Dónde está mi pedido?", "Thanks!", "Still waiting…"],
    "agent": ["Let me check that for you.", "Je regarde votre dossier.", "確認いたします。",
              "Your refund is on its way.", "Is there anything else?", "Danke für Ihre Geduld."],
    "bot": ["Hi! I'm Freddy. How can I help?", "An agent will be with you shortly."],
    "system": ["Conversation assigned", "Chat transferred"],
    "private": ["customer is VIP", "refund approved by billing", "vérifier la commande #4471"],
}


@dataclass(frozen=True)
class SimEvent:
    """One event of a simulated chat: its time, actor, effect, and the chat's state after it."""

    kind: str  # open | message | assign | resolve | reopen | terminal
    time_ms: int
    actor_type: str
    actor_id: str
    status: str  # conversation status after the event
    group: str | None = None  # the chat's group after the event
    agent: str | None = None  # the chat's assigned agent after the event
    from_group: str | None = None
    from_agent: str | None = None
    from_status: str | None = None
    message_type: str | None = None  # normal | private | system
    message_id: str | None = None
    text: str = ""
    interaction_id: str = ""
    reopened_ms: int | None = None
    terse: bool = False  # drops an optional field (2018 message_type, app terminal model_changes.status)


@dataclass
class SimChat:
    """A chat: ids, payload format, and its cycles (each time-ordered, closing event last)."""

    conversation_id: str
    fmt: str  # webhook | app
    variant: str  # webhook: "2022" | "2018"; app: "s" | "ms" (unit of the envelope timestamp)
    user_id: str
    app_id: str
    channel_id: str
    created_ms: int
    cycles: list[list[SimEvent]] = field(default_factory=list)
    after_close: list[SimEvent] = field(default_factory=list)  # notes after the final close


@dataclass
class _Plan:
    """The story of one chat, drawn once so that its cycles stay consistent."""

    story: str  # answered | unanswered | outbound | agentless
    assignment: str  # together | later | group_only | direct | none
    group: str | None
    agent: str | None
    terminal: str | None  # deleted | spam on the final cycle (app chats only)
    reopens: list[str]  # explicit | implicit, one per cycle after the first


class _Timeline:
    """Appends events at strictly increasing times, tracking the chat's state."""

    def __init__(self, rng: random.Random, chat: SimChat, deadline_ms: int) -> None:
        self.rng, self.chat, self.deadline = rng, chat, deadline_ms
        self.now = chat.created_ms
        self.group = self.agent = self.reopened = None
        self.status = "new"
        self.coarse = chat.fmt == "app" and chat.variant == "s"
        self.interaction = self._interaction()
        self.events: list[SimEvent] = []

    def wait(self, low_s: float, high_s: float) -> None:
        self.now += self.rng.randint(max(1, int(low_s * 1000)), int(high_s * 1000))

    def add(self, kind: str, actor: tuple[str, str], **fields) -> SimEvent:
        if self.coarse and kind in COARSE_KINDS:  # whole seconds: the envelope timestamp says so
            self.now = -(-self.now // 1000) * 1000
        event = SimEvent(kind, self.now, actor[0], actor[1], self.status, self.group, self.agent,
                         interaction_id=self.interaction, reopened_ms=self.reopened, **fields)
        self.events.append(event)
        return event

    def say(self, actor: tuple[str, str], message_type: str = "normal") -> SimEvent:
        terse = self.chat.variant == "2018" and message_type == "normal" and self.rng.random() < 0.4
        text = self.rng.choice(TEXTS["private" if message_type == "private" else actor[0]])
        return self.add("message", actor, message_type=message_type, terse=terse,
                        message_id=_uuid(self.rng), text=text)

    def assign(self, actor: tuple[str, str], group: str | None, agent: str | None) -> None:
        before = {"from_group": self.group, "from_agent": self.agent, "from_status": self.status}
        self.group, self.agent, self.status = group or self.group, agent or self.agent, "assigned"
        self.add("assign", actor, **before)

    def close(self, actor: tuple[str, str], status: str = "resolved") -> list[SimEvent]:
        before, self.status = self.status, status
        self.add("resolve" if status == "resolved" else "terminal", actor, from_status=before,
                 terse=status != "resolved" and self.rng.random() < 0.3)
        cycle, self.events = self.events, []
        return cycle

    def reopen(self, actor: tuple[str, str], explicit: bool) -> None:
        self.status, self.reopened, self.interaction = "reopened", self.now, self._interaction()
        if explicit:
            self.add("reopen", actor, from_status="resolved", terse=self.rng.random() < 0.5)
        else:
            self.say(actor)

    def _interaction(self) -> str:
        return f"{self.rng.randint(100000, 999999)}-{self.now}"


def generate_chat(rng: random.Random, index: int, start_ms: int) -> SimChat:
    """One chat, all of it drawn from rng, starting within the first 18 hours after start_ms."""
    fmt = "app" if rng.random() < 0.5 else "webhook"
    variant = ("s" if rng.random() < 0.5 else "ms") if fmt == "app" else ("2018" if rng.random() < 0.25 else "2022")
    user = _uuid(rng) if rng.random() < 0.7 else f"cust-{index:05d}"
    chat = SimChat(_conversation_id(rng, index), fmt, variant, user, _uuid(rng), _uuid(rng),
                   start_ms + rng.randint(0, 18 * HOUR))
    plan = _plan(rng, fmt)
    line = _Timeline(rng, chat, start_ms + DAY_SPAN)
    for n in range(1, len(plan.reopens) + 2):
        _open(line, plan, n)
        _converse(line, plan, n)
        chat.cycles.append(_close(line, plan, last=n == len(plan.reopens) + 1))
    if rng.random() < 0.04 and line.agent:  # a note after the close: counted, never applied
        line.wait(30, 600)
        line.say(("agent", line.agent), "private")
        chat.after_close, line.events = line.events, []
    return chat


def _plan(rng: random.Random, fmt: str) -> _Plan:
    group = rng.choice(GROUPS)["id"]
    members = [a["id"] for a in AGENTS if group in a["groups"]]
    if rng.random() < 0.12:  # never assigned to a group
        story, assignment = rng.choice([("agentless", "none"), ("agentless", "none"),
                                        ("answered", "none"), ("answered", "direct")])
        group = None
    else:
        roll = rng.random()
        story = "unanswered" if roll < 0.10 else "outbound" if roll < 0.13 else "answered"
        assignment = ("together" if story == "outbound" else
                      rng.choices(["together", "later", "group_only"], [6, 2, 2])[0])
        if story == "unanswered":
            assignment = rng.choice(["group_only", "together"])
    terminal = rng.choices([None, "deleted", "spam"], [91, 5, 4])[0] if fmt == "app" else None
    count = rng.choices([0, 1, 2], [80, 14, 6])[0]
    reopens = ["explicit" if rng.random() < 0.6 else "implicit" for _ in range(count)]
    return _Plan(story, assignment, group, rng.choice(members if group else [a["id"] for a in AGENTS]),
                 terminal, reopens)


def _open(line: _Timeline, plan: _Plan, n: int) -> None:
    user = ("user", line.chat.user_id)
    if n == 1:
        if line.chat.fmt == "app":
            line.add("open", ("agent", plan.agent) if plan.story == "outbound" else user)
            line.wait(0.2, 3)
        if plan.story == "outbound":
            line.assign(("agent", plan.agent), plan.group, plan.agent)
            line.wait(1, 20)
            line.say(("agent", plan.agent))
        else:
            line.say(user)
        return
    line.wait(120, 4 * 3600)
    explicit = plan.reopens[n - 2] == "explicit"
    actor = line.rng.choice([user, user, ("agent", plan.agent), ("system", SYSTEM_ID)]) if explicit else user
    line.reopen(actor, explicit)
    if actor[0] != "user":
        line.wait(5, 600)
        line.say(user)


def _converse(line: _Timeline, plan: _Plan, n: int) -> None:
    rng = line.rng
    if plan.story != "outbound" and rng.random() < 0.35:
        line.wait(1, 5)
        line.say(("bot", BOT_ID), "system" if line.chat.fmt == "app" and rng.random() < 0.2 else "normal")
    if n == 1:
        _assign(line, plan)
    elif plan.group and plan.story == "answered" and rng.random() < 0.2:
        _transfer(line, plan)
    if plan.story == "outbound" and n == 1:  # nobody writes back: offered false
        for _ in range(rng.randint(0, 1)):
            line.wait(60, 3600)
            line.say(("agent", plan.agent))
    elif plan.story in ("answered", "outbound"):
        _exchange(line, plan, rng.randint(0, 8))
    elif plan.story == "unanswered" or rng.random() < 0.5:
        for _ in range(rng.randint(1, 3)):
            line.wait(20, 900)
            line.say(("user", line.chat.user_id))


def _assign(line: _Timeline, plan: _Plan) -> None:
    system = ("system", SYSTEM_ID)
    if plan.assignment in ("together", "later", "group_only") and plan.story != "outbound":
        line.wait(5, 90)
        line.assign(system, plan.group, plan.agent if plan.assignment == "together" else None)
    if plan.assignment == "later":
        line.wait(10, 300)
        line.assign(line.rng.choice([system, ("agent", plan.agent)]), plan.group, plan.agent)
    if plan.assignment == "direct":
        line.wait(5, 120)
        line.assign(system, None, plan.agent)


def _transfer(line: _Timeline, plan: _Plan) -> None:
    """Hand the chat to another group and one of its agents; later contacts follow it."""
    group = line.rng.choice([g for g in GROUPS if g["id"] != plan.group])["id"]
    agent = line.rng.choice([a["id"] for a in AGENTS if group in a["groups"]])
    line.wait(10, 600)
    line.assign(("agent", plan.agent), group, agent)
    plan.group, plan.agent = group, agent
    if line.chat.fmt == "app":
        line.wait(0.5, 3)
        line.say(("system", SYSTEM_ID), "system")


def _exchange(line: _Timeline, plan: _Plan, turns: int) -> None:
    rng, user, agent = line.rng, ("user", line.chat.user_id), ("agent", plan.agent)
    line.wait(10, 600)
    line.say(agent)
    for turn in range(turns):
        line.wait(10, 240)
        line.say(user)
        if rng.random() < 0.12:
            line.wait(5, 120)
            line.say(("agent", rng.choice(AGENTS)["id"]), "private")
        if plan.group and turn == 1 and plan.story == "answered" and rng.random() < 0.1:
            _transfer(line, plan)
            agent = ("agent", plan.agent)
        line.wait(10, 300)
        line.say(agent)


def _close(line: _Timeline, plan: _Plan, last: bool) -> list[SimEvent]:
    rng = line.rng
    if last and rng.random() < 0.08 and line.deadline - line.now > 11 * HOUR:
        line.now += rng.randint(10 * HOUR, min(18 * HOUR, line.deadline - line.now - HOUR))
    else:
        line.wait(20, 1800)
    if last and plan.terminal:
        return line.close(rng.choice([("agent", plan.agent), ("system", SYSTEM_ID)]), plan.terminal)
    helped = plan.story in ("answered", "outbound")
    kinds = ["agent", "system", "user"] if helped else ["system", "bot", "user"]
    kind = rng.choices(kinds, [75, 15, 10] if helped else [60, 25, 15])[0]
    if kind == "bot" and line.chat.fmt == "webhook":
        kind = "system"
    ids = {"agent": line.agent or plan.agent, "system": SYSTEM_ID, "bot": BOT_ID, "user": line.chat.user_id}
    return line.close((kind, ids[kind]))


def _conversation_id(rng: random.Random, index: int) -> str:
    roll = rng.random()
    if roll < 0.5:
        return _uuid(rng)
    if roll < 0.8:
        return f"{rng.getrandbits(128):032x}"
    return f"{rng.randint(10000, 99999)}_{index:05d}{rng.randint(100, 999)}_feedback"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
