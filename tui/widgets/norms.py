"""Per-layer norms of the injected LoRAs: PRAG vs DyPRAG, overlaid or side by side,
for one MLP module or all three (textual-plotext bar charts)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import on
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Checkbox, Label, RadioButton, RadioSet, Static
from textual_plotext import PlotextPlot

from tui.series import MODULE_CHOICES, adapter_norm_series

if TYPE_CHECKING:
    from engine.explorer import Answer

MODULE_LABELS = {"all": "all", "gate_proj": "gate", "up_proj": "up", "down_proj": "down"}
SERIES_COLORS = {"PRAG": "cyan", "DyPRAG": "orange"}


class NormsPanel(Vertical):
    """The norm chart for the current comparison."""

    @dataclass
    class ModuleChanged(Message):
        """The user picked another MLP module; the sparklines follow it."""

        module: str

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.answers: list[Answer] = []
        """Answers of the current run (only their `norms` are read)."""
        self.module = "all"
        """One of MODULE_CHOICES."""
        self.overlay = True
        """One chart with both series, or one chart each."""

    def compose(self):
        with Horizontal(classes="norms-controls"):
            yield Label("Module", classes="norms-label")
            with RadioSet(id="norms-module"):
                for module in MODULE_CHOICES:
                    yield RadioButton(MODULE_LABELS[module], value=module == self.module, name=module)
            yield Checkbox("overlay", value=self.overlay, id="norms-overlay")
        yield Static(classes="norms-summary")
        with Horizontal(classes="norms-plots"):
            yield PlotextPlot(id="norms-plot-a")
            yield PlotextPlot(id="norms-plot-b")

    def on_mount(self) -> None:
        self._draw()

    def show(self, answers: Sequence[Answer]) -> None:
        self.answers = list(answers)
        self._draw()

    def set_module(self, module: str) -> None:
        if module not in MODULE_CHOICES:
            return
        self.module = module
        for button in self.query(RadioButton):
            if button.name == module and not button.value:
                button.value = True
        self._draw()

    @on(RadioSet.Changed, "#norms-module")
    def _module_changed(self, event: RadioSet.Changed) -> None:
        module = event.pressed.name or "all"
        if module != self.module:
            self.module = module
            self._draw()
            self.post_message(self.ModuleChanged(module))

    @on(Checkbox.Changed, "#norms-overlay")
    def _overlay_changed(self, event: Checkbox.Changed) -> None:
        self.overlay = event.value
        self._draw()

    def _draw(self) -> None:
        if not self.is_mounted:
            return
        series = adapter_norm_series(self.answers, self.module)
        first, second = self.query_one("#norms-plot-a", PlotextPlot), self.query_one("#norms-plot-b", PlotextPlot)
        module = MODULE_LABELS[self.module]
        summary = self.query_one(".norms-summary", Static)
        self.set_class(not series, "-empty")
        if not series:
            summary.update("No injected adapter in this run: run PRAG or DyPRAG (methods 3-6) to see per-layer norms.")
        else:
            summary.update(
                "  ".join(f"{name}: max {max(v):.3g} at layer {v.index(max(v))}, total {sum(x * x for x in v) ** 0.5:.3g}"
                          for name, v in series.items())
                + f"   ‖scale·BA‖_F per layer, {module}"
            )
        plots = [first] if self.overlay or len(series) < 2 else [first, second]
        second.display = len(plots) == 2
        for plot in (first, second):
            plot.plt.clear_figure()
        if series and len(plots) == 1:
            layers = list(range(len(next(iter(series.values())))))
            plt = first.plt
            names = list(series)
            if len(names) == 1:
                plt.bar(layers, series[names[0]], label=names[0], color=SERIES_COLORS[names[0]])
            else:
                plt.multiple_bar(layers, [series[n] for n in names], labels=names, color=[SERIES_COLORS[n] for n in names])
            plt.title(f"LoRA norm per layer ({module})")
            plt.xlabel("layer")
        elif series:
            for plot, (name, values) in zip(plots, series.items(), strict=False):
                plot.plt.bar(list(range(len(values))), values, label=name, color=SERIES_COLORS[name])
                plot.plt.title(f"{name} ({module})")
                plot.plt.xlabel("layer")
        for plot in (first, second):
            plot.refresh()
