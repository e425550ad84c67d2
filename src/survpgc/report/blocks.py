"""The content of a report page as data: tables, figures, paragraphs and their containers.

Sections are built from these records and rendered by the Jinja2 templates under ``templates/`` with
autoescaping, so every string they hold -- model names, case ids, cohort fields, notes, labels -- is text,
never markup.  Emphasis inside a paragraph is a :class:`Span`, not an HTML tag.  Images are inlined as
base64 ``data:`` URIs when the block is built (:func:`figure`), so a rendered page needs nothing else.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import numbers
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Block",
    "Cell",
    "Details",
    "Figure",
    "Grid",
    "Group",
    "Heading",
    "ItemList",
    "Paragraph",
    "Section",
    "Span",
    "Table",
    "figure",
    "frame_table",
    "is_missing",
    "mean_sd",
    "num",
    "table",
]

log = logging.getLogger(__name__)

_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}


# --------------------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    """Inline text shown bold (``style="b"``) or as code (``style="code"``)."""

    text: str
    style: Literal["b", "code"] = "code"


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of plain strings and :class:`Span` pieces; ``css_class`` e.g. ``"meta"`` or ``"empty"``."""

    parts: tuple[str | Span, ...]
    css_class: str = ""
    kind: str = "paragraph"


@dataclass(frozen=True)
class Heading:
    """A ``<h3>`` heading."""

    text: str
    kind: str = "heading"


@dataclass(frozen=True)
class Cell:
    """A table cell: ``numeric`` right-aligns, ``best`` shows it bold, ``badge`` as a red label."""

    text: str
    numeric: bool = False
    best: bool = False
    badge: bool = False

    @property
    def css(self) -> str:
        return " ".join(c for c, on in (("num", self.numeric), ("best", self.best)) if on)


@dataclass(frozen=True)
class Table:
    """A table with one header row; ``css_class`` of the ``<table>`` (e.g. ``"metrics"``)."""

    header: tuple[Cell, ...]
    rows: tuple[tuple[Cell, ...], ...]
    css_class: str = ""
    kind: str = "table"


@dataclass(frozen=True)
class Figure:
    """An inlined image (``src`` is a ``data:`` URI) with its caption, or the reason it is missing
    (``problem``, shown instead of the image)."""

    label: str
    caption: str
    src: str | None
    problem: str | None = None
    css_class: str = ""
    kind: str = "figure"


@dataclass(frozen=True)
class Group:
    """Blocks kept together (one cell of a :class:`Grid`)."""

    blocks: tuple[Block, ...]
    kind: str = "group"


@dataclass(frozen=True)
class Grid:
    """Blocks laid out side by side, wrapping."""

    items: tuple[Block, ...]
    kind: str = "grid"


@dataclass(frozen=True)
class Details:
    """A collapsed part: ``summary`` is the clickable line."""

    summary: str
    blocks: tuple[Block, ...]
    kind: str = "details"


@dataclass(frozen=True)
class ItemList:
    """A bulleted list of strings."""

    items: tuple[str, ...]
    kind: str = "list"


Block = Paragraph | Heading | Table | Figure | Group | Grid | Details | ItemList


@dataclass(frozen=True)
class Section:
    """A titled section appended to a report (``id`` is given by its position in the page)."""

    title: str
    blocks: tuple[Block, ...]


# --------------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------------
def is_missing(value: Any) -> bool:
    """None, NaN, NA, NaT (scalars only)."""
    if value is None:
        return True
    import pandas as pd

    try:
        missing = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return bool(missing) if isinstance(missing, bool) or getattr(missing, "shape", None) == () else False


def num(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (integers as integers); ``n/a`` for None / NaN / inf."""
    if is_missing(value):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(f):
        return "n/a"
    return f"{f:.{digits}f}"


def mean_sd(mean: Any, sd: Any, digits: int = 3) -> str:
    """``mean ± sd`` with ``digits`` decimals; the mean alone when sd is missing; ``n/a`` when the mean is."""
    if is_missing(mean):
        return "n/a"
    return f"{num(mean, digits)} ± {num(sd, digits)}" if not is_missing(sd) else num(mean, digits)


# --------------------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------------------
def table(
    header: Sequence[str],
    rows: Iterable[Sequence[str | Cell]],
    *,
    numeric: Sequence[bool] | None = None,
    css_class: str = "",
) -> Table:
    """A :class:`Table` from header strings and rows of strings (or ready cells); ``numeric`` per column."""
    numeric = list(numeric) if numeric is not None else [False] * len(header)
    head = tuple(Cell(str(h), numeric=n) for h, n in zip(header, numeric, strict=True))
    body = tuple(
        tuple(c if isinstance(c, Cell) else Cell(str(c), numeric=n) for c, n in zip(row, numeric, strict=True))
        for row in rows
    )
    return Table(head, body, css_class)


def frame_table(df: pd.DataFrame, digits: int = 3) -> Table:
    """A DataFrame as a :class:`Table`: numeric columns right-aligned with ``digits`` decimals."""
    numeric = [df[c].dtype.kind in "iuf" for c in df.columns]
    rows = [
        [num(v, digits) if n else str(v) for v, n in zip(rec, numeric, strict=True)]
        for rec in df.itertuples(index=False)
    ]
    return table([str(c) for c in df.columns], rows, numeric=numeric)


def _jpeg_bytes(path: Path, max_width: int) -> bytes:
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    if rgb.width > max_width:
        rgb = rgb.resize((max_width, max(1, round(rgb.height * max_width / rgb.width))), Image.LANCZOS)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def figure(
    label: str,
    path: str | os.PathLike[str],
    caption: str | None = None,
    *,
    jpeg_max_width: int | None = None,
    css_class: str = "",
) -> Figure:
    """One image inlined as a ``data:`` URI with its caption (``label`` unless given).

    With ``jpeg_max_width`` the page gets a JPEG copy at most that wide (for big photographic figures such
    as slide heatmaps; the full-resolution file stays where it is).  An unreadable or unsupported file
    becomes a :class:`Figure` whose ``problem`` says so (and a log warning), never an error.
    """
    path = Path(path)
    cap = label if caption is None else caption
    mime = "image/jpeg" if jpeg_max_width else _IMAGE_TYPES.get(path.suffix.lower())
    if mime is None:
        log.warning("report: image %s has an unsupported type, left out", path)
        return Figure(label, cap, None, f"{label}: unsupported image type {path.suffix!r}", css_class)
    try:
        data = _jpeg_bytes(path, jpeg_max_width) if jpeg_max_width else path.read_bytes()
    except OSError as exc:  # PIL's UnidentifiedImageError is an OSError too
        log.warning("report: image %s not readable (%s), left out", path, exc)
        return Figure(label, cap, None, f"{label}: image missing ({path.name})", css_class)
    src = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return Figure(label, cap, src, None, css_class)
