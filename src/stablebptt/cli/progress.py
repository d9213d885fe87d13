"""Terminal output: a progress bar per run (epoch, loss, ETA) and result tables, with rich."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from .guard import raise_pending

if TYPE_CHECKING:
    from rich.console import JustifyMethod
    from typing_extensions import Self  # typing.Self from Python 3.11


class EpochProgress:
    """Context manager showing one bar per training run: name, bar, epochs done, last training and test loss,
    time elapsed and time left (about 80 columns for a run name of 8 characters, so nothing is cut on a
    terminal; wide when not on one, as `console`)."""

    def __init__(self, out: Console | None = None):
        self.progress = Progress(
            TextColumn("[bold]{task.description:>3}"),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:<9} test {task.fields[test]:<9}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=out if out is not None else console(),
        )

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def run(self, name: str, epochs: int) -> Callable[[int, dict[str, float]], None]:
        bar = self.progress.add_task(name, total=epochs, loss="-", test="-")

        def update(epoch: int, row: dict[str, float]) -> None:
            raise_pending()  # an interrupt that landed where Python drops exceptions stops the run here
            self.progress.update(bar, completed=epoch, loss=f"{row['loss']:.4g}", test=f"{row['test_loss']:.4g}")

        return update


def print_table(rows: Sequence[dict[str, Any]], title: str = "") -> None:
    """The comparison table; with several seeds the values are medians and the final test loss shows its range."""
    seeds = rows[0].get("seeds", 1) if rows else 1
    table = Table(title=title, caption=f"median over {seeds} seeds [min, max]" if seeds > 1 else None)
    for col in ("method", "final test loss", "best test loss", "final train loss", "s/epoch"):
        table.add_column(col, justify="right")
    for r in rows:
        final = f"{r['final_test_loss']:.4g}"
        if seeds > 1:
            final += f" [{r['final_test_min']:.4g}, {r['final_test_max']:.4g}]"
        table.add_row(
            r["method"],
            final,
            f"{r['best_test_loss']:.4g}",
            f"{r['final_train_loss']:.4g}",
            f"{r['seconds_per_epoch']:.3f}",
        )
    console().print(table)


def console() -> Console:
    """The console tables print to: the terminal's width on a terminal; elsewhere (a pipe, a file, a log) wide
    enough that no cell is wrapped in the middle of a word."""
    plain = Console()
    return plain if plain.is_terminal else Console(width=1000)


def print_status(rows: Sequence[dict[str, Any]], title: str = "") -> None:
    """The table of `stablebptt status`: one row per run (`experiments.report.status_rows`)."""
    table = Table(title=Text(title), title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("run", "left"),
        ("state", "left"),
        ("epochs", "right"),
        ("last test loss", "right"),
        ("note", "left"),
    )
    for col, justify in columns:
        table.add_column(col, justify=justify, overflow="fold")
    for r in rows:
        epochs = f"{r['epochs_done']}/{r['epochs']}" if r["epochs"] is not None else str(r["epochs_done"])
        loss = f"{r['last_test_loss']:.4g}" if r["last_test_loss"] == r["last_test_loss"] else "-"
        table.add_row(
            Text(r["run"]), Text(r["state"], style=STATE_STYLES.get(r["state"], "")), epochs, loss, Text(r["note"])
        )
    console().print(table)


STATE_STYLES = {
    "complete": "green",
    "running": "cyan",
    "interrupted": "yellow",
    "diverged": "magenta",
    "failed": "red",
    "unreadable": "bold red",
}
