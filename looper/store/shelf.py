"""The store's shelf of course materials: each material's text, its passages, and the search
that finds the passages a question needs, with the database's own full-text search (SQLite
FTS5 ranked by bm25, PostgreSQL tsvector ranked by ts_rank): no other service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from looper.models import Material, Passage, StoredMaterial
from looper.store.batch import Batcher, in_batches, marks
from looper.store.dialect import Connection, Dialect, Row
from looper.store.errors import NotFound

MATERIAL_COLUMNS = "id, assistant_id, name, size, tokens, created_at"
ADD_MATERIAL = f"INSERT INTO materials ({MATERIAL_COLUMNS}, content) VALUES (?, ?, ?, ?, ?, ?, ?)"
ADD_PASSAGE = (
    "INSERT INTO material_passages (material_id, assistant_id, seq, content, tokens) "
    "VALUES (?, ?, ?, ?, ?)"
)
PASSAGE_COLUMNS = "p.material_id, m.name, p.seq, p.content, p.tokens"
# `?`: the assistant, the query, how many. The best match first.
SEARCH = {
    "fts5": (
        f"SELECT {PASSAGE_COLUMNS} FROM material_search s "
        "JOIN material_passages p ON p.id = s.rowid JOIN materials m ON m.id = p.material_id "
        "WHERE p.assistant_id = ? AND material_search MATCH ? "
        "ORDER BY bm25(material_search), p.id LIMIT ?"
    ),
    "tsvector": (
        f"SELECT {PASSAGE_COLUMNS} FROM material_passages p "
        "JOIN materials m ON m.id = p.material_id, to_tsquery('english', ?) q "
        "WHERE p.assistant_id = ? AND p.search @@ q "
        "ORDER BY ts_rank(p.search, q) DESC, p.id LIMIT ?"
    ),
}


def search_query(fulltext: str, words: list[str]) -> str:
    """Any of `words`, as the database's query language spells it. The words hold letters
    and digits only, so no search syntax gets in."""
    if fulltext == "fts5":
        return " OR ".join(f'"{word}"' for word in words)
    return " | ".join(words)


class Shelf:
    """Materials and their passages (mixed into `Store`)."""

    dialect: Dialect
    if TYPE_CHECKING:

        async def _fetch(self, sql: str, *args: Any) -> list[Row]: ...

    def __init__(self) -> None:
        super().__init__()
        # Every answer asks how much its assistant has: answers starting together ask once.
        self._material_totals: Batcher[str, int] = Batcher(self._material_tokens_of)

    async def add_material(
        self, material: Material, content: str, passages: list[tuple[str, int]]
    ) -> None:
        """Store a material with its text and its passages (each with its token count).
        Raises NotFound for an unknown assistant."""
        async with self.dialect.transaction() as db:
            known = "SELECT 1 FROM assistants WHERE id = ?"
            if await db.fetchval(known, material.assistant_id) is None:
                raise NotFound(f"no assistant {material.assistant_id!r}")
            await self._put_materials(
                db, [StoredMaterial(**material.model_dump(), content=content, passages=passages)]
            )

    @staticmethod
    async def _put_materials(db: Connection, materials: list[StoredMaterial]) -> None:
        await db.executemany(
            ADD_MATERIAL,
            [
                (m.id, m.assistant_id, m.name, m.size, m.tokens, m.created_at, m.content)
                for m in materials
            ],
        )
        await db.executemany(
            ADD_PASSAGE,
            [
                (m.id, m.assistant_id, seq, text, tokens)
                for m in materials
                for seq, (text, tokens) in enumerate(m.passages)
            ],
        )

    @staticmethod
    async def _all_materials(db: Connection) -> list[StoredMaterial]:
        """Every material with its passages (for an export)."""
        rows = await db.fetch(
            f"SELECT {MATERIAL_COLUMNS}, content FROM materials ORDER BY created_at, id"
        )
        passages = await db.fetch(
            "SELECT material_id, content, tokens FROM material_passages ORDER BY material_id, seq"
        )
        cut: dict[str, list[tuple[str, int]]] = {}
        for p in passages:
            cut.setdefault(p["material_id"], []).append((p["content"], int(p["tokens"])))
        return [StoredMaterial(**r, passages=cut.get(r["id"], [])) for r in rows]

    async def list_materials(self, assistant_id: str) -> list[Material]:
        """An assistant's materials, oldest first."""
        rows = await self._fetch(
            f"SELECT {MATERIAL_COLUMNS} FROM materials WHERE assistant_id = ? "
            "ORDER BY created_at, id",
            assistant_id,
        )
        return [Material.model_validate(r) for r in rows]

    async def remove_material(self, assistant_id: str, material_id: str) -> Material:
        """Remove one of an assistant's materials and its passages. Raises NotFound."""
        async with self.dialect.transaction() as db:
            row = await db.fetchrow(
                f"SELECT {MATERIAL_COLUMNS} FROM materials WHERE id = ? AND assistant_id = ?",
                material_id,
                assistant_id,
            )
            if row is None:
                raise NotFound(f"no material {material_id!r} for this assistant")
            await db.execute("DELETE FROM material_passages WHERE material_id = ?", material_id)
            await db.execute("DELETE FROM materials WHERE id = ?", material_id)
        return Material.model_validate(row)

    async def material_tokens(self, assistant_id: str) -> int:
        """The tokens of all of an assistant's materials together (0: it has none)."""
        return await self._material_totals.add(assistant_id)

    async def _material_tokens_of(self, assistant_ids: list[str]) -> list[int | Exception]:
        totals: dict[str, int] = {}
        for chunk in in_batches(sorted(set(assistant_ids))):
            rows = await self._fetch(
                "SELECT assistant_id, sum(tokens) AS total FROM materials "
                f"WHERE assistant_id IN ({marks(chunk)}) GROUP BY assistant_id",
                *chunk,
            )
            totals.update({r["assistant_id"]: int(r["total"] or 0) for r in rows})
        return [totals.get(assistant_id, 0) for assistant_id in assistant_ids]

    async def whole_materials(self, assistant_id: str) -> list[tuple[str, str]]:
        """Each of an assistant's materials whole: its name and text, oldest first."""
        rows = await self._fetch(
            "SELECT name, content FROM materials WHERE assistant_id = ? ORDER BY created_at, id",
            assistant_id,
        )
        return [(r["name"], r["content"]) for r in rows]

    async def search_passages(
        self, assistant_id: str, words: list[str], limit: int
    ) -> list[Passage]:
        """The passages of an assistant's materials holding any of `words`, best ranked
        first (bm25, ts_rank). The words hold letters and digits only."""
        if not words:
            return []
        fulltext = self.dialect.types.fulltext
        query = search_query(fulltext, words)
        args = (assistant_id, query) if fulltext == "fts5" else (query, assistant_id)
        rows = await self._fetch(SEARCH[fulltext], *args, limit)
        return [Passage.model_validate(r) for r in rows]
