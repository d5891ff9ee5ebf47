"""The performance figures P1-P8 and P1b, measured against a running stack (bench/run.sh starts one).

Submissions go through the same service the portal uses (`submission_create`); times come from
the submissions' events and from the first line each `main.py` prints (its own `time.time()`),
all on this machine's clock. Every figure is given as min / median / max over its repeats.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import docker
from common import QUICK, REPO, WORK, Figure, median, say, spread
from django.contrib.auth import get_user_model
from p1b import p1b
from p8 import p8
from portal import p4, p5
from runs import cached_build_costs, container_start_seconds, engine_costs, p1_p2, p3_p6, p7

# --- main ----------------------------------------------------------------------------------------


def print_table(figures: dict[str, Figure], costs: dict[str, list[float]], container_start: list[float]) -> None:
    rows = [("figure", "target", "measured: min / median / max", "seed recipe", "met")]
    for key, fig in figures.items():
        met = {True: "yes", False: "NO", None: "-"}[fig.met]
        rows.append((f"{key} {fig.what}", fig.target, fig.measured(), fig.seed_text(), met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = "+".join("-" * (w + 2) for w in widths)
    print()
    print(f"M2D benchmarks ({'quick' if QUICK else 'full'} run, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    for i, row in enumerate(rows):
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print(line)
    print()
    for key, fig in figures.items():
        if fig.note:
            print(f"{key}: {fig.note.strip()}")
    print()
    print("Where the time goes (min / median / max):")
    print(f"  {'container start (create + start + exit + remove of `true`)':<78} {spread(container_start, 's')}")
    for name, values in costs.items():
        if values:
            print(f"  {name:<78} {spread(values, 's')}")


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    client = docker.from_env(timeout=120)
    figures = {
        "P1": Figure("P1", "resubmission, same requirements: accepted -> image ready", "<= 2 s and >= 20x seed"),
        "P2": Figure("P2", "accepted -> first line of main.py, idle slot", "<= 3 s"),
        "P1b": Figure(
            "P1b",
            "resubmission adding one package not in the runtime image, index warm: accepted -> image ready",
            "<= 3 s",
        ),
        "P1b-cold": Figure("P1b-cold", "the same change, the first time the index sees the package", ""),
        "P1b-pip": Figure("P1b-pip", "the same change with plain pip from upstream, no layer cache: docker build", ""),
        "P1b-reuse": Figure("P1b-reuse", "resubmission only reordering, repeating or commenting requirement lines", ""),
        "P3": Figure("P3", "busy slot: end of one run -> start of the next", "<= 1 s"),
        "P4": Figure("P4", "portal + API p95, 1,000 submissions of 50 researchers, 20 clients, no pause", "<= 100 ms"),
        "P4p": Figure("P4p", "the same, each client pausing about a second between requests", "<= 100 ms"),
        "P5": Figure("P5", "a 500 MB upload: web process RSS growth", "<= 50 MB"),
        "P6": Figure("P6", "100 trivial submissions through one slot", ""),
        "P7": Figure("P7", "first submission with mlflow, numpy, pandas, scikit-learn, torch", "nothing downloaded"),
    }
    costs: dict[str, list[float]] = {
        k: []
        for k in (
            "accepted -> build starts (task dispatch)",
            "build (context upload, cache lookups, code layer)",
            "build with every layer cached (context upload + cache lookups)",
            "image ready -> slot claims it",
            "claimed -> first line (export volume, gateway, forwarder, container, python)",
            "forwarder create + start -> ready",
            "first import of mlflow (in a run container)",
            "last line -> run recorded finished (clean-up, provenance, metrics)",
            "busy slot: last line -> next first line (the real idle gap)",
        )
    }
    out = subprocess.run(
        [sys.executable, "manage.py", "create_researcher", "bench", "--email", "bench@example.org", "--approve"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"could not create the bench researcher: {out.stderr[-500:]}")
    user = get_user_model().objects.get(username="bench")
    say("measuring container start")
    container_start = container_start_seconds(client)
    steps = [
        ("P1/P2", lambda: p1_p2(user, figures, costs)),
        ("P1b", lambda: p1b(user, figures, costs)),
        ("P3/P6", lambda: p3_p6(user, figures, costs, median(container_start))),
        ("P7", lambda: p7(user, figures)),
        ("P5", lambda: p5(user, figures)),
        ("P4", lambda: p4(figures)),
        ("P8", lambda: p8(user, figures)),
        ("costs", lambda: (engine_costs(client, costs), cached_build_costs(costs))),
    ]
    only = os.environ.get("BENCH_ONLY", "")
    for name, step in steps:
        if only and not any(part in name.split("/") for part in only.split(",")):
            continue
        try:
            step()
        except Exception as exc:  # one broken figure must not hide the others
            say(f"{name} failed: {exc!r}")
            for key in name.split("/"):
                if key in figures:
                    figures[key].note += f" Failed: {exc!r}"[:600]
    print_table(figures, costs, container_start)


if __name__ == "__main__":
    main()
