#!/usr/bin/env bash
# Stop the single-node Slurm started by start-cluster.sh, and wait until its daemons are gone.
for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
pkill -x munged 2>/dev/null
for _ in $(seq 100); do
  pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || pgrep -x munged >/dev/null || exit 0
  sleep 0.1
done
echo "slurm daemons still running after 10 s" >&2
exit 0
