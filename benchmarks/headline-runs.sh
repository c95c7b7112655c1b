#!/usr/bin/env bash
# The JMH runs behind the README's results table, one after another (run them on a quiet machine: nothing
# else running). Each writes its console output to benchmarks/results/latest/NAME.txt; then
# `./vcmm results` renders the README's table from them. Takes about 20 minutes on 2 cores.
#   benchmarks/headline-runs.sh            all runs
#   benchmarks/headline-runs.sh buddy dma  only the runs whose names start with these words
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./vcmm bench -l > /dev/null                       # finds JDK 25 and builds the jar if it is stale
JAVA=$(./vcmm java-home)/bin/java
JAR=benchmarks/target/vcmm-benchmarks.jar
OUT=benchmarks/results/latest
mkdir -p "$OUT"
want=("$@")
run() {
    local name=$1
    shift
    if (( ${#want[@]} )); then
        local w hit=0
        for w in "${want[@]}"; do [[ $name == "$w"* ]] && hit=1; done
        (( hit )) || return 0
    fi
    echo "== $name $(date +%T)"
    "$JAVA" --enable-native-access=ALL-UNNAMED -jar "$JAR" "$@" -jvm "$JAVA" > "$OUT/$name.txt" 2>&1
    sed -n '/^Benchmark /,$p' "$OUT/$name.txt" | grep -v ':stack'
}
run dma 'DmaBenchmark.(dmaWarm|dmaCold|segmentCopyLimit)' -f 3 -wi 3 -i 5
run mapunmap '^dev.vcmm.bench.MapUnmapBenchmark\.(mapUnmapOne|mapUnmapRange4k|rawStoreLimit|agronaOne|agronaRange4k)' \
    -p size=4k -p format=arm64-4k,armv7-short,x86-64 -f 2 -wi 3 -i 5
run buddy-t1 'BuddyBenchmark.allocFree4k' -p impl=lockfree,locked-cache,lockfree-nocache,locked -f 3 -wi 3 -i 5 -t 1
run buddy-t2 'BuddyBenchmark.allocFree4k' -p impl=lockfree,locked-cache,lockfree-nocache,locked -f 3 -wi 3 -i 5 -t 2
run graphscale 'GraphScaleBenchmark' -p live=0,100000 -f 1 -wi 3 -i 5
# the goals' figures over three JVMs (one JVM's figure is bimodal: forks differ by up to 30%)
run graphscale-1m 'GraphScaleBenchmark.backUnback64k' -p live=0,1000000 -f 3 -wi 3 -i 5
run graphscale-floor 'GraphScaleBenchmark.mapUnmapPages64k' -p live=0 -f 3 -wi 3 -i 5
run granule 'GranuleMapUnmapBenchmark' -f 1 -wi 3 -i 5
if (( ${#want[@]} == 0 )) || [[ " ${want[*]} " == *" demo "* ]]; then
    echo "== demo $(date +%T)"
    ./vcmm demo --no-progress > "$OUT/demo.txt"
    grep '^verdict' "$OUT/demo.txt"
fi
{ echo "commit $(git rev-parse --short HEAD)$(git diff --quiet -- . ':!benchmarks/results' || echo ' (with uncommitted changes)')"
  echo "date $(date -u +%FT%TZ)"
  cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ *//')
  echo "machine $(nproc) vCPU${cpu:+ ($cpu)}, $(uname -m), $("$JAVA" -version 2>&1 | head -1)"; } > "$OUT/RUN"
echo "== done $(date +%T); now: ./vcmm results"
