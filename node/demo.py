"""``fora demo``: three municipalities with sample content, each on its own port.

The demo nodes are ordinary node folders (``fora init`` + signed messages made through
the same code path as ``fora post``), so everything a user sees in the demo is real:
``fora stats``, ``fora verify`` and ``fora export`` work on them too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlite_utils import Database

from protocol import signing
from storage.database import open_database

from .clock import now_ms
from .folder import NodeConfig, load_config
from .publish import add_account, init_node, publish

__all__ = ["DEMO_COMMUNITIES", "create_demo_node", "run_demo", "seed_sample_content"]

DAY_MS = 86_400_000
DEMO_SYNC_INTERVAL = 10.0


@dataclass(frozen=True)
class DemoCommunity:
    slug: str
    name: str
    country: str
    region: str
    lang: str
    about: str
    topics: tuple[tuple[str, str, str], ...]  # title, text, tag
    proposal: tuple[str, str, str]  # title, problem, solution
    story: tuple[str, str]
    comments: tuple[str, ...]
    infokit: tuple[str, str]


DEMO_COMMUNITIES = (
    DemoCommunity(
        "bomarzo",
        "Bomarzo",
        "IT",
        "Lazio",
        "it",
        "Comune di Bomarzo: il forum dei cittadini.",
        (
            ("Scuole", "Come rendere la scuola del paese più sicura e aperta?", "scuola"),
            ("Ambiente", "Il bosco del Parco dei Mostri e la gestione dei rifiuti.", "ambiente"),
        ),
        (
            "Scuolabus elettrico",
            "Il vecchio scuolabus inquina e si guasta spesso.",
            "Acquistare uno scuolabus elettrico con i fondi regionali.",
        ),
        (
            "Il mio primo anno a Bomarzo",
            "Siamo arrivati da Roma con due bambini: ecco cosa abbiamo trovato.",
        ),
        ("D'accordo, ma servono anche le colonnine di ricarica.", "Ottima idea!"),
        ("Emergenza incendi", "Numero unico 112. Punto di raccolta: piazza del Comune."),
    ),
    DemoCommunity(
        "liepaja",
        "Liepāja",
        "LV",
        "Kurzeme",
        "lv",
        "Liepājas iedzīvotāju forums.",
        (
            ("Skolas", "Kā uzlabot skolu pieejamību visiem bērniem?", "izglitiba"),
            ("Vide", "Pludmales tīrīšana un jūras krasta aizsardzība.", "vide"),
        ),
        (
            "Velosipēdu celiņš gar jūru",
            "Gar jūru nav droša velosipēdu ceļa.",
            "Izbūvēt velosipēdu celiņu no centra līdz Ezerkrastam.",
        ),
        ("Mana vasara Liepājā", "Stāsts par brīvprātīgo darbu pludmales tīrīšanā."),
        ("Piekrītu, tas ir ļoti vajadzīgs.", "Laba ideja!"),
        ("Vētras brīdinājums", "Zvaniet 112. Patvertne: Liepājas Olimpiskais centrs."),
    ),
    DemoCommunity(
        "brussels",
        "Bruxelles",
        "BE",
        "Bruxelles-Capitale",
        "fr",
        "Le forum des habitants de Bruxelles.",
        (
            ("Écoles", "Comment accueillir les enfants de toutes les langues ?", "ecole"),
            ("Immigration", "Accueil des nouveaux arrivants dans les communes.", "accueil"),
        ),
        (
            "Cours de langue gratuits",
            "Les nouveaux arrivants attendent des mois pour un cours de langue.",
            "Ouvrir des cours gratuits le soir dans les écoles communales.",
        ),
        ("Mon quartier, mes voisins", "Comment une fête de rue a changé notre quartier."),
        ("Tout à fait d'accord.", "Excellente proposition !"),
        ("Canicule", "Appelez le 112. Salles rafraîchies : maisons communales."),
    ),
)


def seed_sample_content(db: Database, key: Ed25519PrivateKey, demo: DemoCommunity, now: int) -> int:
    """Publish members, topics, a proposal with votes, a story, comments and an info kit.

    Returns how many messages were published.
    """
    community = signing.public_key_bytes(key)
    start = now - 3 * DAY_MS
    ts = iter(range(start, now, 60_000))
    residents = [signing.generate_private_key() for _ in range(4)]
    count = 0

    def pub(
        kind: str,
        fields: dict[str, Any],
        refs: tuple[bytes, ...] = (),
        author: Ed25519PrivateKey = key,
    ) -> bytes:
        nonlocal count
        count += 1
        return publish(db, author, community, kind, fields, refs, next(ts)).id

    for i, resident in enumerate(residents):
        role = "official" if i == 0 else "member"
        pub("grant", {"member": signing.public_key_bytes(resident), "role": role})
    topics = [
        pub(
            "topic",
            {
                "title": title,
                "text": text,
                "lang": demo.lang,
                "tags": [tag],
                "scope": "local" if n == 0 else "european",
            },
            author=residents[1 + n],
        )
        for n, (title, text, tag) in enumerate(demo.topics)
    ]
    title, problem, solution = demo.proposal
    proposal = pub(
        "proposal",
        {
            "title": title,
            "problem": problem,
            "solution": solution,
            "lang": demo.lang,
            "closes": now + 14 * DAY_MS,
        },
        (topics[0],),
        author=residents[1],
    )
    for voter, choice in zip(residents[1:], ("yes", "yes", "no"), strict=True):
        pub("vote", {"choice": choice}, (proposal,), author=voter)
    story_title, story_text = demo.story
    story = pub(
        "story",
        {"title": story_title, "text": story_text, "lang": demo.lang},
        (topics[0],),
        author=residents[2],
    )
    for target, text, author in (
        (proposal, demo.comments[0], residents[3]),
        (story, demo.comments[1], residents[1]),
    ):
        pub("comment", {"text": text, "lang": demo.lang}, (target,), author=author)
    kit_title, kit_text = demo.infokit
    pub(
        "infokit",
        {"title": kit_title, "text": kit_text, "category": "emergency", "lang": demo.lang},
        author=residents[0],
    )
    return count


def create_demo_node(directory: Path, demo: DemoCommunity, port: int) -> NodeConfig:
    """Create (or reuse) one demo node folder with its sample content."""
    if (directory / "config.toml").exists():
        config = load_config(directory)
        config.port = port
        return config
    now = now_ms()
    config, key, _ = init_node(
        directory,
        name=demo.name,
        country=demo.country,
        region=demo.region,
        languages=[demo.lang, "en"],
        about=demo.about,
        port=port,
        ts=now - 4 * DAY_MS,
    )
    db = open_database(config.db_path)
    try:
        seed_sample_content(db, key, demo, now)
        add_demo_accounts(db, key)
    finally:
        db.close()
    return config


#: The demo's web accounts (demo passwords only: never use these on a real node).
DEMO_ACCOUNTS = (("admin", "admin"), ("moderator", "moderator"), ("resident", "member"))
DEMO_PASSWORD = "demo-password"  # noqa: S105 - the demo's, printed at start


def add_demo_accounts(db: Database, key: Ed25519PrivateKey) -> None:
    """An admin, a moderator and a resident on a demo node, all with DEMO_PASSWORD.

    Sealed at a low scrypt cost so the demo starts fast; the first login re-seals them
    at the node's full cost (``web.keys.needs_rehash``)."""
    from web.keys import ScryptParams

    for name, role in DEMO_ACCOUNTS:
        add_account(
            db, key, name=name, password=DEMO_PASSWORD, role=role, params=ScryptParams(n=2**14)
        )


def run_demo(base: Path, base_port: int = 8470) -> None:
    """Create the demo nodes under ``base`` and serve them until Ctrl-C."""
    from aiohttp import web

    from storage.messages import count_messages

    from .app import create_app
    from .appkeys import PEERS, STORE
    from .server import start_site, wait_for_stop

    configs = [
        create_demo_node(base / demo.slug, demo, base_port + i)
        for i, demo in enumerate(DEMO_COMMUNITIES)
    ]

    async def main() -> None:
        runners: list[web.AppRunner] = []
        apps = [create_app(config, sync_interval=DEMO_SYNC_INTERVAL) for config in configs]
        try:
            for app, config in zip(apps, configs, strict=True):
                runners.append(await start_site(app, config.host, config.port))
            urls = [f"http://{c.host}:{c.port}" for c in configs]
            # Every municipality peers with the other two (and so follows them).
            for app, url in zip(apps, urls, strict=True):
                for other in urls:
                    if other != url:
                        await app[PEERS].add(other)
            for app, config in zip(apps, configs, strict=True):
                for other in urls:
                    if other != f"http://{config.host}:{config.port}":
                        await app[PEERS].sync_now(other)
            for app, config, url in zip(apps, configs, urls, strict=True):
                held = await app[STORE].read(count_messages)
                print(f"{config.name:<10} {url}/  ({held} messages from 3 communities)", flush=True)
            names = ", ".join(name for name, _ in DEMO_ACCOUNTS)
            print(
                f"Log in at URL/login as {names}; password {DEMO_PASSWORD!r} (demo only).",
                flush=True,
            )
            print(
                "Demo running: the nodes sync every 10 s and push new messages at once."
                " Ctrl-C stops all three.",
                flush=True,
            )
            await wait_for_stop()
        finally:
            for runner in runners:
                await runner.cleanup()
        print("stopped", flush=True)

    asyncio.run(main())
