"""Plots latency, deliveries and server CPU per delivery (as a multiple of the floor's) against
offered load from the fan-out benchmark's JSON figures, for every system in them.

    pip install matplotlib
    python3 bench/plot.py docs/benchmarks/fanout.json docs/benchmarks/fanout-latency.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(source: str, target: str) -> None:
    with open(source) as f:
        results = json.load(f)
    colours = {
        "lct": "#1f77b4",
        "lct-cluster": "#2ca02c",
        "floor": "#7f7f7f",
        "socketio": "#d62728",
        "socketioxide": "#ff7f0e",
    }
    names = {
        "lct": "lct (2 pods + Redis)",
        "lct-cluster": "lct (2 pods + 3-shard Redis Cluster)",
        "floor": "floor (2 minimal servers + Redis)",
        "socketio": "Socket.IO + Redis adapter (2 node processes)",
        "socketioxide": "socketioxide + Redis adapter (2 processes)",
    }
    fig, (latency, throughput, cost) = plt.subplots(1, 3, figsize=(19, 5.4))
    for system in results["systems"]:
        name = system["system"]
        offered = [s["offered_deliveries_per_second"] / 1000 for s in system["steps"]]
        colour = colours.get(name, "black")
        label = names.get(name, name)
        latency.plot(offered, [s["latency_p50_ms"] for s in system["steps"]], "o--", color=colour, label=f"{label} p50")
        latency.plot(offered, [s["latency_p99_ms"] for s in system["steps"]], "s-", color=colour, label=f"{label} p99")
        throughput.plot(offered, [s["delivered_per_second"] / 1000 for s in system["steps"]], "o-", color=colour, label=label)
        ratios = [(x, s.get("cpu_per_delivery_vs_floor")) for x, s in zip(offered, system["steps"])]
        ratios = [(x, r) for x, r in ratios if r is not None]
        if ratios:
            cost.plot([x for x, _ in ratios], [r for _, r in ratios], "o-", color=colour, label=label)
        # Past capacity the latency is under-measured (see docs/benchmarks.md): hollow markers.
        for step, x in zip(system["steps"], offered):
            if step.get("saturated"):
                for key, marker in (("latency_p50_ms", "o"), ("latency_p99_ms", "s")):
                    latency.plot([x], [step[key]], marker, color=colour, markerfacecolor="white")
    latency.axhline(50, color="grey", linestyle=":", label="50 ms")
    latency.set_yscale("log")
    latency.set_xlabel("offered load (thousand deliveries/s)")
    latency.set_ylabel("click-to-client latency (ms, log scale)")
    latency.set_title("Latency against offered load (hollow: past capacity, a lower bound)")
    latency.grid(True, which="both", alpha=0.3)
    latency.legend(fontsize=8)
    top = max(s["offered_deliveries_per_second"] for sys in results["systems"] for s in sys["steps"]) / 1000
    throughput.plot([0, top], [0, top], ":", color="grey", label="offered")
    throughput.set_xlabel("offered load (thousand deliveries/s)")
    throughput.set_ylabel("delivered (thousand messages/s)")
    throughput.set_title("Delivered against offered load")
    throughput.grid(True, alpha=0.3)
    throughput.legend(fontsize=8)
    cost.axhline(1, color="grey", linestyle=":")
    cost.set_xlabel("offered load (thousand deliveries/s)")
    cost.set_ylabel("server CPU per delivery / the floor's")
    cost.set_title("Server CPU per delivery against the floor (1 = the floor)")
    cost.grid(True, alpha=0.3)
    if cost.get_legend_handles_labels()[0]:
        cost.legend(fontsize=8)
    else:
        cost.text(0.5, 0.5, "no floor in this run", ha="center", va="center", transform=cost.transAxes)
    machine = results["machine"]
    fig.suptitle(
        f"Lobby fan-out: {results['clients_per_lobby'] * results['lobbies']} WebSocket clients, "
        f"{results['clients_per_lobby']} per lobby, clients and servers on one {machine['cpus']}-core machine"
    )
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    print(f"plot written to {target}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: plot.py <figures.json> <plot.png>")
    main(sys.argv[1], sys.argv[2])
