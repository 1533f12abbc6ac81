#!/usr/bin/env bash
# A one-node SLURM cluster on 127.0.0.1 for zerowizard's tests (Debian 12: SLURM 22.05 + munge).
#
#   bash scripts/setup_local_slurm.sh start    install if needed, start munged/slurmctld/slurmd, smoke-test
#   bash scripts/setup_local_slurm.sh stop     stop the daemons this script started (by PID file)
#   bash scripts/setup_local_slurm.sh status   exit 0 when the cluster answers and the node is usable
#
# Idempotent: `start` on a healthy cluster with the same configuration returns at once and leaves
# running jobs alone; a changed configuration restarts the SLURM daemons. Needs root; no systemd
# (the daemons are started by hand and stopped by PID). Concurrent callers are serialised by flock.
#
# Exit status: 0 ok; 1 a daemon would not start; 2 usage; 3 the packages cannot be installed.
#
# Environment:
#   ZW_SLURM_CPUS       CPUs the node advertises (default: max(4, nproc)); more than the machine
#                       has is fine (SlurmdParameters=config_overrides), so two ranks fit on 2 cores
#   ZW_SLURM_PARTITION  partition name (default: debug)
#   ZW_SLURM_CTLD_PORT, ZW_SLURM_SLURMD_PORT   the daemons' ports (default: 6917, 6918)
#
# Its configuration is $STATE/slurm.conf (not /etc/slurm): clients need SLURM_CONF set to it.
set -euo pipefail

ACTION=${1:-start}
NODE=$(hostname -s)
NPROC=$(nproc)
CPUS=${ZW_SLURM_CPUS:-$(( NPROC > 4 ? NPROC : 4 ))}
PARTITION=${ZW_SLURM_PARTITION:-debug}
CTLD_PORT=${ZW_SLURM_CTLD_PORT:-6917}
SLURMD_PORT=${ZW_SLURM_SLURMD_PORT:-6918}
# Everything of this cluster is its own: configuration, controller state, spool, PID files and
# logs live under zerowizard-slurm directories, so another SLURM cluster on the machine (its
# /etc/slurm/slurm.conf, its /var/spool/slurmctld with another ClusterName) is never touched and
# never stops this one from starting. Clients find the configuration through SLURM_CONF, which
# this script exports for its own calls and tests/slurm/conftest.py sets for the tests.
STATE=/run/zerowizard-slurm          # our own bookkeeping: lock, PID files, config hash, slurm.conf
CONF=$STATE/slurm.conf
SPOOL=/var/spool/zerowizard-slurm    # StateSaveLocation (ctld/) and SlurmdSpoolDir (d/)
LOGDIR=/var/log/zerowizard-slurm
CTLD_PID=$STATE/slurmctld.pid
SLURMD_PID=$STATE/slurmd.pid
export SLURM_CONF=$CONF
PKGS="slurmctld slurmd slurm-client munge"

say() { echo "[setup_local_slurm] $*" >&2; }
die() { say "error: $*"; exit 1; }
no_pkgs() { say "error: $*"; exit 3; }   # exit 3: SLURM cannot be installed here (tests skip)

case "$ACTION" in start|stop|status) ;; *) echo "usage: $0 start|stop|status" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts system daemons)"
mkdir -p "$STATE"
exec 9>"$STATE/lock"
flock -w 300 9 || die "another setup_local_slurm.sh holds $STATE/lock"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop_pid() {  # SIGTERM the PID in file $1, wait up to 15 s, then SIGKILL
  local f=$1 pid
  if ! alive "$f"; then rm -f "$f"; return 0; fi
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && { say "pid $pid ignored SIGTERM; SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
  rm -f "$f"
}
retry() { local n=$1; shift; for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
munge_ok() { munge -n | unmunge; }
ctld_ok() { scontrol ping | grep -q 'is UP'; }
node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n1; }
node_ok() { case "$(node_state)" in idle*|mix*|alloc*|comp*) return 0 ;; *) return 1 ;; esac; }
owned() { grep -qx "$1" "$STATE/owned" 2>/dev/null; }
own() { owned "$1" || echo "$1" >> "$STATE/owned"; }

stop_slurm() { stop_pid "$SLURMD_PID"; stop_pid "$CTLD_PID"; }

if [ "$ACTION" = status ]; then
  command -v sinfo >/dev/null && retry 1 munge_ok && retry 1 ctld_ok && node_ok \
    && { say "up: $(sinfo -h -o '%P %t %N cpus=%c')"; exit 0; }
  say "down"; exit 1
fi

if [ "$ACTION" = stop ]; then
  stop_slurm
  if owned /run/munge/munged.pid; then stop_pid /run/munge/munged.pid; fi
  rm -f "$STATE/owned" "$STATE/conf.sha"
  say "stopped"
  exit 0
fi

# ---- start --------------------------------------------------------------------------------
# 1. Packages (postinst cannot start services without systemd; that is fine).
missing=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $PKGS 2>/dev/null | awk '$1!="ii"{print $2}' || true)
if [ -n "$missing" ] || ! dpkg-query -W $PKGS >/dev/null 2>&1; then
  command -v apt-get >/dev/null || no_pkgs "$PKGS missing and no apt-get to install them"
  say "installing $PKGS"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || no_pkgs "apt-get update failed"
  apt-get install -y -qq --no-install-recommends $PKGS >/dev/null || no_pkgs "apt-get install $PKGS failed"
fi

# 2. munge: a key, then munged (as user munge), unless one already answers.
if [ ! -s /etc/munge/munge.key ]; then
  install -d -o munge -g munge -m 0700 /etc/munge
  mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if ! retry 1 munge_ok; then
  say "starting munged"
  rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
  runuser -u munge -- /usr/sbin/munged 9>&-     # forks; writes /run/munge/munged.pid
  own /run/munge/munged.pid
  retry 50 munge_ok || { tail -n 20 /var/log/munge/munged.log >&2; die "munged does not answer"; }
fi

# 3. slurm.conf: everything on 127.0.0.1, the node's CPUs oversubscribable.
mkdir -p "$SPOOL/ctld" "$SPOOL/d" "$LOGDIR"
MEM=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)
NEW=$(mktemp)
cat > "$NEW" <<EOF
# written by zerowizard scripts/setup_local_slurm.sh: one node on loopback, for tests
ClusterName=zerowizard
SlurmctldHost=${NODE}(127.0.0.1)
# Ports of our own, so that a real cluster's daemons on this machine (6817/6818) are not in the way
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No cgroups without systemd: track processes by parentage, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
# Let the node advertise more CPUs than it has (two ranks on a 2-core machine)
SlurmdParameters=config_overrides
KillWait=5
MinJobAge=60
StateSaveLocation=${SPOOL}/ctld
SlurmdSpoolDir=${SPOOL}/d
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${SLURMD_PID}
SlurmctldLogFile=${LOGDIR}/slurmctld.log
SlurmdLogFile=${LOGDIR}/slurmd.log
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM:-1024} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
SHA=$(sha256sum "$NEW" | cut -d' ' -f1)

if [ "$(cat "$STATE/conf.sha" 2>/dev/null)" = "$SHA" ] && cmp -s "$NEW" "$CONF" \
   && alive "$CTLD_PID" && alive "$SLURMD_PID" && retry 5 ctld_ok && node_ok; then
  rm -f "$NEW"
  say "already up: $(sinfo -h -o '%P %t %N cpus=%c')"
  exit 0
fi

# 4. (Re)start slurmctld (-c: cold, forget old jobs) and slurmd with the new configuration.
stop_slurm
install -m 0644 "$NEW" "$CONF"; rm -f "$NEW"
say "starting slurmctld and slurmd (node $NODE at 127.0.0.1, CPUs=$CPUS, RealMemory=${MEM:-1024}MB)"
slurmctld -c -f "$CONF" 9>&-                      # (no lock fd) daemonizes; writes $CTLD_PID
own "$CTLD_PID"
retry 100 ctld_ok || { tail -n 20 "$LOGDIR/slurmctld.log" >&2; die "slurmctld does not answer"; }
slurmd -N "$NODE" -f "$CONF" 9>&-                 # daemonizes; writes $SLURMD_PID
own "$SLURMD_PID"
for i in $(seq 150); do
  node_ok && break
  case "$(node_state)" in down*|drain*|fail*) [ $((i % 25)) = 0 ] && scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;; esac
  sleep 0.2
done
node_ok || { tail -n 20 "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log" >&2; die "node $NODE not usable (state '$(node_state)')"; }
(cd /tmp && timeout 60 srun -N1 -n1 true 9>&-) || die "srun smoke test failed"
echo "$SHA" > "$STATE/conf.sha"
say "ready: $(sinfo -h -o '%P %t %N cpus=%c')"
