"""Grid layers and their features (city → town → village → grid)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow

LEVELS = ("city", "town", "village", "grid")
CRS_VALUES = ("wgs84", "gcj02", "bd09")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class GridLayer(Base):
    """One imported grid file; each import is a new version and old ones are kept.

    Tips remember the layer version they were routed with, so a replaced layer
    stays in the table (inactive) and its grid ids keep their meaning.
    """

    __tablename__ = "grid_layers"
    __table_args__ = (
        CheckConstraint(_in("crs", CRS_VALUES), name="crs"),
        # At most one active layer, enforced by the database so two concurrent
        # imports cannot both win.
        Index(
            "uq_grid_layers_one_active",
            "active",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    crs: Mapped[str] = mapped_column(String(8))
    source_name: Mapped[str] = mapped_column(String(255))
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    active: Mapped[bool] = mapped_column(default=False)
    synthetic: Mapped[bool] = mapped_column(default=False)
    feature_count: Mapped[int] = mapped_column(default=0)

    def __repr__(self) -> str:
        return f"<GridLayer v{self.version} {self.crs} active={self.active}>"


class Grid(Base):
    """One feature of a layer at any level; tips route to level "grid" only.

    `path` is the chain of codes from the city down ("C/T01/V0103/G0456"), so a
    subtree is a prefix match. Bounds are in the layer's own datum.
    """

    __tablename__ = "grids"
    __table_args__ = (
        UniqueConstraint("layer_id", "code"),
        CheckConstraint(_in("level", LEVELS), name="level"),
        # text_pattern_ops lets PostgreSQL use the index for `LIKE 'prefix/%'`
        # whatever the database collation is.
        Index(
            "ix_grids_layer_id_path",
            "layer_id",
            "path",
            postgresql_ops={"path": "text_pattern_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    layer_id: Mapped[int] = mapped_column(ForeignKey("grid_layers.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(8))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"), index=True)
    path: Mapped[str] = mapped_column(String(1000))
    geometry: Mapped[bytes] = mapped_column(LargeBinary)
    min_lon: Mapped[float]
    min_lat: Mapped[float]
    max_lon: Mapped[float]
    max_lat: Mapped[float]
    station: Mapped[str | None] = mapped_column(String(200))
    contacts: Mapped[dict | list | None] = mapped_column(JSON(none_as_null=True))

    layer: Mapped[GridLayer] = relationship()

    def __repr__(self) -> str:
        return f"<Grid {self.path} ({self.level})>"
