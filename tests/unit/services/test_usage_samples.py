"""stats/top/metrics' CPU %: one pause for all only when no recent sample exists; a scrape
never pauses; the history sampler's batch reading counts as a sample (issue 19: a scrape
of 1000 instances in <= 1 s). Real SQLite and the fake driver; ``time.sleep`` is watched."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from corral.services import resources as resources_module
from corral.services.core import Corral, Settings
from tests.integration.conftest import write_fake_template


@pytest.fixture
def corral(tmp_path: Path) -> Corral:
    write_fake_template(tmp_path / "templates")
    app = Corral(Settings(state_dir=tmp_path, driver_mode="fake", node="n1"))
    app.start()
    for name in ("a", "b"):
        app.operations.wait(app.instances.create(name, "ct", "tiny", {}).id, 10)
        app.operations.wait(app.instances.start(name).id, 10)
    return app


class Clock:
    """ResourceService's clock: the real one plus the time ``sleep`` and ``wait`` skipped;
    the pauses it was asked for are kept."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.skipped = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.skipped += seconds

    def wait(self, seconds: float) -> None:  # between two refreshes of `top`, say
        self.skipped += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(resources_module, "time",
                        SimpleNamespace(monotonic=fake.monotonic, time=time.time,
                                        sleep=fake.sleep))
    return fake


def test_the_first_stats_pause_once_for_all_and_the_next_not(
        corral: Corral, clock: Clock) -> None:
    rows = corral.resources.usage_all()
    assert {r.instance for r in rows} == {"a", "b"}
    assert clock.pauses == [resources_module.SAMPLE_GAP]
    clock.wait(2)
    corral.resources.usage_all()
    assert clock.pauses == [resources_module.SAMPLE_GAP]
    clock.wait(resources_module.FRESH + 1)  # too old to give a CPU % of "now"
    corral.resources.usage_all()
    assert clock.pauses == [resources_module.SAMPLE_GAP] * 2


def test_a_scrape_never_pauses(corral: Corral, clock: Clock) -> None:
    rows = corral.resources.usage_all(pause=False)
    assert {r.instance: r.cpu_percent for r in rows} == {"a": 0.0, "b": 0.0}
    clock.wait(15)
    assert len(corral.resources.usage_all(pause=False)) == 2
    assert clock.pauses == []


def test_the_history_samplers_reading_spares_the_next_stats_its_pause(
        corral: Corral, clock: Clock) -> None:
    assert len(corral.resources.running_counters()) == 2
    clock.wait(60)  # the sampler reads once a minute
    corral.resources.usage_all()
    assert clock.pauses == []
