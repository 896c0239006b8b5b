"""PNG plots for the bench scripts: latency CDF, throughput over time, stage breakdown.

Each function takes one series per label (pyraftkv and etcd side by side, or before and
after a change) and writes one PNG. matplotlib is imported only here, when asked for.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # noqa: E402


def latency_cdf(path: str, series: dict[str, list[float]]) -> None:
    """Share of requests answered within x ms, for each sorted list of latencies (s)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, latencies in series.items():
        n = len(latencies)
        if not n:
            continue
        step = max(1, n // 2000)
        xs = [latencies[i] * 1000 for i in range(0, n, step)] + [latencies[-1] * 1000]
        ys = [i / n for i in range(0, n, step)] + [1.0]
        ax.plot(xs, ys, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("share of requests")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def throughput_over_time(path: str, series: dict[str, list[float]]) -> None:
    """Requests completed in each 100 ms, as a rate, from sorted completion times (s)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, finished in series.items():
        if not finished:
            continue
        buckets = [0] * (int(finished[-1] * 10) + 1)
        for t in finished:
            buckets[int(t * 10)] += 1
        ax.plot([i / 10 for i in range(len(buckets))], [b * 10 for b in buckets], label=label)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("requests/s (100 ms buckets)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stage_breakdown(path: str, stages: dict[str, tuple[float, float]]) -> None:
    """p50 and p99 of each stage of a write (ms), in the order the write passes them."""
    names = list(stages)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
    ys = range(len(names))
    ax.barh([y + 0.2 for y in ys], [stages[n][1] for n in names], 0.4, label="p99")
    ax.barh([y - 0.2 for y in ys], [stages[n][0] for n in names], 0.4, label="p50")
    ax.set_yticks(list(ys), names)
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
