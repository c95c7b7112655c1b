#!/usr/bin/env python3
"""Turns JMH JSON result files (-rf json) into the README's markdown tables and ratios.

usage: summarize.py FILE.json...   (any mix of BuddyBenchmark and CasBaseline runs, any thread counts)
"""
import json
import sys

rows = {}  # (bench, method, impl, threads) -> (score, error, failures)
for path in sys.argv[1:]:
    for r in json.load(open(path)):
        cls, method = r["benchmark"].split(".")[-2:]
        impl = r.get("params", {}).get("impl", "-")
        fails = r.get("secondaryMetrics", {}).get("allocFailures", {}).get("score")
        pm = r["primaryMetric"]
        rows[(cls, method, impl, r["threads"])] = (pm["score"], pm["scoreError"], fails)

def fmt(v):
    score, err, fails = v
    s = f"{score:.1f} ± {err:.1f}"
    if fails:
        s += f" ({fails:.0f} NONE)"
    return s

ORDER = ["lockfree", "lockfree-nocache", "locked", "netty", "netty-cache", "-"]
threads = sorted({k[3] for k in rows})
for cls in sorted({k[0] for k in rows}):
    print(f"\n### {cls} (ns/op, per thread; ± is JMH's 99.9% error)\n")
    print("| method | impl | " + " | ".join(f"-t {t}" for t in threads) + " |")
    print("|---|---|" + "---|" * len(threads))
    keys = sorted({(k[1], k[2]) for k in rows if k[0] == cls},
                  key=lambda mi: (mi[0], ORDER.index(mi[1]) if mi[1] in ORDER else len(ORDER), mi[1]))
    for method, impl in keys:
        cells = [fmt(rows[(cls, method, impl, t)]) if (cls, method, impl, t) in rows else "" for t in threads]
        print(f"| {method} | {impl} | " + " | ".join(cells) + " |")

def ratio(method, a, b, t):
    ka, kb = ("BuddyBenchmark", method, a, t), ("BuddyBenchmark", method, b, t)
    if ka in rows and kb in rows:
        return rows[kb][0] / rows[ka][0]  # time of b / time of a = speed-up of a over b
    return None

print("\n### Ratios (speed-up = other's ns/op / lockfree's ns/op; > 1 means lockfree is faster)\n")
print("| comparison | method | threads | speed-up |")
print("|---|---|---|---|")
for a, b in [("lockfree", "locked"), ("lockfree-nocache", "locked"), ("lockfree", "lockfree-nocache"),
             ("lockfree", "netty"), ("lockfree", "netty-cache"), ("lockfree-cache1024", "locked")]:
    for method in ["allocFree4k", "allocFreeMixed"]:
        for t in threads:
            r = ratio(method, a, b, t)
            if r is not None:
                print(f"| {a} vs {b} | {method} | {t} | {r:.2f}x |")
