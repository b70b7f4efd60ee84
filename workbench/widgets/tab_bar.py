"""A row of tabs drawn by one widget: the run detail's tab bar.

Textual's ``TabbedContent`` is about twenty widgets for seven tabs (a ``Tab`` and a
``TabPane`` each, the tab list's containers, the underline, the content switcher), each styled
and laid out on the first frame, and its underline moves under the active tab only after the
first refresh (a second layout and paint). On the run detail that was a quarter of a bare
Textual app's whole start (``bench/bench_tui.py``). :class:`TabBar` draws the same two rows
(labels, then the underline with the active tab's part highlighted) as one widget with the
same theme colours, keys (``left`` / ``right``) and mouse clicks; the screen mounts the tabs'
content itself, each on its first showing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.renderables.bar import Bar
from textual.widget import Widget

#: the padding either side of a label, as Textual's ``Tab`` has it
PAD = 1


class TabBar(Widget, can_focus=True):
    """Tabs ``(id, label)`` in a row; ``active`` is the shown tab's id. Changing it (keys,
    clicks, or code) posts :class:`TabBar.TabActivated`."""

    DEFAULT_CSS = """
    TabBar {
        width: 1fr;
        height: 2;
        & > .tab-bar--tab { color: $foreground 50%; }
        & > .tab-bar--active { color: $foreground; }
        & > .tab-bar--underline { color: $block-cursor-background; background: $foreground 10%; }
        &:focus {
            & > .tab-bar--active {
                text-style: $block-cursor-text-style;
                color: $block-cursor-foreground;
                background: $block-cursor-background;
            }
            & > .tab-bar--underline { background: $foreground 30%; }
        }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "tab-bar--tab", "tab-bar--active", "tab-bar--underline"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "previous_tab", "Previous tab", show=False),
        Binding("right", "next_tab", "Next tab", show=False),
    ]
    ALLOW_SELECT = False

    active: reactive[str] = reactive("", always_update=False)

    class TabActivated(Message):
        """The tab ``tab`` (its id) became the active one."""

        def __init__(self, tab_bar: TabBar, tab: str) -> None:
            super().__init__()
            self.tab_bar = tab_bar
            self.tab = tab

        @property
        def control(self) -> TabBar:
            return self.tab_bar

    def __init__(self, tabs: Sequence[tuple[str, str]], active: str | None = None, *,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        if not tabs:
            raise ValueError("a TabBar needs at least one tab")
        self.tabs = list(tabs)
        self.ids = [tab for tab, _ in self.tabs]
        if active is not None and active not in self.ids:
            raise ValueError(f"no tab {active!r}; tabs: {', '.join(self.ids)}")
        self.set_reactive(TabBar.active, active or self.ids[0])

    # -- geometry --------------------------------------------------------------------------
    def spans(self) -> list[tuple[int, int]]:
        """Each tab's ``(start, end)`` columns, padding included."""
        spans, x = [], 0
        for _, label in self.tabs:
            width = len(label) + 2 * PAD
            spans.append((x, x + width))
            x += width
        return spans

    def scroll_x(self) -> int:
        """Columns the row is shifted left by so that the active tab shows in a narrow bar."""
        end = self.spans()[self.ids.index(self.active)][1]
        return max(0, end - self.size.width)

    # -- drawing ---------------------------------------------------------------------------
    def render(self) -> RenderableType:
        shift = self.scroll_x()
        row = Text(no_wrap=True, overflow="crop", end="")
        tab_style = self.get_component_rich_style("tab-bar--tab")
        active_style = self.get_component_rich_style("tab-bar--active")
        for tab, label in self.tabs:
            row.append(f"{' ' * PAD}{label}{' ' * PAD}",
                       style=active_style if tab == self.active else tab_style)
        start, end = self.spans()[self.ids.index(self.active)]
        underline = self.get_component_rich_style("tab-bar--underline")
        bar = Bar(highlight_range=(start + PAD - shift, end - PAD - shift),
                  highlight_style=Style.from_color(underline.color),
                  background_style=Style.from_color(underline.bgcolor))
        return Group(row[shift:], bar)

    def watch_active(self, active: str) -> None:
        if active not in self.ids:
            raise ValueError(f"no tab {active!r}; tabs: {', '.join(self.ids)}")
        self.post_message(self.TabActivated(self, active))

    # -- keys and mouse --------------------------------------------------------------------
    def action_next_tab(self) -> None:
        self.active = self.ids[(self.ids.index(self.active) + 1) % len(self.ids)]

    def action_previous_tab(self) -> None:
        self.active = self.ids[(self.ids.index(self.active) - 1) % len(self.ids)]

    def on_click(self, event: events.Click) -> None:
        """A click on a label or under it activates that tab (and focuses the bar, as
        Textual's tabs do)."""
        event.stop()
        self.focus()
        x = event.x + self.scroll_x()
        for tab, (start, end) in zip(self.ids, self.spans(), strict=True):
            if start <= x < end:
                self.active = tab
                return


__all__ = ["TabBar"]
