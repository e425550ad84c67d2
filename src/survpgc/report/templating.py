"""The Jinja2 environment of the report templates (``survpgc/report/templates/``).

Autoescaping is on for every template and undefined names raise (:class:`jinja2.StrictUndefined`), so a
value that comes from a run is always inserted as text and a misspelt template variable is an error, not
an empty string.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2
    from markupsafe import Markup

    from survpgc.report.blocks import Block

__all__ = ["environment", "render", "render_blocks"]


@functools.cache
def environment() -> jinja2.Environment:
    """The shared environment: templates loaded from the package, autoescape, strict undefined."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("survpgc.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> str:
    """Render the package template ``template`` with ``context``."""
    return environment().get_template(template).render(**context)


def render_blocks(blocks: Sequence[Block]) -> Markup:
    """Blocks rendered to an HTML fragment by the autoescaped templates (safe to insert as is)."""
    from markupsafe import Markup

    return Markup(render("fragment.html.j2", blocks=list(blocks)).strip())
