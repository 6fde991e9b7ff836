"""The schema's history: small named migrations, each applied once, in order.

Each one returns its statements, spelled with the dialect's column types. The names are
recorded in `schema_migrations`: never rename, edit or reorder one that has shipped; add a
new one at the end.
"""

from __future__ import annotations

from collections.abc import Callable

from looper.models import utcnow
from looper.store.dialect import ColumnTypes, Dialect
from looper.store.errors import SchemaTooNew

EMPTY_JSON = "'{}'"
RECORDED = "SELECT version, name FROM schema_migrations"
SCHEMA_VERSION = "SELECT coalesce(max(version), 0) AS version FROM schema_migrations"


def m001_initial(t: ColumnTypes) -> list[str]:
    return [
        f"""CREATE TABLE assistants (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            instructions TEXT NOT NULL,
            model TEXT,
            created_at {t.time} NOT NULL)""",
        f"""CREATE TABLE threads (
            id TEXT PRIMARY KEY,
            assistant_id TEXT NOT NULL REFERENCES assistants(id),
            chat_completion_model TEXT NOT NULL,
            metadata {t.json} NOT NULL DEFAULT {EMPTY_JSON},
            external_key TEXT UNIQUE,
            created_at {t.time} NOT NULL,
            last_activity {t.time} NOT NULL,
            message_count {t.integer} NOT NULL DEFAULT 0,
            last_user_id {t.integer} NOT NULL DEFAULT 0,
            hwm {t.integer} NOT NULL DEFAULT 0,
            settled {t.integer} NOT NULL DEFAULT 0,
            last_error TEXT,
            reply_upto {t.integer},
            reply_ref TEXT,
            lease_owner TEXT,
            lease_until {t.real})""",
        "CREATE INDEX threads_newest ON threads (created_at)",
        "CREATE INDEX threads_pending ON threads (last_activity) WHERE last_user_id > settled",
        "CREATE INDEX threads_leased ON threads (lease_owner) WHERE lease_owner IS NOT NULL",
        f"""CREATE TABLE messages (
            thread_id TEXT NOT NULL REFERENCES threads(id),
            id {t.integer} NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            content TEXT NOT NULL,
            metadata {t.json} NOT NULL DEFAULT {EMPTY_JSON},
            external_id TEXT,
            created_at {t.time} NOT NULL,
            PRIMARY KEY (thread_id, id))""",
        "CREATE UNIQUE INDEX messages_external ON messages (thread_id, external_id) "
        "WHERE external_id IS NOT NULL",
    ]


def m002_bindings_and_activity(t: ColumnTypes) -> list[str]:
    return [
        """CREATE TABLE bindings (
            place TEXT PRIMARY KEY,
            assistant_id TEXT NOT NULL REFERENCES assistants(id))""",
        "CREATE INDEX threads_activity ON threads (last_activity)",
    ]


def m003_places_and_failures(t: ColumnTypes) -> list[str]:
    """Threads stored before their front end gave them a place (the looper places them), and
    where a thread's latest failure is shown (tidied once the question is answered)."""
    return [
        f"ALTER TABLE threads ADD COLUMN awaiting_place {t.integer} NOT NULL DEFAULT 0",
        "ALTER TABLE threads ADD COLUMN failure_ref TEXT",
        "DROP INDEX threads_pending",
        # The looper's poll reads this index; its condition is `PENDING` in sql.py.
        "CREATE INDEX threads_pending ON threads (last_activity) "
        "WHERE (last_user_id > settled OR awaiting_place = 1)",
    ]


def m004_askers(t: ColumnTypes) -> list[str]:
    """Who asked a thread's newest question (a front end's key), so that the looper can
    take turns between askers."""
    return ["ALTER TABLE threads ADD COLUMN asker TEXT"]


def m005_access(t: ColumnTypes) -> list[str]:
    """Who may ask: a front end's subjects (a user, a channel…), each allowed or denied."""
    return [
        """CREATE TABLE access (
            subject TEXT PRIMARY KEY,
            rule TEXT NOT NULL CHECK (rule IN ('allow', 'deny')))""",
    ]


def m006_assistant_identity(t: ColumnTypes) -> list[str]:
    """How an assistant shows itself (an icon) and the questions it suggests."""
    return [
        "ALTER TABLE assistants ADD COLUMN icon TEXT",
        "ALTER TABLE assistants ADD COLUMN prompts TEXT NOT NULL DEFAULT '[]'",
    ]


def m007_usage_and_limits(t: ColumnTypes) -> list[str]:
    """Where each question was asked; the tokens and cost of each answer (and the questions
    a budget refused); the budgets admins set at run time."""
    return [
        "ALTER TABLE threads ADD COLUMN place TEXT",
        f"""CREATE TABLE usage (
            thread_id TEXT NOT NULL,
            message_id {t.integer} NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ('answered', 'refused')),
            at {t.time} NOT NULL,
            assistant_id TEXT NOT NULL,
            model TEXT NOT NULL,
            asker TEXT,
            place TEXT,
            prompt_tokens {t.integer} NOT NULL DEFAULT 0,
            completion_tokens {t.integer} NOT NULL DEFAULT 0,
            cached_tokens {t.integer} NOT NULL DEFAULT 0,
            counted {t.integer} NOT NULL DEFAULT 0,
            cost_usd {t.real},
            refused TEXT,
            PRIMARY KEY (thread_id, message_id, outcome))""",
        "CREATE INDEX usage_at ON usage (at)",
        "CREATE INDEX usage_asker ON usage (asker, at)",
        "CREATE INDEX usage_place ON usage (place, at)",
        f"CREATE TABLE limits (name TEXT PRIMARY KEY, value {t.real} NOT NULL)",
    ]


def m008_feedback(t: ColumnTypes) -> list[str]:
    """What people said of answers: one vote per answer and person (a second replaces the
    first), with an optional comment, where the answer shows (`message_ref`, `link`) and the
    assistant that gave it."""
    return [
        f"""CREATE TABLE feedback (
            thread_id TEXT NOT NULL REFERENCES threads(id),
            answers {t.integer} NOT NULL,
            person TEXT NOT NULL,
            assistant_id TEXT NOT NULL REFERENCES assistants(id),
            vote TEXT NOT NULL CHECK (vote IN ('up', 'down')),
            comment TEXT,
            message_ref TEXT,
            link TEXT,
            created_at {t.time} NOT NULL,
            updated_at {t.time} NOT NULL,
            PRIMARY KEY (thread_id, answers, person))""",
        "CREATE INDEX feedback_recent ON feedback (updated_at)",
    ]


def m009_message_askers(t: ColumnTypes) -> list[str]:
    """Who asked each question (a front end's key), so that a person's own conversations
    can be listed. Earlier questions learn it where the thread knows it: its newest one."""
    return [
        "ALTER TABLE messages ADD COLUMN asker TEXT",
        "UPDATE messages SET asker = (SELECT t.asker FROM threads t "
        "WHERE t.id = messages.thread_id AND t.last_user_id = messages.id)",
        "CREATE INDEX messages_asker ON messages (asker, thread_id) WHERE asker IS NOT NULL",
    ]


def m010_attachments(t: ColumnTypes) -> list[str]:
    """The files that came with questions, as the model reads them (image data in base64,
    or text), in the order they were attached."""
    return [
        f"""CREATE TABLE attachments (
            thread_id TEXT NOT NULL,
            message_id {t.integer} NOT NULL,
            position {t.integer} NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('image', 'text')),
            name TEXT NOT NULL,
            mime TEXT NOT NULL,
            content TEXT NOT NULL,
            PRIMARY KEY (thread_id, message_id, position),
            FOREIGN KEY (thread_id, message_id) REFERENCES messages (thread_id, id))""",
    ]


def m011_materials(t: ColumnTypes) -> list[str]:
    """How an assistant teaches (`style`), and the course materials only it reads: each
    file's text, cut into overlapping passages that the database's own full-text search
    finds (SQLite FTS5 kept in step by triggers; PostgreSQL a generated tsvector)."""
    sqlite = t.fulltext == "fts5"
    key = "INTEGER PRIMARY KEY" if sqlite else "bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    vector = "tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED"
    search = "" if sqlite else f",\n            search {vector}"
    statements = [
        "ALTER TABLE assistants ADD COLUMN style TEXT NOT NULL DEFAULT 'direct'",
        f"""CREATE TABLE materials (
            id TEXT PRIMARY KEY,
            assistant_id TEXT NOT NULL REFERENCES assistants(id),
            name TEXT NOT NULL,
            size {t.integer} NOT NULL,
            tokens {t.integer} NOT NULL,
            content TEXT NOT NULL,
            created_at {t.time} NOT NULL)""",
        "CREATE INDEX materials_assistant ON materials (assistant_id, created_at)",
        f"""CREATE TABLE material_passages (
            id {key},
            material_id TEXT NOT NULL REFERENCES materials(id),
            assistant_id TEXT NOT NULL,
            seq {t.integer} NOT NULL,
            content TEXT NOT NULL,
            tokens {t.integer} NOT NULL{search})""",
        "CREATE UNIQUE INDEX material_passages_order ON material_passages (material_id, seq)",
    ]
    if not sqlite:
        return [
            *statements,
            "CREATE INDEX material_passages_search ON material_passages USING GIN (search)",
        ]
    return [
        *statements,
        "CREATE VIRTUAL TABLE material_search USING fts5(content, "
        "content='material_passages', content_rowid='id', tokenize='porter unicode61')",
        "CREATE TRIGGER material_passages_added AFTER INSERT ON material_passages BEGIN "
        "INSERT INTO material_search (rowid, content) VALUES (new.id, new.content); END",
        "CREATE TRIGGER material_passages_removed AFTER DELETE ON material_passages BEGIN "
        "INSERT INTO material_search (material_search, rowid, content) "
        "VALUES ('delete', old.id, old.content); END",
    ]


MIGRATIONS: list[Callable[[ColumnTypes], list[str]]] = [
    m001_initial,
    m002_bindings_and_activity,
    m003_places_and_failures,
    m004_askers,
    m005_access,
    m006_assistant_identity,
    m007_usage_and_limits,
    m008_feedback,
    m009_message_askers,
    m010_attachments,
    m011_materials,
]


async def migrate(dialect: Dialect) -> None:
    """Apply the migrations the database has not recorded, in one transaction."""
    async with dialect.transaction() as db:
        if dialect.lock_schema:
            await db.fetch(dialect.lock_schema)
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
            f"name TEXT NOT NULL, applied_at {dialect.types.time} NOT NULL)"
        )
        applied = {r["name"]: r["version"] for r in await db.fetch(RECORDED)}
        if set(applied) - {m.__name__ for m in MIGRATIONS}:
            raise SchemaTooNew(
                f"the database is at schema version {max(applied.values())}, newer than this "
                f"tutor knows ({len(MIGRATIONS)}): upgrade tutor"
            )
        for version, step in enumerate(MIGRATIONS, start=1):
            if step.__name__ not in applied:
                for statement in step(dialect.types):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    version,
                    step.__name__,
                    utcnow(),
                )
