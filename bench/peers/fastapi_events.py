"""A legacy FastAPI service written the way the article "Why FastAPI Slows Down with Millions of Rows—and How to Keep It Fast" describes.

/events          the article's 'common mistake': every row unless the caller passes limit/offset,
                 plus an optional id_gt filter (what a keyset rewrite can use).
/events/keyset   the article's recommended keyset page, hand-written in FastAPI (peer for page serving).
/export          the article's recommended StreamingResponse CSV export (peer for export streaming).
Run: DATABASE_URL=postgresql://USER@HOST:PORT/DB uvicorn fastapi_events:app --port 8000
(pip install fastapi uvicorn asyncpg orjson). Load the table with events_5m.sql first.
"""
import os
import asyncpg
from fastapi import FastAPI, Query
from fastapi.responses import StreamingResponse, ORJSONResponse

app = FastAPI(default_response_class=ORJSONResponse)
DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
pool = None


@app.on_event("startup")
async def startup():
    global pool
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=8)


def row(r):
    return {"id": r["id"], "status": r["status"], "created_at": r["created_at"].isoformat(),
            "user_id": r["user_id"], "message": r["message"]}


@app.get("/events")
async def events(limit: int | None = None, offset: int | None = None, id_gt: int | None = None):
    sql, args = "SELECT id, status, created_at, user_id, message FROM events", []
    if id_gt is not None:
        args.append(id_gt)
        sql += f" WHERE id > ${len(args)}"
    sql += " ORDER BY id"
    if limit is not None:
        args.append(limit)
        sql += f" LIMIT ${len(args)}"
    if offset is not None:
        args.append(offset)
        sql += f" OFFSET ${len(args)}"
    async with pool.acquire() as c:
        rows = await c.fetch(sql, *args)
    return [row(r) for r in rows]


@app.get("/events/keyset")
async def events_keyset(after: int = 0, limit: int = Query(100, le=1000)):
    async with pool.acquire() as c:
        rows = await c.fetch("SELECT id, status, created_at, user_id, message FROM events "
                             "WHERE id > $1 ORDER BY id LIMIT $2", after, limit)
    items = [row(r) for r in rows]
    return {"data": items, "next": items[-1]["id"] if len(items) == limit else None}


@app.get("/export")
async def export():
    async def gen():
        async with pool.acquire() as c:
            async with c.transaction():
                buf = []
                async for r in c.cursor("SELECT id, status, created_at, user_id, message FROM events ORDER BY id",
                                        prefetch=10000):
                    buf.append(f"{r['id']},{r['status']},{r['created_at'].isoformat()},{r['user_id']},{r['message']}\n")
                    if len(buf) >= 1000:
                        yield "".join(buf)
                        buf.clear()
                if buf:
                    yield "".join(buf)
    return StreamingResponse(gen(), media_type="text/csv",
                             headers={"Content-Disposition": "attachment; filename=events.csv"})
