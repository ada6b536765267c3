"""`freshstream integrations …`: add, list, show, status, rotate-key, set-delivery, disable, enable, remove."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from connectors.ingress.signature import PublicKeyError, load_public_key
from connectors.integrations.health import forget_health, load_health
from connectors.integrations.records import Integration, load_cipher, new_ingress_key, new_integration
from connectors.integrations.registry import IntegrationStore, load_integrations
from connectors.kafka.topics import ensure_topics, wait_for_broker
from streams.domain.integration_health import assess
from streams.errors import IntegrationError, UsageError
from streams.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    """Register the `integrations` verb and its sub-verbs."""
    parser = sub.add_parser("integrations",
                            help="add, list, show, status, rotate-key, set-delivery, disable, enable or remove "
                                 "integrations",
                            description="Manage the Freshchat accounts that post to freshstream.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="add an integration and print its ingress key once")
    add.add_argument("name", help="integration id used in URLs and keys: [a-z0-9][a-z0-9-]{0,62}")
    add.add_argument("--domain", required=True, help="Freshchat domain (acme.freshchat.com) or a full URL")
    source = add.add_mutually_exclusive_group()
    source.add_argument("--freshchat-api-key-env", metavar="VAR", help="read the Freshchat API key from this variable")
    source.add_argument("--freshchat-api-key-file", metavar="PATH", help="read the Freshchat API key from this file")
    add.add_argument("--webhook-public-key-file", metavar="PEM", help="Freshchat's webhook public key (PEM)")
    for verb, text in (("list", "list integrations"), ("show", "show one integration"),
                       ("rotate-key", "issue a new ingress key; the old one stops working"),
                       ("disable", "refuse every request of an integration"),
                       ("enable", "accept an integration's requests again, with its current key"),
                       ("remove", "delete an integration and its health records (needs --yes)")):
        p = verbs.add_parser(verb, help=text)
        if verb != "list":
            p.add_argument("name")
        if verb == "remove":
            p.add_argument("--yes", action="store_true", help="confirm: the integration and its key cannot come back")
        p.add_argument("--json", action="store_true", help="machine-readable output")
    delivery = verbs.add_parser(
        "set-delivery", help="deliver an integration's contacts to injixo (or stop, with --clear)",
        description="Store the injixo integrationConfigurationId and API key (encrypted) that 'freshstream deliver "
                    "injixo' posts this integration's contacts with; a running sink picks the change up live.")
    delivery.add_argument("name")
    delivery.add_argument("--injixo-configuration-id", metavar="ID",
                          help="injixo's integrationConfigurationId for this integration")
    injixo_key = delivery.add_mutually_exclusive_group()
    injixo_key.add_argument("--injixo-api-key-env", metavar="VAR", help="read the injixo API key from this variable")
    injixo_key.add_argument("--injixo-api-key-file", metavar="PATH", help="read the injixo API key from this file")
    delivery.add_argument("--clear", action="store_true", help="stop delivering this integration's contacts to injixo")
    delivery.add_argument("--json", action="store_true", help="machine-readable output (never the key)")
    status = verbs.add_parser("status", help="is data arriving and delivered? operational, silent, rejecting, "
                                             "freshchat_api_failing or delivery_failing",
                              description="Each integration's health as the ingress and the worker last saw it.")
    status.add_argument("name", nargs="?", help="only this integration")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    add.add_argument("--json", action="store_true", help="print {\"id\", \"ingress_key\"} as JSON")


async def run(args, settings: Settings, out) -> int:
    """Carry out one `integrations` sub-verb, writing its result to out."""
    if args.verb == "add":  # a bad file argument is reported at once, before any wait for the broker
        secrets = _read_api_key(args), _read_public_key(args.webhook_public_key_file)
    if args.verb == "set-delivery":
        injixo = _read_delivery(args)
    if args.verb == "remove" and not args.yes:  # likewise: no broker needed to say what is missing
        raise UsageError(f"'integrations remove {args.name}' deletes the integration, its ingress key and its "
                         "health records for good; add --yes to confirm")
    await wait_for_broker(settings, timeout=min(5, settings.broker_wait_seconds))
    await ensure_topics(settings)
    registry = await load_integrations(settings)
    if args.verb == "list":
        views = [i.public_view() for i in registry.all()]
        out(orjson.dumps(views).decode() if args.json else _table(views))
        return 0
    if args.verb == "add":
        return await _add(args, settings, registry, out, *secrets)
    if args.verb == "status":
        return await _status(args, settings, registry, out)
    integration = registry.get(args.name)
    if integration is None:
        raise IntegrationError(f"no integration named {args.name!r}; 'freshstream integrations list' shows them")
    if args.verb == "show":
        view = integration.public_view()
        out(orjson.dumps(view).decode() if args.json else "\n".join(f"{k}: {v}" for k, v in view.items()))
        return 0
    if args.verb == "set-delivery":
        return await _set_delivery(args, settings, integration, out, *injixo)
    if args.verb in ("disable", "enable"):
        return await _set_disabled(args, settings, integration, out)
    if args.verb == "remove":
        return await _remove(args, settings, integration, out)
    if integration.disabled:  # a key issued now would be refused: say so rather than print a dead key
        raise IntegrationError(f"integration {integration.id} is disabled, so a new key would be refused too; "
                               f"run 'freshstream integrations enable {integration.id}' first, then rotate-key")
    key = new_ingress_key()
    await _put(settings, integration.with_key(key))
    _print_key(args, out, integration.id, key, "rotated; the old key no longer works")
    return 0


async def _set_disabled(args, settings: Settings, integration, out) -> int:
    """Idempotent, so a runbook can repeat it: no record is written when nothing changes."""
    disable = args.verb == "disable"
    if integration.disabled == disable:
        text = f"integration {integration.id} is {args.verb}d already; nothing changed"
    else:
        await _put(settings, integration.disable() if disable else integration.enable())
        text = (f"integration {integration.id} disabled: its requests are refused with 401" if disable else
                f"integration {integration.id} enabled: requests with its current ingress key or a valid "
                "signature are accepted again")
    out(orjson.dumps({"id": integration.id, "disabled": disable}).decode() if args.json else text)
    return 0


def _read_delivery(args) -> tuple[str | None, str | None]:
    """(configuration id, API key), both None for --clear: everything a typo can break is
    checked here, before the wait for the broker, so a mistake is one line at once."""
    given = [flag for flag, value in (("--injixo-configuration-id", args.injixo_configuration_id),
                                      ("--injixo-api-key-env", args.injixo_api_key_env),
                                      ("--injixo-api-key-file", args.injixo_api_key_file)) if value is not None]
    if args.clear:
        if given:
            raise UsageError(f"--clear stops delivery to injixo and takes no {' or '.join(given)}; "
                             "drop one or the other")
        return None, None
    if args.injixo_configuration_id is None:
        raise UsageError(f"'integrations set-delivery {args.name}' needs --injixo-configuration-id ID (the "
                         "integrationConfigurationId injixo shows for the integration), or --clear to stop delivery")
    configuration_id = args.injixo_configuration_id.strip()
    if not configuration_id:
        raise UsageError("--injixo-configuration-id is empty: give injixo's integrationConfigurationId")
    if not configuration_id.isprintable() or any(c.isspace() for c in configuration_id):
        raise UsageError(f"--injixo-configuration-id {configuration_id!r} has spaces or control characters; "
                         "an integrationConfigurationId has none (a paste error?)")
    if args.injixo_api_key_env:
        flag = f"--injixo-api-key-env {args.injixo_api_key_env}"
        key = os.environ.get(args.injixo_api_key_env, "").strip()
        if not key:
            raise UsageError(f"{flag}: that variable is unset or empty")
    elif args.injixo_api_key_file:
        flag = f"--injixo-api-key-file {args.injixo_api_key_file}"
        key = _read_text(args.injixo_api_key_file, "--injixo-api-key-file").strip()
        if not key:
            raise UsageError(f"{flag}: the file is empty")
    else:
        raise UsageError("set-delivery needs the injixo API key from --injixo-api-key-env VAR or "
                         "--injixo-api-key-file PATH (never on the command line, where ps would show it)")
    if not (key.isascii() and key.isprintable()) or any(c.isspace() for c in key):
        # said without the key: it goes into an HTTP header, which cannot carry these
        raise UsageError(f"{flag}: the key has spaces, control or non-ASCII characters, so it cannot be "
                         "the injixo API key (a paste error?)")
    return configuration_id, key


async def _set_delivery(args, settings: Settings, integration: Integration, out,
                        configuration_id: str | None, key: str | None) -> int:
    """Always written, even when nothing seems to change: the record changing is what tells a
    sink that stopped on a 401 to try again, so re-running it is how delivery is resumed."""
    name = integration.id
    if configuration_id is None:
        if not integration.delivers_to_injixo and integration.injixo_configuration_id is None:
            text = f"integration {name} does not deliver to injixo; nothing changed"
        else:
            await _put(settings, integration.with_injixo(None, None))
            text = (f"integration {name} no longer delivers to injixo; a running 'freshstream deliver injixo' "
                    "stops posting its contacts within seconds (no restart)")
    else:
        key_enc = load_cipher(settings).encrypt(key.encode()).decode()
        await _put(settings, integration.with_injixo(configuration_id, key_enc))
        text = (f"integration {name} delivers to injixo configuration {configuration_id}; a running "
                "'freshstream deliver injixo' picks it up within seconds (no restart)")
    out(orjson.dumps({"id": name, "injixo_configuration_id": configuration_id,
                      "injixo_api_key": "set" if key else "not set"}).decode() if args.json else text)
    return 0


async def _remove(args, settings: Settings, integration, out) -> int:
    """A tombstone on the integrations topic, then tombstones for its health records.

    The integration goes first: should the second step fail, nothing accepts its requests
    any more, and the stale health records are harmless (status and /metrics report only
    integrations that exist) until a remove of the re-added name, or compaction, clears them.
    """
    async with IntegrationStore(settings) as store:
        await store.remove(integration.id)
    cleared = await forget_health(settings, integration.id)
    out(orjson.dumps({"id": integration.id, "removed": True, "health_records_removed": cleared}).decode()
        if args.json else
        f"integration {integration.id} removed: its URL answers 401 like an unknown one; "
        f"{cleared} health record(s) cleared; its raw events and contacts stay on their topics")
    return 0


async def _add(args, settings: Settings, registry, out, api_key: str | None, pem: str | None) -> int:
    if registry.get(args.name) is not None:
        raise IntegrationError(f"an integration named {args.name!r} exists already; "
                               "use 'rotate-key' for a new key or pick another name")
    api_key_enc = load_cipher(settings).encrypt(api_key.encode()).decode() if api_key else None
    key = new_ingress_key()
    integration = new_integration(args.name, args.domain, key, api_key_enc=api_key_enc, webhook_public_key=pem)
    await _put(settings, integration)
    _print_key(args, out, integration.id, key, "added")
    return 0


async def _status(args, settings: Settings, registry, out) -> int:
    integrations = registry.all()
    if args.name is not None:
        integrations = [i for i in integrations if i.id == args.name]
        if not integrations:
            raise IntegrationError(f"no integration named {args.name!r}; 'freshstream integrations list' shows them")
    view = await load_health(settings)
    reports = [assess(i, view.records(i.id), settings) for i in integrations]
    out(orjson.dumps(reports).decode() if args.json else health_table(reports, settings))
    return 0


def health_table(reports: list[dict], settings: Settings) -> str:
    """A table, then one sentence per problem saying what to check."""
    if not reports:
        return "no integrations yet: add one with 'freshstream integrations add NAME --domain DOMAIN'"
    rows = [("ID", "STATUS", "LAST ACCEPTED", "LAST REJECT", "FRESHCHAT API", "DELIVERY")]
    rows += [(r["id"], r["status"], r["last_accepted_at"] or "never",
              f"{r['last_reject_at']} ({r['last_reject']['status']} {r['last_reject']['error']})"
              if r["last_reject"] else "never", r["freshchat_api"]["state"],
              r["delivery"]["state"].replace("_", " ")) for r in reports]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    for report in reports:
        lines += [f"{report['id']}: {_advice(problem, report, settings)}" for problem in report["problems"]]
    return "\n".join(lines)


def _advice(problem: str, report: dict, settings: Settings) -> str:
    if problem == "rejecting":
        return (f"{report['recent_auth_failures']} request(s) refused with 401 in the last "
                f"{settings.health_reject_window_seconds / 60:g} min: something posts with a wrong or rotated "
                "ingress key, or an invalid signature. Give the Marketplace app the current key "
                f"('freshstream integrations rotate-key {report['id']}' issues a new one) or check the webhook public key.")
    if problem == "freshchat_api_failing":
        return f"Freshchat's REST API fails: {report['freshchat_api'].get('error')}"
    if problem == "delivery_failing":
        return _delivery_advice(report)
    return (f"no event accepted for {settings.health_silent_seconds / 60:g} min or more: check that the "
            f"Freshchat webhook or Marketplace app is installed and posts to /webhooks/freshchat/{report['id']}.")


def _delivery_advice(report: dict) -> str:
    """What the operator does depends on who failed: the key (only a new one helps), injixo
    (the sink retries by itself) or the way there (URL, network)."""
    name, delivery = report["id"], report["delivery"]
    if delivery["state"] == "not_running":
        since = delivery.get("last_report_at")
        return (f"no 'freshstream deliver injixo' has reported for {name} "
                f"{f'since {since}' if since else 'since delivery was configured'}: start one (docs/delivery.md); "
                "its contacts wait on the contacts topic and none is lost meanwhile")
    failure = delivery.get("last_failure") or {}
    status, error = failure.get("status"), failure.get("error") or "no detail"
    waiting = (f"{delivery['backlog']} contact(s) wait, the oldest since {delivery['backlog_oldest_at']}"
               if delivery.get("backlog") else "no contact waits yet")
    if delivery["state"] == "stopped" or status in (401, 403):
        what = ("the injixo API key was revoked or mistyped" if status != 403 else
                "the injixo API key is not valid for this integration's configuration id")
        return (f"injixo answered {status or '401/403'}: {what}, so posting for {name} is stopped; run "
                f"'freshstream integrations set-delivery {name} --injixo-configuration-id "
                f"{delivery.get('configuration_id') or 'ID'} --injixo-api-key-env VAR' with a valid key "
                f"(the sink resumes without a restart); {waiting}")
    if status is None:
        return (f"cannot reach injixo at {delivery.get('url')} ({error}); check the URL ('deliver injixo --url' "
                f"or FRESHSTREAM_INJIXO_URL) and the network; the sink retries with backoff; {waiting}")
    if status == 429 or status >= 500:
        return f"injixo answered {status} ({error}); the sink retries with backoff; {waiting}"
    return (f"injixo answered {status} ({error}): it refuses what the sink posts; the 'freshstream deliver "
            f"injixo' log says more; {waiting}")


def _print_key(args, out, name: str, key: str, what: str) -> None:
    if args.json:
        out(orjson.dumps({"id": name, "ingress_key": key}).decode())
        return
    out(f"integration {name} {what}.\n"
        f"ingress key (shown once; store it now): {key}\n"
        f"webhook URL path: /webhooks/freshchat/{name}")


def _read_api_key(args) -> str | None:
    if args.freshchat_api_key_env:
        value = os.environ.get(args.freshchat_api_key_env, "").strip()
        if not value:
            raise UsageError(f"--freshchat-api-key-env {args.freshchat_api_key_env}: that variable is unset or empty")
        return value
    if args.freshchat_api_key_file:
        return _read_text(args.freshchat_api_key_file, "--freshchat-api-key-file").strip() or None
    return None


def _read_public_key(path: str | None) -> str | None:
    if not path:
        return None
    text = _read_text(path, "--webhook-public-key-file")
    try:
        load_public_key(text)
    except PublicKeyError as exc:
        raise UsageError(f"--webhook-public-key-file {path}: {exc}") from None
    return text.strip()


def _read_text(path: str, flag: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{flag} {path}: not a text file") from None


async def _put(settings: Settings, integration) -> None:
    async with IntegrationStore(settings) as store:
        await store.put(integration)


def _table(views: list[dict]) -> str:
    if not views:
        return "no integrations yet: add one with 'freshstream integrations add NAME --domain DOMAIN'"
    rows = [("ID", "DOMAIN", "STATUS", "API KEY", "WEBHOOK KEY", "DELIVERY")]
    rows += [(v["id"], v["domain"], "disabled" if v["disabled"] else "enabled",
              v["freshchat_api_key"], v["webhook_public_key"], v["injixo_delivery"]) for v in views]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
