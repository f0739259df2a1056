"""The intake benchmark's baseline: a bare Flask endpoint inserting one row."""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from sqlalchemy import Column, Integer, MetaData, String, Table, Text

from app.db import make_engine

engine = make_engine(os.environ["DATABASE_URL"])
meta = MetaData()
rows = Table(
    "bare_tips",
    meta,
    Column("id", Integer, primary_key=True),
    Column("category", String(30)),
    Column("description", Text),
)
meta.create_all(engine)
app = Flask(__name__)


@app.get("/healthz")
def healthz():
    """Say the server is up."""
    return jsonify(status="ok")


@app.post("/api/v1/tips")
def insert():
    """Parse the JSON body and insert one row: the floor the real endpoint is held to."""
    body = request.get_json()
    with engine.begin() as conn:
        result = conn.execute(
            rows.insert().values(category=body["category"], description=body["description"])
        )
    return jsonify(id=result.inserted_primary_key[0]), 201
