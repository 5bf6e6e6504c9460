"""Drawing ``fx plot``'s PNG files (matplotlib imported here only, with the Agg back end)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from fx_cli.errors import FxError
from fx_cli.plot.data import RunData, Series

MATPLOTLIB_HINT = ("install the plot extra: `make install`, or `pip install -e '.[plot]'` in the fx source folder, "
                   "or `pip install matplotlib`")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise FxError("fx plot needs matplotlib, which is not installed", MATPLOTLIB_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_charts(data: RunData, out: Path) -> list[Path]:
    """Write every chart the data allows to ``out``; return the files written."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    charts: list[tuple[str, Callable[[Any], None], int]] = []
    if data.metrics:
        charts.append(("metrics.png", lambda fig: _metrics(fig, data), len(data.metrics)))
    if any(data.sites.values()):
        keys = sorted({k for per in data.sites.values() for k in per})
        charts.append(("collaborators.png", lambda fig: _sites(fig, data, keys), len(keys)))
    if data.seconds.x:
        charts.append(("round_times.png", lambda fig: _simple(fig, {"seconds": data.seconds}, "seconds per round"), 1))
        charts.append(("bytes.png", lambda fig: _simple(fig, {"received": data.bytes_in, "sent": data.bytes_out},
                                                         "bytes per round", scale=2.0 ** -20, unit="MiB"), 1))
        charts.append(("participants.png", lambda fig: _simple(fig, {"participants": data.participants},
                                                                "participants per round"), 1))
    for name, draw, panels in charts:
        fig = plt.figure(figsize=(7, 2.6 * panels + 0.6))
        draw(fig)
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _metrics(fig: Any, data: RunData) -> None:
    for i, (key, series) in enumerate(sorted(data.metrics.items()), start=1):
        ax = fig.add_subplot(len(data.metrics), 1, i)
        ax.plot(series.x, series.y, marker="o", label="per round")
        if key in data.final and series.x:
            ax.axhline(data.final[key], linestyle="--", color="gray", label="final model")
        _decorate(ax, key)


def _sites(fig: Any, data: RunData, keys: list[str]) -> None:
    for i, key in enumerate(keys, start=1):
        ax = fig.add_subplot(len(keys), 1, i)
        for site, per in sorted(data.sites.items()):
            if key in per:
                ax.plot(per[key].x, per[key].y, marker="o", label=site)
        _decorate(ax, key)


def _simple(fig: Any, lines: dict[str, Series], title: str, scale: float = 1.0, unit: str = "") -> None:
    ax = fig.add_subplot(1, 1, 1)
    for label, series in lines.items():
        ax.plot(series.x, [v * scale for v in series.y], marker="o", label=f"{label} ({unit})" if unit else label)
    _decorate(ax, title)


def _decorate(ax: Any, title: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("round")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    ax.xaxis.get_major_locator().set_params(integer=True)
