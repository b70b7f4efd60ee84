"""Textual's footer, rebuilt only when the keys it shows change.

Textual's ``Footer`` removes and re-mounts all its keys on every bindings change of the
screen: each focus change (the screen's watcher and ``set_focus`` both announce it), each
screen resume, each ``refresh_bindings``, one rebuild queued per announcement. Opening a
screen announces three or four, so the runs list built its nine keys three times on its first
frame, and every tab switch of the run detail rebuilt its keys although they rarely change.
:class:`KeyFooter` looks the same and shows the same keys; it folds the announcements made
before a refresh into one rebuild, and skips a rebuild that would show exactly the keys it
shows already.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    """A :class:`textual.widgets.Footer` that rebuilds its keys only when they change."""


    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rebuild_pending = False
        self.shown: Hashable | None = None
        self.rebuilds = 0

    def keys_shown(self) -> Hashable:
        """What the footer would draw now: every shown binding (key, label, action, enabled,
        tooltip, group) and the command palette's key."""
        app = self.app
        keys = tuple(
            (b.key, app.get_key_display(b), b.description, b.action, enabled, tooltip,
             id(b.group) if b.group is not None else None)
            for _, b, enabled, tooltip in self.screen.active_bindings.values() if b.show)
        palette = self.show_command_palette and app.ENABLE_COMMAND_PALETTE and (
            app.COMMAND_PALETTE_BINDING in self.screen.active_bindings)
        return keys, palette, self.compact

    def bindings_changed(self, screen: Screen[Any]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self.rebuild_pending:
            self.rebuild_pending = True
            self.call_after_refresh(self.rebuild)

    async def rebuild(self) -> None:
        """Recompose, unless the keys to show are those shown."""
        self.rebuild_pending = False
        if not self.is_attached:
            return
        shown = self.keys_shown()
        if shown == self.shown:
            return
        self.shown = shown
        self.rebuilds += 1
        await self.recompose()


__all__ = ["KeyFooter"]
