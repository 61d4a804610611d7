"""Networks, storage pools and backup schedules created, changed and deleted from the
console. Each change asks the policy by the API route's name (``create_network``,
``delete_pool``, ``set_schedule`` ...) and calls the service that route calls, so a form
answers with the API's own message, shown at the field it names (``pages.attempt``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse

from corral.domain.errors import InvalidInput
from corral.domain.sizes import parse_size
from corral.services.types import Retention
from corral.web.infra import refused, render_backups, render_networks, render_storage
from corral.web.pages import Ctx, attempt
from corral.web.session import PATH

router = APIRouter(prefix=PATH, include_in_schema=False)
Text = Annotated[str, Form()]


def _list(text: str) -> list[str]:
    """A form's list field: items separated by commas, spaces or lines."""
    return [item for item in text.replace(",", " ").split() if item]


def _number(text: str, what: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdecimal():
        raise InvalidInput(f"{what} '{text}' is not a whole number")
    return int(text)


# Networks ----------------------------------------------------------------------------------
NETWORK_FIELDS = ("name", "type", "subnets", "gateways", "uplink", "vlan", "link_rate",
                  "pools")


@router.post("/networks", response_class=HTMLResponse)
def create_network(page: Ctx, name: Text = "", type: Text = "", subnets: Text = "",
                   gateways: Text = "", uplink: Text = "", vlan: Text = "",
                   link_rate: Text = "", pools: Text = "") -> HTMLResponse:
    page.require("create_network")
    values = {"name": name, "type": type, "subnets": subnets, "gateways": gateways,
              "uplink": uplink, "vlan": vlan, "link_rate": link_rate, "pools": pools}
    made, errors = attempt(lambda: page.app.networks.create_network(
        name.strip(), type.strip(), _list(subnets), _list(gateways), uplink.strip() or None,
        _number(vlan, "vlan"), link_rate.strip() or None, _list(pools)), NETWORK_FIELDS)
    if made is None:
        return render_networks(page, refused(page), net_errors=errors, net_values=values)
    return render_networks(page, notice=f"network {made.name} created")


@router.post("/networks/{name}/delete", response_class=HTMLResponse)
def delete_network(page: Ctx, name: str) -> HTMLResponse:
    page.require("delete_network")
    _done, errors = attempt(lambda: page.app.networks.delete_network(name), ())
    return render_networks(page, refused(page) if errors else 200, problem=errors.get(""),
                           notice=None if errors else f"network {name} deleted")


# Storage pools -----------------------------------------------------------------------------
POOL_FIELDS = ("name", "driver", "path", "source", "size")


@router.post("/storage/pools", response_class=HTMLResponse)
def create_pool(page: Ctx, name: Text = "", driver: Text = "dir", path: Text = "",
                source: Text = "", size: Text = "") -> HTMLResponse:
    page.require("create_pool")
    values = {"name": name, "driver": driver, "path": path, "source": source, "size": size}
    made, errors = attempt(lambda: page.app.storage.create_pool(
        name.strip(), driver.strip(), path.strip() or None, source.strip() or None,
        parse_size(size.strip()) if size.strip() else None), POOL_FIELDS)
    if made is None:
        return render_storage(page, refused(page), errors=errors, values=values)
    return render_storage(page, notice=f"storage pool {made.config.name} created")


@router.post("/storage/pools/{name}/delete", response_class=HTMLResponse)
def delete_pool(page: Ctx, name: str) -> HTMLResponse:
    page.require("delete_pool")
    _done, errors = attempt(lambda: page.app.storage.delete_pool(name), ())
    return render_storage(page, refused(page) if errors else 200, problem=errors.get(""),
                          notice=None if errors else f"storage pool {name} deleted")


# Backup schedules --------------------------------------------------------------------------
SCHEDULE_FIELDS = ("instance", "target", "daily", "tz", "keep_last", "keep_daily",
                   "keep_weekly")


@router.post("/backup-schedules", response_class=HTMLResponse)
def set_schedule(page: Ctx, instance: Text = "", target: Text = "", daily: Text = "",
                 tz: Text = "", keep_last: Text = "", keep_daily: Text = "",
                 keep_weekly: Text = "") -> HTMLResponse:
    page.require("set_schedule")
    values = {"instance": instance, "target": target, "daily": daily, "tz": tz,
              "keep_last": keep_last, "keep_daily": keep_daily, "keep_weekly": keep_weekly}

    def work() -> object:
        keep = Retention(_number(keep_last, "keep_last") or 0,
                         _number(keep_daily, "keep_daily") or 0,
                         _number(keep_weekly, "keep_weekly") or 0)
        return page.app.schedules.set_schedule(instance.strip(), target.strip(),
                                               daily.strip(), keep, tz.strip() or None)

    made, errors = attempt(work, SCHEDULE_FIELDS)
    if made is None:
        return render_backups(page, refused(page), sched_errors=errors, sched_values=values)
    return render_backups(page, notice=f"backup schedule of {instance.strip()} set: daily "
                          f"at {daily.strip()} to {target.strip()}")


@router.post("/backup-schedules/{instance}/delete", response_class=HTMLResponse)
def remove_schedule(page: Ctx, instance: str) -> HTMLResponse:
    page.require("remove_schedule")
    _done, errors = attempt(lambda: page.app.schedules.remove_schedule(instance), ())
    return render_backups(page, refused(page) if errors else 200, problem=errors.get(""),
                          notice=None if errors else f"backup schedule of {instance} removed")
