"""New run: a template from ``sample_configs/`` (or any YAML file), a form over its fields,
inline validation with the CLI's own messages, and a detached launch that opens the run.

The form edits the common fields; everything else in the template (training spec, backend
details, space overrides) is kept as it is. Validation is :func:`workbench.config.parse_config`
(the function ``nasw run`` uses), run in a thread worker as you type; the error appears under
the field it names.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Header, Input, Label, OptionList, Static

from workbench.widgets.footer import KeyFooter

#: form field id -> (config path, label, placeholder)
FIELDS: dict[str, tuple[str, str, str]] = {
    "name": ("name", "Name", "a label for the run"),
    "space": ("space.name", "Search space", "layerwise, cell, mbconv, rcas"),
    "preset": ("space.preset", "Space preset", "e.g. ponas-digits (empty: the space's default)"),
    "searcher": ("searcher.name", "Searcher", "random, epnas, pnas, ponas, rcas"),
    "searcher-preset": ("searcher.preset", "Searcher preset", "empty: paper defaults"),
    "params": ("searcher.params", "Searcher parameters", "key=value, key=value"),
    "evaluator": ("evaluator", "Evaluator", "synthetic or train"),
    "dataset": ("dataset.name", "Dataset", "digits, cifar10, mnist, npz, …"),
    "constraints": ("constraints", "Constraints", "params<=60k, madds<=3M"),
    "candidates": ("budget.candidates", "Budget: candidates", "e.g. 200"),
    "wall-time": ("budget.wall_time_s", "Budget: wall time (s)", "empty: no time limit"),
    "backend": ("backend.kind", "Backend", "local or ray"),
    "workers": ("backend.workers", "Workers", "empty: one per GPU, else cpus/2; 0: in-process"),
    "seed": ("seed", "Seed", "0"),
}
INT_FIELDS = {"candidates", "workers", "seed"}
FLOAT_FIELDS = {"wall-time"}


def template_dirs() -> list[Path]:
    here = Path(__file__).resolve().parents[1]
    dirs = [Path.cwd() / "sample_configs", here.parent / "sample_configs", here / "sample_configs"]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def templates() -> list[Path]:
    return sorted({p.resolve() for d in template_dirs() for p in d.glob("*.yaml")},
                  key=lambda p: (p.name != "quickstart.yaml", p.name))


def get_path(data: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        if not isinstance(data.get(part), dict):
            data[part] = {}
        data = data[part]
    if value is None or value == "" or value == {}:
        data.pop(parts[-1], None)
    else:
        data[parts[-1]] = value


def field_text(field_id: str, value: Any) -> str:
    """Config value -> the text shown in the form."""
    if value is None:
        return ""
    if field_id == "params":
        return ", ".join(f"{k}={v}" for k, v in (value or {}).items())
    if field_id == "constraints":
        from searchers.constraints import parse_constraint

        out = []
        for spec in value or []:
            try:
                out.append(str(parse_constraint(spec)))
            except Exception:
                out.append(str(spec))
        return ", ".join(out)
    return str(value)


def form_value(field_id: str, text: str) -> Any:
    """Form text -> config value (kept as text when it does not parse: the validator says so)."""
    import yaml

    text = text.strip()
    if not text:
        return None
    if field_id == "params":
        params: dict[str, Any] = {}
        for item in text.split(","):
            key, _, raw = item.partition("=")
            if key.strip():
                try:
                    params[key.strip()] = yaml.safe_load(raw.strip()) if raw.strip() else None
                except yaml.YAMLError:
                    params[key.strip()] = raw.strip()
        return params
    if field_id == "constraints":
        return [c.strip() for c in text.split(",") if c.strip()]
    if field_id in INT_FIELDS:
        try:
            return int(text)
        except ValueError:
            return text
    if field_id in FLOAT_FIELDS:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def field_for_error(error_field: str) -> str | None:
    """The form field an error's path (``budget.candidates``, ``constraints[0].value``) names."""
    head = error_field.split("[")[0]
    matches = [fid for fid, (path, _, _) in FIELDS.items()
               if head == path or head.startswith(path + ".")]
    if matches:
        return max(matches, key=lambda fid: len(FIELDS[fid][0]))
    # an error on a whole section ("budget", "space"): the first field of that section
    return next((fid for fid, (path, _, _) in FIELDS.items() if path.startswith(head + ".")),
                None)


class Validated(Message):
    def __init__(self, generation: int, error: Any) -> None:
        super().__init__()
        self.generation = generation
        self.error = error


class NewRunScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+l", "launch", "Launch"),
        Binding("ctrl+o", "open_file", "Load file"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.base: dict[str, Any] = {}
        self.template: Path | None = None
        self.generation = 0
        self.valid = False
        self.loading = False

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="new-run-form"):
            yield Label("Template (enter loads it)", classes="section-label")
            yield OptionList(*[p.name for p in templates()] or ["(no sample_configs found)"],
                             id="template-list")
            with Horizontal(classes="field-row"):
                yield Label("…or a YAML file", classes="field-label")
                yield Input(placeholder="path/to/config.yaml (enter loads it)", id="file-input",
                            compact=True)
            for field_id, (_, label, placeholder) in FIELDS.items():
                with Horizontal(classes="field-row"):
                    yield Label(label, classes="field-label")
                    yield Input(placeholder=placeholder, id=f"field-{field_id}", compact=True)
                yield Static("", id=f"error-{field_id}", classes="field-error")
        yield Static("", id="new-run-status")
        yield KeyFooter()

    def on_mount(self) -> None:
        found = templates()
        if found:
            self.load_template(found[0])
        self.query_one("#template-list", OptionList).focus()

    # -- templates -----------------------------------------------------------------------
    @on(OptionList.OptionSelected, "#template-list")
    def template_chosen(self, event: OptionList.OptionSelected) -> None:
        found = templates()
        if event.option_index < len(found):
            self.load_template(found[event.option_index])
            self.query_one("#field-name", Input).focus()

    @on(Input.Submitted, "#file-input")
    def file_chosen(self, event: Input.Submitted) -> None:
        path = Path(event.value.strip()).expanduser()
        self.load_template(path)

    def action_open_file(self) -> None:
        self.query_one("#file-input", Input).focus()

    def load_template(self, path: Path) -> None:
        import yaml

        status = self.query_one("#new-run-status", Static)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            status.update(Text(f"config: cannot load {path}: {err}", style="red"))
            return
        if not isinstance(data, dict):
            status.update(Text(f"config: {path} is not a mapping of settings", style="red"))
            return
        self.base = data
        self.template = path
        self.loading = True
        for field_id, (config_path, _, _) in FIELDS.items():
            self.query_one(f"#field-{field_id}", Input).value = field_text(
                field_id, get_path(data, config_path))
        self.loading = False
        self.validate_form()

    # -- validation ----------------------------------------------------------------------
    def config_data(self) -> dict[str, Any]:
        data = copy.deepcopy(self.base)
        for field_id, (config_path, _, _) in FIELDS.items():
            text = self.query_one(f"#field-{field_id}", Input).value
            set_path(data, config_path, form_value(field_id, text))
        return data

    @on(Input.Changed)
    def field_changed(self, event: Input.Changed) -> None:
        if not self.loading and (event.input.id or "").startswith("field-"):
            self.validate_form()

    def validate_form(self) -> None:
        self.generation += 1
        self.check(self.generation, self.config_data())

    @work(thread=True, exclusive=True, group="validate")
    def check(self, generation: int, data: dict[str, Any]) -> None:
        from searchers.errors import NaswError
        from workbench.config import parse_config

        try:
            parse_config(data)
        except NaswError as err:
            self.post_message(Validated(generation, err))
            return
        except Exception as err:  # a bug elsewhere must not take the form down
            self.post_message(Validated(generation, err))
            return
        self.post_message(Validated(generation, None))

    def on_validated(self, message: Validated) -> None:
        if message.generation != self.generation:
            return
        for field_id in FIELDS:
            box = self.query_one(f"#error-{field_id}", Static)
            box.update("")
            box.display = False
        status = self.query_one("#new-run-status", Static)
        err = message.error
        self.valid = err is None
        if err is None:
            status.set_classes("ok")
            status.update(f"valid · ctrl+l launches it detached"
                          f" ({self.template.name if self.template else 'form'})")
            return
        status.set_classes("error")
        status.update(str(err))
        target = field_for_error(getattr(err, "field", "") or "")
        if target is not None:
            box = self.query_one(f"#error-{target}", Static)
            box.update(str(err))
            box.display = True

    # -- launch --------------------------------------------------------------------------
    def action_launch(self) -> None:
        if not self.valid:
            self.notify("fix the errors first (shown under the fields)", severity="error")
            return
        self.query_one("#new-run-status", Static).update("launching…")
        self.launch(self.config_data())

    @work(thread=True, exclusive=True, group="launch")
    def launch(self, data: dict[str, Any]) -> None:
        from workbench import tui_data

        try:
            run_id = tui_data.launch_run(self.app.db_path, data)
        except Exception as err:
            self.app.call_from_thread(self.launch_failed, str(err))
            return
        self.app.call_from_thread(self.launched, run_id)

    def launch_failed(self, message: str) -> None:
        status = self.query_one("#new-run-status", Static)
        status.set_classes("error")
        status.update(f"launch failed: {message}")

    def launched(self, run_id: int) -> None:
        self.app.pop_screen()
        self.app.open_run(run_id)

    def action_back(self) -> None:
        self.app.pop_screen()
