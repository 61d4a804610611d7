"""What every console page gets: the caller's policy, the services, and rendering.

``Page`` is a request's context (a FastAPI dependency): ``page.require(action)`` asks
``services/access.py`` with the API route's name for the same work (``create_instance``,
``set_resources``, ``list_users`` ...), so a page or a change is allowed exactly when the
API call would be; ``page.may(action)`` decides which parts of a page to show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from corral import __version__
from corral.api.deps import caller
from corral.domain.errors import CorralError, Forbidden
from corral.domain.sizes import format_size
from corral.domain.users import Caller
from corral.services.access import Access
from corral.services.core import Corral
from corral.services.sessions import Session
from corral.web.session import PATH, session_of

HERE = Path(__file__).parent
T = TypeVar("T")

ENV = Environment(loader=FileSystemLoader(HERE / "templates"),
                  autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def _size(value: int | None) -> str:
    return "-" if value is None else format_size(int(value))


def _when(moment: datetime | str | float | None) -> str:
    if moment is None:
        return "-"
    if isinstance(moment, int | float):  # Unix seconds
        moment = datetime.fromtimestamp(moment, UTC).replace(tzinfo=None)
    text = moment.isoformat() if isinstance(moment, datetime) else moment
    return text[:19].replace("T", " ")


ENV.filters["size"] = _size
ENV.filters["when"] = _when
ENV.globals["base"] = PATH
ENV.globals["version"] = __version__


def render_template(name: str, values: Mapping[str, Any], status: int = 200,
                    headers: Mapping[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(ENV.get_template(name).render(**values), status_code=status,
                        headers=dict(headers or {}))


@dataclass
class Page:
    request: Request
    app: Corral
    caller: Caller
    policy: Access
    session: Session | None

    def require(self, action: str) -> None:
        self.policy.require(action)

    def may(self, action: str) -> bool:
        return self.policy.may(action)

    @property
    def htmx(self) -> bool:
        return self.request.headers.get("hx-request") == "true"

    def render(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        return render_template(name, {"page": self, "me": self.caller,
                                      "csrf": self.session.csrf if self.session else "",
                                      "path": self.request.url.path,
                                      "live": self.caller.sees_all, **values}, status)

    def redirect(self, to: str) -> Response:
        """To ``to`` after a change: htmx follows ``HX-Redirect``, a plain form the 303."""
        if self.htmx:
            return Response(status_code=204, headers={"HX-Redirect": to})
        return RedirectResponse(to, status_code=303)


async def page(request: Request, who: Annotated[Caller, Depends(caller)]) -> Page:
    app: Corral = request.app.state.corral
    return Page(request, app, who, Access(who), session_of(request))


Ctx = Annotated[Page, Depends(page)]

Collection = set[str] | frozenset[str] | tuple[str, ...] | list[str]

FIELD_WORDS: tuple[tuple[str, str], ...] = (
    ("cpus", "cpus"), ("cpu", "cpus"), ("vcpu", "cpus"), ("memory", "memory"), ("ram", "memory"),
    ("disk", "disk"), ("template", "template"), ("owner", "owner"), ("user", "owner"),
    ("network", "network"), ("address", "ip"), ("ip", "ip"), ("name", "name"),
    ("instance", "name"), ("type", "kind"), ("kind", "kind"), ("password", "password"),
    ("role", "role"), ("subnet", "subnets"), ("gateway", "gateways"), ("rate", "link_rate"),
    ("pool", "pools"),
)


def field_of(message: str, fields: Collection) -> str | None:
    """The form field an API error message is about: the first field (or a word for it)
    the message names; None: the form as a whole."""
    words = [w.strip("'\"`(),.:;-").lower() for w in message.split()]
    for word in words:
        if word in fields:
            return word
        for said, field in FIELD_WORDS:
            if word == said and field in fields:
                return field
    return None


def attempt(work: Callable[[], T], fields: Collection) -> tuple[T | None, dict[str, str]]:
    """Run ``work``; a ``CorralError`` becomes ``{field: message}`` (``""``: the form). A
    refusal of the policy is not a form error: it answers 403."""
    try:
        return work(), {}
    except Forbidden:
        raise
    except CorralError as exc:
        return None, {field_of(exc.message, fields) or "": exc.message}
