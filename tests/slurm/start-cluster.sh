#!/usr/bin/env bash
# Start a single-node Slurm on localhost (Debian's slurmctld, slurmd, munge; run as root, no systemd,
# no cgroups, no accounting database), to test the cluster profile and bench it for real.
# Install first: apt-get install -y slurmctld slurmd slurm-client munge.  Stop: tests/slurm/stop-cluster.sh
#
# The node announces more than the machine has, so that the profile's requests are schedulable on a small
# CI box: SLURM_TEST_CPUS CPUs (default: the larger of nproc and 32; a group of linear probe jobs asks for
# one CPU per member, and two groups of 10 should run side by side) and SLURM_TEST_GPUS fake GPUs (default 4; generic resources counted by Slurm, no
# device behind them, so torch sees no CUDA and jobs on "auto" run on the CPU). Memory is the real one
# less 1 GiB. Jobs are not confined (TaskPlugin=task/none), so an oversubscribed node only runs slower.
# Finished jobs stay visible to `scontrol show job` for 600 s (MinJobAge), which the tests read.
# Idempotent: running daemons are kept when the configuration is unchanged, restarted when it changed.
set -euo pipefail
host=$(hostname -s)
real_cpus=$(nproc)
cpus=${SLURM_TEST_CPUS:-$(( real_cpus > 32 ? real_cpus : 32 ))}
gpus=${SLURM_TEST_GPUS:-4}
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /etc/munge
chown munge:munge /run/munge /etc/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done

new_conf=$(mktemp)
new_gres=$(mktemp)
trap 'rm -f "$new_conf" "$new_gres"' EXIT
cat > "$new_conf" <<CONF
ClusterName=local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=1024
SchedulerParameters=sched_min_interval=100000,batch_sched_delay=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
MpiDefault=none
ReturnToService=2
GresTypes=gpu
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${memory} Gres=gpu:fake:${gpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
# Each fake GPU is a character device like /dev/null (slurmd counts GPUs by their device files).
fake=/run/slurm-fake-gpus
mkdir -p "$fake"
for i in $(seq 0 $(( gpus - 1 ))); do
  [ -c "$fake/gpu$i" ] || mknod -m 666 "$fake/gpu$i" c 1 3 2>/dev/null || { gpus=1; break; }
done
if [ "$gpus" -gt 1 ] || [ -c "$fake/gpu0" ]; then
  echo "NodeName=${host} Name=gpu Type=fake File=${fake}/gpu[0-$(( gpus - 1 ))]" > "$new_gres"
else  # no mknod here: one fake GPU on /dev/null
  echo "NodeName=${host} Name=gpu Type=fake File=/dev/null" > "$new_gres"
fi
sed -i "s/Gres=gpu:fake:[0-9]*/Gres=gpu:fake:${gpus}/" "$new_conf"

changed=0
cmp -s "$new_conf" /etc/slurm/slurm.conf || changed=1
cmp -s "$new_gres" /etc/slurm/gres.conf || changed=1
if [ "$changed" = 1 ]; then
  if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
    if [ -n "$(squeue -h 2>/dev/null)" ]; then
      echo "the running Slurm has another configuration but jobs in its queue (squeue): not restarting it;" \
           "rerun when they are done, or stop it with tests/slurm/stop-cluster.sh" >&2
      exit 1
    fi
    echo "slurm.conf changed: restarting slurmctld and slurmd"
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
      [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    for _ in $(seq 100); do
      pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break
      sleep 0.1
    done
  fi
  install -m 644 "$new_conf" /etc/slurm/slurm.conf
  install -m 644 "$new_gres" /etc/slurm/gres.conf
fi

pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
for _ in $(seq 100); do
  # a node drained by an earlier configuration (e.g. fewer GPUs) comes back
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(drained|draining|inval)'; then
    scontrol update nodename="$host" state=resume 2>/dev/null || true
  fi
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    sinfo -o "%P %a %D %T %c %m %G"
    exit 0
  fi
  sleep 0.2
done
echo "slurm did not come up; see /var/log/slurm/" >&2
exit 1
