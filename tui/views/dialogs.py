"""The dialogs actions go through: a confirm that states the consequence (default No), the same
with the batch or queue name to type for big actions, and the filter prompt of the lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What a confirm says: the action and its object, the consequences with counts, the label of
    the confirming button, and (for big actions) the name that must be typed."""

    title: str
    body: str
    confirm: str
    typed: str | None = None


class ConfirmDialog(ModalScreen[bool]):
    """``y`` confirms, ``n`` and ``escape`` abort; the focused button is No, so ``enter`` aborts too.
    With ``typed`` set, the name must be typed before ``enter`` or the button confirms."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Confirm", show=False),
        Binding("n", "abort", "No", show=False),
        Binding("escape", "abort", "No", show=False),
    ]

    def __init__(self, confirmation: Confirmation) -> None:
        super().__init__(classes="dialog-screen")
        self.confirmation = confirmation

    def compose(self) -> ComposeResult:
        c = self.confirmation
        with Vertical(id="dialog", classes="-typed" if c.typed else ""):
            yield Static(c.title, id="dialog-title", markup=False)
            yield Static(c.body, id="dialog-body", markup=False)
            if c.typed is not None:
                yield Static(f"Type {c.typed} to confirm:", id="dialog-prompt", markup=False)
                yield Input(placeholder=c.typed, id="dialog-input", select_on_focus=False)
            with Horizontal(id="dialog-buttons"):
                # with a typed confirm the keys type into the box: enter confirms, escape aborts
                typed = c.typed is not None
                yield Button("No (esc)" if typed else "No (n)", id="no", variant="primary")
                yield Button(f"{c.confirm} ({'enter' if typed else 'y'})", id="yes", variant="error", disabled=typed)

    def on_mount(self) -> None:
        if self.confirmation.typed is not None:
            self.query_one("#dialog-input", Input).focus()
        else:
            self.query_one("#no", Button).focus()

    @property
    def typed_ok(self) -> bool:
        if self.confirmation.typed is None:
            return True
        return self.query_one("#dialog-input", Input).value.strip() == self.confirmation.typed

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "confirm" and not self.typed_ok:
            return None
        return True

    def action_confirm(self) -> None:
        if self.typed_ok:
            self.dismiss(True)

    def action_abort(self) -> None:
        self.dismiss(False)

    @on(Input.Changed, "#dialog-input")
    def _typed(self) -> None:
        self.query_one("#yes", Button).disabled = not self.typed_ok
        self.refresh_bindings()

    @on(Input.Submitted, "#dialog-input")
    def _submitted(self) -> None:
        if self.typed_ok:
            self.dismiss(True)
        else:
            self.query_one("#dialog-prompt", Static).add_class("-mismatch")

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(False)


FILTER_HELP = "queue:NAME  batch:ID  exc:CLASS  name:JOB  and free text · enter applies, esc keeps"
# the batch list has no exception facet; free text finds a batch's id, name or tenant
BATCH_FILTER_HELP = "queue:NAME  batch:ID  name:TEXT  and free text · enter applies, esc keeps"
# a table's own filter (Events, Queue detail, a batch's failed jobs, …): plain text, no facets
ROWS_FILTER_HELP = "text any column of a row shows, in any case · enter applies, esc keeps"


class FilterDialog(ModalScreen[str | None]):
    """The filter of a list, as text (with facets where the list has them, as ``hint`` says);
    returns the new text, or None to keep the old."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "keep", "Keep", show=False)]

    def __init__(
        self,
        current: str,
        *,
        what: str,
        hint: str = FILTER_HELP,
        placeholder: str = "queue:judge exc:TimeoutError",
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.current = current
        self.what = what
        self.hint = hint
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-filter"):
            yield Static(f"Filter {self.what}", id="dialog-title", markup=False)
            yield Input(value=self.current, placeholder=self.placeholder, id="filter-input")
            yield Static(self.hint, id="dialog-body", markup=False)

    def on_mount(self) -> None:
        self.query_one("#filter-input", Input).focus()

    def action_keep(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#filter-input")
    def _apply(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())
