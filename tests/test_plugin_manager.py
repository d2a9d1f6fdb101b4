"""The plugin manager: each plugin called through pluggy on its own, failures counted under a
lock by the manager that owns them, hook wrappers refused at registration."""

from __future__ import annotations

import threading

import pluggy
import pytest

from catalogcap.plugins.hookspecs import hookimpl
from catalogcap.plugins.manager import WrapperRefused, make_manager


class Raising:
    @hookimpl
    def caption_created(self, caption):
        raise RuntimeError(f"cannot handle {caption}")


class Listening:
    def __init__(self) -> None:
        self.seen: list[tuple[object, object]] = []

    @hookimpl
    def caption_created(self, caption, settings):
        self.seen.append((caption, settings))
        return caption


class OldWrapper:
    @hookimpl(hookwrapper=True)
    def caption_created(self, caption):
        yield


class NewWrapper:
    @hookimpl(wrapper=True)
    def adapter_promoted(self, adapter):
        return (yield)


def test_one_raising_plugin_never_stops_the_others() -> None:
    pm = make_manager([])
    listener = Listening()
    pm.register(Listening(), name="first")
    pm.register(Raising(), name="raising")
    pm.register(listener, name="last")
    results = pm.call("caption_created", caption=7, settings="s")
    assert results == [7, 7] and listener.seen == [(7, "s")]
    assert pm.failures() == {"raising": 1}
    assert pm.last_error("raising") == "caption_created: RuntimeError: cannot handle 7"


@pytest.mark.parametrize("plugin", [OldWrapper, NewWrapper])
def test_hook_wrappers_are_refused_at_registration(plugin) -> None:
    pm = make_manager([])
    with pytest.raises(WrapperRefused, match="hook wrappers are not supported"):
        pm.register(plugin(), name="wrapping")
    assert not pm.has_plugin("wrapping")
    assert isinstance(WrapperRefused(plugin, "x"), pluggy.PluginValidationError)


def test_failures_from_many_threads_are_all_counted_and_handed_out_once() -> None:
    pm = make_manager([])
    pm.register(Raising(), name="raising")
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for _ in range(250):
            pm.call("caption_created", caption=1, settings=None)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    taken: list[int] = []
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        taken.append(pm.take_unsaved()[0].get("raising", 0))
    for thread in threads:
        thread.join()
    taken.append(pm.take_unsaved()[0].get("raising", 0))
    assert pm.failures() == {"raising": 2000} and sum(taken) == 2000
    assert pm.take_unsaved() == ({}, {})


def test_two_managers_keep_their_own_counts() -> None:
    one, two = make_manager([]), make_manager([])
    one.register(Raising(), name="raising")
    two.register(Raising(), name="raising")
    one.call("caption_created", caption=1, settings=None)
    assert one.failures() == {"raising": 1} and two.failures() == {}
