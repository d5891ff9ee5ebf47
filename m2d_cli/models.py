"""m2d models list | show | register | set-default | alias | retire — the portal's model store."""

from __future__ import annotations

import json
from pathlib import Path

from .client import Portal


class UsageError(RuntimeError):
    pass


def _version_line(version: dict) -> str:
    label = f" ({version['label']})" if version.get("label") else ""
    aliases = ", ".join(version.get("aliases") or [])
    tags = f"  [{aliases}]" if aliases else ""
    created = (version.get("created_at") or "")[:16].replace("T", " ")
    return f"{version['version']:>4}{label:<12} {version.get('state', ''):<10} {created:<16}{tags}"


def _print_version(version: dict) -> None:
    label = f" ({version['label']})" if version.get("label") else ""
    print(f"{version['name']} version {version['version']}{label}: {version.get('state', '')}")
    if version.get("aliases"):
        print(f"Aliases: {', '.join(version['aliases'])}")
    if version.get("submission") is not None:
        by = f" by {version['created_by']}" if version.get("created_by") else ""
        print(f"From: submission {version['submission']}, registered {(version.get('created_at') or '')[:10]}{by}")
    files = version.get("files") or []
    if files:
        print("Files:")
        for entry in files:
            print(f"  {entry['size']:>12,}  {entry['path']}  sha256 {entry['sha256'][:16]}…")
    metrics = version.get("metrics") or {}
    if metrics:
        width = max(len(key) for key in metrics)
        print("Metrics:")
        for key, value in sorted(metrics.items()):
            shown = f"{value:.6g}" if isinstance(value, int | float) else str(value)
            print(f"  {key:<{width}}  {shown}")
    card = version.get("card") or {}
    for key, title in (("summary", "Summary"), ("intended_use", "Intended use"), ("entrypoint", "Entrypoint")):
        if card.get(key):
            print(f"{title}: {card[key]}")
    if version.get("provenance_url"):
        print(f"Provenance: {version['provenance_url']}")


def cmd_list(portal: Portal, args) -> int:
    models, token = portal.models()
    while args.all_pages and token:
        more, token = portal.models(next_page_token=token)
        models += more
    if not models:
        print("No models you may see yet. `m2d models register` adds one from a released export.")
        return 0
    print(f"{'NAME':<32}  {'DEFAULT':>7}  {'OWNER':<16}  {'DATA SET':<10}  {'TASK':<20}  VISIBILITY")
    for model in models:
        default = model.get("default_version")
        print(
            f"{model['name']:<32}  {'' if default is None else default:>7}  {model.get('owner', ''):<16}  "
            f"{model.get('dataset', ''):<10}  {model.get('task', ''):<20}  {model.get('visibility', '')}"
        )
    if token:
        print(f"More models follow; --all-pages lists them all (next page token {token}).")
    return 0


def _page(portal: Portal, name: str, number=None) -> str:
    return f"{portal.base}/models/{name}/" + (f"?version={number}" if number is not None else "")


def cmd_show(portal: Portal, args) -> int:
    if args.version:
        version = portal.model_version(args.name, args.version)  # a number or an alias
        _print_version(version)
        print(f"Page: {_page(portal, version['name'], version['version'])}")
        return 0
    model = portal.model(args.name)
    default = model.get("default_version")
    print(f"{model['name']}  (owner {model.get('owner', '')}, {model.get('dataset', '')} / {model.get('task', '')})")
    print(f"Visible to: {model.get('visibility', '')}")
    if default is not None:
        print(f"Default version: {default}")
    aliases = model.get("aliases") or {}
    others = {name: number for name, number in aliases.items() if name != "default"}
    if others:
        print("Aliases: " + ", ".join(f"{name} → {number}" for name, number in sorted(others.items())))
    versions = model["versions"] if "versions" in model else portal.model_versions(args.name)
    if versions:
        print("Versions:")
        for version in versions:
            print(_version_line(version))
    print(f"Page: {_page(portal, model['name'])}")
    return 0


def _card(path: str | None) -> dict | None:
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{file}: no such file. --card takes a JSON file holding the model card's fields.")
    try:
        card = json.loads(file.read_text())
    except ValueError as exc:
        raise UsageError(f"{file} is not valid JSON: {exc}") from exc
    if not isinstance(card, dict):
        raise UsageError(f"{file} must hold a JSON object (the card's fields), not {type(card).__name__}.")
    return card


def cmd_register(portal: Portal, args) -> int:
    body: dict = {"name": args.name, "source": {"submission": args.submission, "paths": args.paths}}
    if args.label:
        body["label"] = args.label
    if args.visibility:
        body["visibility"] = args.visibility
    card = _card(args.card)
    if card is not None:
        body["card"] = card
    version = portal.model_register(body)
    print(f"Registered {version['name']} version {version['version']}.")
    _print_version(version)
    print(f"Page: {_page(portal, version['name'], version['version'])}")
    return 0


def cmd_set_default(portal: Portal, args) -> int:
    portal.model_set_default(args.name, args.version)
    print(f"{args.name}: version {args.version} is now the default.")
    return 0


def cmd_alias(portal: Portal, args) -> int:
    if args.delete:
        portal.model_alias_delete(args.name, args.alias)
        print(f"{args.name}: alias {args.alias} deleted.")
        return 0
    if args.version is None:
        raise UsageError("Give the version the alias points to, e.g. `m2d models alias clam-malignancy best 3`.")
    portal.model_alias_set(args.name, args.alias, args.version)
    print(f"{args.name}: {args.alias} → version {args.version}.")
    return 0


def cmd_retire(portal: Portal, args) -> int:
    portal.model_retire(args.name, args.version)
    print(f"{args.name} version {args.version} retired: nothing answers with it any more; its files stay for audit.")
    return 0


def add_parser(commands) -> None:
    models = commands.add_parser("models", help="the model store: list, show, register, set-default, alias, retire")
    sub = models.add_subparsers(dest="models_command", required=True)
    listing = sub.add_parser("list", help="the models you may see, with their default version")
    listing.add_argument("--all-pages", action="store_true", help="follow the pages to the end")
    listing.set_defaults(run=cmd_list)
    show = sub.add_parser("show", help="a model and its versions, or one version with its files and card")
    show.add_argument("name", metavar="NAME")
    show.add_argument("version", nargs="?", help="a version number or an alias")
    show.set_defaults(run=cmd_show)
    register = sub.add_parser(
        "register", help="register released files of your submission as the next version of a model"
    )
    register.add_argument("submission", type=int, metavar="SUBMISSION_ID")
    register.add_argument("name", metavar="NAME", help="<dataset>-<task>, e.g. clam-malignancy")
    register.add_argument("paths", nargs="+", metavar="PATH", help="released files or a folder (model/)")
    register.add_argument("--label", help="your name for the version, e.g. 1.0")
    register.add_argument("--visibility", choices=["private", "approved", "signed_in"])
    register.add_argument("--card", metavar="FILE", help="a JSON file of card fields over the released m2d-model.json")
    register.set_defaults(run=cmd_register)
    default = sub.add_parser("set-default", help="make a version the one that answers for the model")
    default.add_argument("name")
    default.add_argument("version", type=int)
    default.set_defaults(run=cmd_set_default)
    alias = sub.add_parser("alias", help="point an alias (e.g. best) at a version, or --delete it")
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version", type=int, nargs="?")
    alias.add_argument("--delete", action="store_true")
    alias.set_defaults(run=cmd_alias)
    retire = sub.add_parser("retire", help="retire a version (the default goes last)")
    retire.add_argument("name")
    retire.add_argument("version", type=int)
    retire.set_defaults(run=cmd_retire)
