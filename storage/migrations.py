"""The schema, as numbered migrations (sqlite-utils ``Migrations``).

Never edit a migration that has shipped: add the next one. ``fora`` applies pending
migrations when it opens a node's database, so upgrading is: stop, install, start.
"""

from __future__ import annotations

import json
import sqlite3

from sqlite_utils import Database, Migrations

__all__ = ["REBUILD_KEY", "migrations", "request_rebuild"]

migrations = Migrations("fora")

#: The ``settings`` key that asks for the derived state to be rebuilt from the messages.
REBUILD_KEY = "rebuild_derived"


def request_rebuild(conn: sqlite3.Connection) -> None:
    """Ask for the derived state to be built again from the messages held, once every
    pending migration has run (``storage.database.open_database`` does it).

    A migration never derives itself: the derivation code writes today's schema, which a
    migration in the middle of an upgrade does not have yet. m003 and m004 rebuilt in
    place until m009 changed what the derivation writes; they now ask for it instead,
    which leaves a database in the same state once it is opened."""
    conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, '1')", (REBUILD_KEY,))


def _execute_each(conn: sqlite3.Connection, script: str) -> None:
    """Run the statements of ``script`` (separated by ``;``) one at a time, inside the
    migration's transaction (``executescript`` would commit it first)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


@migrations()
def m001_messages(db: Database) -> None:
    # Every message this node holds, as its exact bytes plus the columns that the
    # views, sync and queries need. seq is arrival order on this node (exports and
    # pushes follow it); sec is ts // 1000, the reconciliation timestamp.
    db.table("messages").create(
        {
            "seq": int,
            "id": bytes,
            "community": bytes,
            "author": bytes,
            "kind": str,
            "ts": int,
            "sec": int,
            "refs": bytes,
            "has_body": int,
            "raw": bytes,
            "received_at": int,
        },
        pk="seq",
        not_null={
            "id",
            "community",
            "author",
            "kind",
            "ts",
            "sec",
            "refs",
            "has_body",
            "raw",
            "received_at",
        },
        strict=True,
    )
    db.table("messages").create_index(["id"], unique=True, index_name="messages_id")
    # Ordered exactly like Negentropy items: (timestamp in seconds, id), per community.
    db.table("messages").create_index(["community", "sec", "id"], index_name="messages_reconcile")
    db.table("messages").create_index(["community", "kind", "ts"], index_name="messages_kind")
    db.table("messages").create_index(["author", "ts"], index_name="messages_author")
    # Which message refers to which (refs[0] is the primary target, position 0).
    db.table("message_refs").create(
        {"ref": bytes, "id": bytes, "position": int},
        pk=("ref", "id", "position"),
        strict=True,
    )
    # Erase messages by target, kept even when the target has not arrived yet, so the
    # target's body is dropped on arrival and never comes back through sync.
    db.table("erasures").create(
        {"target": bytes, "erase_id": bytes, "author": bytes},
        pk=("target", "erase_id"),
        strict=True,
    )
    # Local-only node settings (never synced).
    db.table("settings").create({"key": str, "value": str}, pk="key", strict=True)


@migrations()
def m002_peers_and_follows(db: Database) -> None:
    # Per-community newest arrival: tells the in-memory reconciliation cache whether it
    # is stale, in O(log n), whichever process wrote.
    db.table("messages").create_index(["community", "seq"], index_name="messages_community_seq")
    # Communities this node holds besides its own (local-only, never synced).
    db.table("follows").create(
        {"community": bytes, "added_at": int, "via": str},
        pk="community",
        not_null={"added_at", "via"},
        strict=True,
    )
    # Peers: other nodes this one syncs with. community is pinned when the peer is
    # added; a peer that later presents another id is refused.
    db.table("peers").create(
        {
            "url": str,
            "community": bytes,
            "name": str,
            "kind": str,  # manual | lan
            "added_at": int,
            "last_attempt": int,
            "last_success": int,
            "state": str,  # new | ok | failing | refused
            "last_error": str,
            "failures": int,
            "next_attempt": int,
            "received": int,
            "sent": int,
        },
        pk="url",
        not_null={"kind", "added_at", "state", "failures", "next_attempt", "received", "sent"},
        defaults={
            "state": "new",
            "failures": 0,
            "next_attempt": 0,
            "received": 0,
            "sent": 0,
            "name": "",
            "last_error": "",
        },
        strict=True,
    )


@migrations()
def m003_civic(db: Database) -> None:
    # Derived state (docs/civic.md): a function of the messages held, rebuilt below for
    # a database that holds messages already. Never synced.
    conn = db.conn
    schema = """
        -- Each message's verdict: was its author allowed to publish it (roles at ts)?
        CREATE TABLE message_auth (
            id BLOB PRIMARY KEY, authorized INTEGER NOT NULL, reason TEXT NOT NULL
        ) STRICT;
        -- Each grant message of each community, replayed in (ts, id) order.
        CREATE TABLE role_grants (
            grant_id BLOB PRIMARY KEY, community BLOB NOT NULL, member BLOB NOT NULL,
            role TEXT NOT NULL, start_ts INTEGER NOT NULL, end_ts INTEGER,
            author BLOB NOT NULL, status TEXT NOT NULL
        ) STRICT;
        CREATE INDEX role_grants_member ON role_grants (community, member);
        CREATE INDEX role_grants_known ON role_grants (member, status);
        -- Messages of unknown authors kept as skeletons over the quota.
        CREATE TABLE quota_skeletons (id BLOB PRIMARY KEY, author BLOB NOT NULL) STRICT;
        CREATE INDEX quota_skeletons_author ON quota_skeletons (author);
        -- Decoded bodies of the known kinds (JSON, bin as hex), dropped on erasure.
        CREATE TABLE bodies (
            id BLOB PRIMARY KEY, kind TEXT NOT NULL, community BLOB NOT NULL,
            author BLOB NOT NULL, ts INTEGER NOT NULL, ref0 BLOB, edit_of BLOB,
            fields TEXT NOT NULL
        ) STRICT;
        CREATE INDEX bodies_edit_of ON bodies (edit_of) WHERE edit_of IS NOT NULL;
        CREATE TABLE things (
            id BLOB PRIMARY KEY, kind TEXT NOT NULL, community BLOB NOT NULL,
            author BLOB NOT NULL, ts INTEGER NOT NULL, parent BLOB, status TEXT NOT NULL,
            reason TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL, lang TEXT NOT NULL,
            fields TEXT, version_id BLOB NOT NULL, version_ts INTEGER NOT NULL,
            versions INTEGER NOT NULL, closes INTEGER, scope TEXT,
            comments INTEGER NOT NULL DEFAULT 0
        ) STRICT;
        CREATE INDEX things_list ON things (community, kind, status, ts);
        CREATE INDEX things_parent ON things (parent, kind, status, ts);
        CREATE INDEX things_author ON things (author, ts);
        CREATE TABLE topic_tags (tag TEXT NOT NULL, topic BLOB NOT NULL,
            PRIMARY KEY (tag, topic)) STRICT;
        CREATE INDEX topic_tags_topic ON topic_tags (topic);
        CREATE VIRTUAL TABLE search USING fts5 (
            title, text,
            tokenize='unicode61 remove_diacritics 2'
        );
        CREATE TABLE ballots (
            vote_id BLOB PRIMARY KEY, proposal BLOB NOT NULL, voter BLOB NOT NULL,
            community BLOB NOT NULL, ts INTEGER NOT NULL, choice TEXT,
            status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT ''
        ) STRICT;
        CREATE INDEX ballots_voter ON ballots (proposal, voter);
        CREATE INDEX ballots_status ON ballots (proposal, status, choice);
        CREATE INDEX ballots_by_voter ON ballots (voter, ts);
        CREATE TABLE proposal_counts (
            proposal BLOB PRIMARY KEY, yes INTEGER NOT NULL, no INTEGER NOT NULL,
            abstain INTEGER NOT NULL, support_yes INTEGER NOT NULL,
            support_no INTEGER NOT NULL, support_abstain INTEGER NOT NULL,
            blocked TEXT NOT NULL
        ) STRICT;
        CREATE TABLE tallies (
            tally_id BLOB PRIMARY KEY, proposal BLOB NOT NULL, status TEXT NOT NULL,
            detail TEXT NOT NULL
        ) STRICT;
        CREATE INDEX tallies_proposal ON tallies (proposal);
        CREATE TABLE modlog (
            action_id BLOB PRIMARY KEY, target BLOB NOT NULL, community BLOB,
            moderator BLOB NOT NULL, action TEXT NOT NULL, reason TEXT, ts INTEGER NOT NULL,
            effective INTEGER NOT NULL, why TEXT NOT NULL
        ) STRICT;
        CREATE INDEX modlog_community ON modlog (community, ts);
        CREATE TABLE moderation (
            target BLOB PRIMARY KEY, hidden INTEGER NOT NULL, action_id BLOB
        ) STRICT;
        CREATE TABLE profiles (
            community BLOB PRIMARY KEY, profile_id BLOB NOT NULL, ts INTEGER NOT NULL,
            fields TEXT NOT NULL
        ) STRICT;
        """
    _execute_each(conn, schema)
    request_rebuild(conn)


@migrations()
def m004_petitions_surveys(db: Database) -> None:
    # Signatures and survey answers (docs/civic.md), derived like ballots; built below
    # from the messages already held.
    conn = db.conn
    schema = """
        CREATE TABLE signatures (
            sign_id BLOB PRIMARY KEY, petition BLOB NOT NULL, signer BLOB NOT NULL,
            community BLOB NOT NULL, ts INTEGER NOT NULL, status TEXT NOT NULL,
            reason TEXT NOT NULL
        ) STRICT;
        CREATE INDEX signatures_signer ON signatures (petition, signer);
        CREATE INDEX signatures_status ON signatures (petition, status);
        CREATE INDEX signatures_by_signer ON signatures (signer, ts);
        CREATE TABLE petition_counts (
            petition BLOB PRIMARY KEY, signatures INTEGER NOT NULL, support INTEGER NOT NULL,
            goal INTEGER, blocked TEXT NOT NULL
        ) STRICT;
        CREATE TABLE survey_answers (
            answer_id BLOB PRIMARY KEY, survey BLOB NOT NULL, member BLOB NOT NULL,
            community BLOB NOT NULL, ts INTEGER NOT NULL, status TEXT NOT NULL,
            reason TEXT NOT NULL
        ) STRICT;
        CREATE INDEX survey_answers_member ON survey_answers (survey, member);
        CREATE INDEX survey_answers_status ON survey_answers (survey, status);
        CREATE TABLE survey_results (
            survey BLOB PRIMARY KEY, respondents INTEGER NOT NULL, results TEXT NOT NULL,
            blocked TEXT NOT NULL
        ) STRICT;
        """
    _execute_each(conn, schema)
    request_rebuild(conn)


@migrations()
def m005_panels(db: Database) -> None:
    # Panels drawn by lot (storage/panels.py, docs/civic.md): per panel the roll check
    # and the status of the draw that counts; per draw its status. Built below from the
    # messages already held.
    conn = db.conn
    schema = """
        CREATE TABLE panels (
            panel BLOB PRIMARY KEY, community BLOB NOT NULL, author BLOB NOT NULL,
            ts INTEGER NOT NULL, topic BLOB, status TEXT NOT NULL, reason TEXT NOT NULL,
            name TEXT NOT NULL, seats INTEGER, roll_check TEXT NOT NULL, eligible INTEGER,
            roll_here BLOB, draw BLOB, draw_status TEXT NOT NULL, detail TEXT NOT NULL
        ) STRICT;
        CREATE INDEX panels_community ON panels (community, status, ts);
        CREATE INDEX panels_topic ON panels (topic) WHERE topic IS NOT NULL;
        CREATE TABLE draws (
            draw_id BLOB PRIMARY KEY, panel BLOB NOT NULL, status TEXT NOT NULL,
            detail TEXT NOT NULL
        ) STRICT;
        CREATE INDEX draws_panel ON draws (panel);
        """
    _execute_each(conn, schema)
    from .panels import Touched, refresh

    panels = {
        row[0] if row[1] == "panel" else row[2][:32]
        for row in conn.execute(
            "SELECT id, kind, refs FROM messages WHERE kind IN ('panel', 'draw')"
        )
    }
    refresh(conn, Touched(panels=panels))


@migrations()
def m007_accounts(db: Database) -> None:
    # Resident accounts of the web view (storage/accounts.py): local to this node, never
    # synced. name_key is the name as compared (NFKC, case, look-alikes folded); the
    # password record holds the scrypt parameters and salt (web/keys.py), sealed_key
    # the resident's Ed25519 key encrypted under a key derived from the password.
    conn = db.conn
    schema = """
        CREATE TABLE accounts (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL UNIQUE,
            display_name TEXT NOT NULL,
            password TEXT NOT NULL,
            sealed_key BLOB NOT NULL,
            public_key BLOB NOT NULL UNIQUE,
            status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
            created INTEGER NOT NULL,
            decided_at INTEGER,
            decided_by BLOB,
            grant_id BLOB
        ) STRICT;
        CREATE INDEX accounts_status ON accounts (status, created);
        """
    _execute_each(conn, schema)


@migrations()
def m008_web_indexes(db: Database) -> None:
    # The web view's home and federation pages: topics of one scope newest first, and a
    # community's proposals by their close (the "closing soon" list).
    db.conn.execute(
        "CREATE INDEX things_scope ON things (community, kind, scope, status, ts)"
        " WHERE scope IS NOT NULL"
    )
    db.conn.execute(
        "CREATE INDEX things_closes ON things (community, kind, status, closes)"
        " WHERE closes IS NOT NULL"
    )


@migrations()
def m009_lean_writes(db: Database) -> None:
    # Fewer b-trees written per message (docs/civic.md, "What a message costs the
    # writer"). Votes are most of a large forum's messages and land at random places in
    # every index keyed by an id or a proposal, so each b-tree less is about one page
    # less written per vote:
    # - each message's verdict moves into two columns of ``messages``: the row is
    #   written in the same transaction anyway (its page is dirty already) and the
    #   ``message_auth`` table with its id index goes; ``message_auth`` stays as a view,
    #   so every reader is unchanged;
    # - ``ballots`` becomes one b-tree clustered by (proposal, voter, ts, vote_id)
    #   instead of a table and four indexes: a proposal's ballots and a voter's ballots
    #   on it are found by that key; a ballot by its id through its message (the vote's
    #   proposal, author and ts); a member's ballots through ``messages_author``.
    conn = db.conn
    schema = """
        ALTER TABLE messages ADD COLUMN authorized INTEGER;
        ALTER TABLE messages ADD COLUMN auth_reason TEXT;
        UPDATE messages SET authorized = a.authorized, auth_reason = a.reason
            FROM message_auth a WHERE a.id = messages.id;
        DROP TABLE message_auth;
        CREATE VIEW message_auth (id, authorized, reason) AS
            SELECT id, authorized, auth_reason FROM messages WHERE authorized IS NOT NULL;
        CREATE TABLE ballots_clustered (
            proposal BLOB NOT NULL, voter BLOB NOT NULL, ts INTEGER NOT NULL,
            vote_id BLOB NOT NULL, community BLOB NOT NULL, choice TEXT,
            status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (proposal, voter, ts, vote_id)
        ) STRICT, WITHOUT ROWID;
        INSERT INTO ballots_clustered (proposal, voter, ts, vote_id, community, choice,
            status, reason)
            SELECT proposal, voter, ts, vote_id, community, choice, status, reason
            FROM ballots;
        DROP TABLE ballots;
        ALTER TABLE ballots_clustered RENAME TO ballots
        """
    _execute_each(conn, schema)


@migrations()
def m010_leaner_views(db: Database) -> None:
    # Fewer pages written per message on a large store (docs/civic.md, "What a message
    # costs the writer"). A random insert into a b-tree whose pages are nearly full
    # rebalances the page with its siblings (three or four pages written instead of one)
    # about as often as its cells are large, and votes insert at random places:
    # - ``ballots`` loses its ``community`` column (32 bytes of its 155 a row): a ballot's
    #   community is its vote message's, read through the join to ``messages`` that
    #   judging a ballot makes anyway;
    # - ``proposal_counts`` becomes one b-tree keyed by the proposal (a rowid table had
    #   a second, its primary key's index, written on every count change);
    # - ``things_list`` leaves comments out: comments are listed by their parent
    #   (``things_parent``) or author, never by community and kind, and they are most
    #   of the things of a forum. A query that lists by community and kind says
    #   ``kind != 'comment'`` so that SQLite can use the partial index.
    conn = db.conn
    schema = """
        CREATE TABLE ballots_lean (
            proposal BLOB NOT NULL, voter BLOB NOT NULL, ts INTEGER NOT NULL,
            vote_id BLOB NOT NULL, choice TEXT,
            status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (proposal, voter, ts, vote_id)
        ) STRICT, WITHOUT ROWID;
        INSERT INTO ballots_lean (proposal, voter, ts, vote_id, choice, status, reason)
            SELECT proposal, voter, ts, vote_id, choice, status, reason FROM ballots;
        DROP TABLE ballots;
        ALTER TABLE ballots_lean RENAME TO ballots;
        CREATE TABLE proposal_counts_lean (
            proposal BLOB PRIMARY KEY, yes INTEGER NOT NULL, no INTEGER NOT NULL,
            abstain INTEGER NOT NULL, support_yes INTEGER NOT NULL,
            support_no INTEGER NOT NULL, support_abstain INTEGER NOT NULL,
            blocked TEXT NOT NULL
        ) STRICT, WITHOUT ROWID;
        INSERT INTO proposal_counts_lean SELECT proposal, yes, no, abstain, support_yes,
            support_no, support_abstain, blocked FROM proposal_counts;
        DROP TABLE proposal_counts;
        ALTER TABLE proposal_counts_lean RENAME TO proposal_counts;
        DROP INDEX things_list;
        CREATE INDEX things_list ON things (community, kind, status, ts)
            WHERE kind != 'comment'
        """
    _execute_each(conn, schema)


@migrations()
def m011_lean_things(db: Database) -> None:
    # ``things.fields`` no longer repeats what the ``title``, ``text`` and ``lang``
    # columns hold (docs/civic.md, "What a message costs the writer"): a comment's text
    # was written twice in its row. A key is left out when the column gives it back
    # exactly (``storage.views.lean_fields``; ``whole_fields`` puts it back where rows
    # are read): a non-empty string; the title only when there is no ``name``; the text
    # only for kinds whose text comes from one key. NULL when nothing is left. The rules
    # are spelled out here as they were when m011 shipped.
    text_keys = {"survey": "intro", "meeting": "agenda", "report": "reason", "proposal": None}
    encoder = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
    conn = db.conn
    updates: list[tuple[str | None, int]] = []
    for rowid, kind, title, text, lang, stored in conn.execute(
        "SELECT rowid, kind, title, text, lang, fields FROM things WHERE fields IS NOT NULL"
    ):
        fields = json.loads(stored)
        if not isinstance(fields, dict):
            continue
        drop = []
        if type(fields.get("title")) is str and fields["title"] and "name" not in fields:
            drop.append("title")
        key = text_keys.get(kind, "text")
        if key is not None and type(fields.get(key)) is str and fields[key]:
            drop.append(key)
        if type(fields.get("lang")) is str and fields["lang"]:
            drop.append("lang")
        # the columns were written from these keys: leave a key only if they agree
        columns = {"title": title, key: text, "lang": lang}
        drop = [k for k in drop if columns.get(k) == fields[k]]
        if not drop:
            continue
        lean = {k: v for k, v in fields.items() if k not in drop}
        updates.append((encoder.encode(lean) if lean else None, rowid))
    conn.executemany("UPDATE things SET fields = ? WHERE rowid = ?", updates)
    # A member's things are found through ``messages_author`` (a thing's id and author
    # are its first version's message's): ``things_author`` was one more b-tree written
    # at a random place for every new thing, most of them comments.
    conn.execute("DROP INDEX things_author")


@migrations()
def m012_bodies_of_edits_and_events(db: Database) -> None:
    # The first version of a thing (a topic, a proposal, a comment ...) no longer has a
    # ``bodies`` row (docs/civic.md, "What a message costs the writer"): its ``things``
    # row shows its fields and ``messages.raw`` holds them (``views.stored_fields``
    # decodes them when a thing is derived again). The row was one more copy of the
    # text and one more b-tree written at a random place for every comment. Edits keep
    # theirs (found by ``edit_of``), and so do the kinds with no thing (grants, tallies,
    # panels ...). The kinds are spelled out as they were when m012 shipped.
    content_kinds = (
        "comment",
        "infokit",
        "meeting",
        "minutes",
        "petition",
        "proposal",
        "report",
        "story",
        "survey",
        "topic",
    )
    marks = ", ".join("?" * len(content_kinds))
    db.conn.execute(
        f"DELETE FROM bodies WHERE edit_of IS NULL AND kind IN ({marks})",  # noqa: S608
        content_kinds,
    )


@migrations()
def m013_lean_search(db: Database) -> None:
    # The full-text index keeps no copy of the title and text (``content=''``: the
    # ``things`` row has them, and gives them back when an entry is removed) and no
    # sizes (``columnsize=0``: results are ordered by rowid, not ranked): it held a
    # third copy of every comment's text (docs/civic.md, "Search"). Positions stay: a
    # search without them (``detail=none``) took 3 to 4 times as long at full scale.
    _execute_each(
        db.conn,
        """
        DROP TABLE search;
        CREATE VIRTUAL TABLE search USING fts5 (
            title, text,
            content = '', columnsize = 0,
            tokenize = 'unicode61 remove_diacritics 2'
        );
        INSERT INTO search (rowid, title, text)
            SELECT rowid, title, text FROM things WHERE status = 'visible';
        """,
    )


@migrations()
def m014_no_planner_statistics(db: Database) -> None:
    # Until m014 the node ran `PRAGMA optimize` when it closed, which gathers planner
    # statistics (sqlite_stat1) once tables are large. With them SQLite builds a Bloom
    # filter over all of `things` in the recursive query of a comment thread: 45 ms
    # instead of 0.4 on the full-scale store. The queries are written for, and their
    # plans tested with (tests/test_query_plans.py, tests/test_forum_web.py), no
    # statistics: they are dropped, and nothing gathers them any more.
    db.conn.execute("DROP TABLE IF EXISTS sqlite_stat1")
    db.conn.execute("DROP TABLE IF EXISTS sqlite_stat4")
