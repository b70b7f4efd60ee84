"""Small modal screens: yes/no confirmation, the export format choice and the key-binding help."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

from workbench.text import plain_text


class ConfirmScreen(ModalScreen[bool]):
    """Ask before anything destructive (cancel, delete). ``y``/``enter`` yes, ``n``/``esc`` no."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Label(Text(plain_text(self.question, keep_newlines=True)), id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


#: the export formats (:data:`workbench.export.FORMATS`, not imported: it loads the spaces),
#: each with its key in the chooser and what it is for
EXPORT_FORMATS = (
    ("json", "j", "genotype, costs, provenance"),
    ("onnx", "o", "deploy: checked in onnxruntime"),
    ("pt2", "p", "deploy: torch.export, reloaded and checked"),
    ("torchscript", "t", "legacy: reloaded and checked"),
    ("dot", "d", "Graphviz drawing"),
)


class ExportFormatScreen(ModalScreen[str | None]):
    """Pick an export format: arrows + enter, or its key (``j``/``o``/``p``/``t``/``d``);
    ``escape`` cancels. Shows the file each format would write."""

    BINDINGS = [Binding("escape", "choose(None)", "Cancel")] + [
        Binding(key, f"choose('{fmt}')", fmt, show=False) for fmt, key, _ in EXPORT_FORMATS]

    def __init__(self, title: str, paths: dict[str, str]) -> None:
        super().__init__()
        self.title_text = title
        self.paths = paths

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Label(Text(plain_text(self.title_text, keep_newlines=True)), id="export-title")
            yield OptionList(*[
                Option(Text.assemble((f"{key} ", "bold"), (f"{fmt:<12}", "bold cyan"),
                                     f"{self.paths.get(fmt, ''):<16} ", (note, "dim")), id=fmt)
                for fmt, key, note in EXPORT_FORMATS], id="export-formats")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_choose(self, fmt: str | None) -> None:
        self.dismiss(fmt)


HELP_TEXT = """\
[b]NAS Workbench[/b] — everything works from the keyboard.

[b]Everywhere[/b]
  ?          this help                 ctrl+p   command palette
  escape     back                      q        quit

[b]Runs[/b]
  enter      open the run              n        new run
  /          filter (text)             s / S    sort by next column / reverse
  p          pause                     r        resume (paused or interrupted)
  c          cancel (asks first)       d        delete (asks first)
  space      mark / unmark a run       C        compare the marked runs

[b]Run detail[/b]
  1..7       Overview, Candidates, Curves, Architecture, Pareto, Accuracy table, Specialize
  tab        next widget               p / r / c  pause / resume / cancel the run
  Candidates: enter selects a candidate everywhere and shows its architecture;
              / filters (text, 'feasible', 'acc>0.9'), s sorts by the next column
  Candidates, Architecture: e exports the selected candidate (json / onnx / pt2 /
              torchscript / dot, to run<R>-c<ID>.<ext> here), t trains it from
              scratch as a new run (asks first, then opens it)
  Curves:     a final-training run shows loss and validation accuracy per epoch
  Curves:     x switches step / time, v cycles the searcher metric
  Pareto:     m switches params / MAdds
  Specialize: type constraints ('params<=4M, madds<=150M'), enter solves;
              ctrl+s saves, ctrl+o exports JSON, ctrl+t trains it (new run);
              escape leaves a text box (then 1..7 switch tabs)

[b]Compare[/b]
  m          Pareto fronts on params / MAdds      escape   back to the runs

[b]New run[/b]
  pick a template, edit fields (tab moves), errors show under each field;
  ctrl+l launches the run detached and opens it
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(Text.from_markup(HELP_TEXT))

    def action_close(self) -> None:
        self.dismiss(None)
