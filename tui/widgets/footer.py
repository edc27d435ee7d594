"""The key footer, redrawn only while its screen is in front, and at most once per refresh."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    """Textual's Footer, with two limits on when it redraws its keys.

    Textual runs a footer's redraw after the refresh of whichever screen is in front. With the
    question browser (or any dialog) open over the explorer, every binding change of the explorer
    (a run starting or ending, a rerank toggle) queued one more redraw of the hidden footer on the
    dialog, and a burst of them kept the app busy for good: seen in the 1,000-random-keys test.
    A hidden footer now waits: its screen refreshes its bindings when it comes back to the front.
    """

    _redraw_pending = False

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True  # Footer.compose draws nothing until the first change
        if not screen.app.app_focus or not self.is_attached or screen is not self.screen or not screen.is_active:
            return
        if not self._redraw_pending:
            self._redraw_pending = True
            self.call_after_refresh(self._redraw)

    async def _redraw(self) -> None:
        self._redraw_pending = False
        if self.screen.is_active:  # a dialog opened since: the screen's return redraws it
            await self.recompose()
