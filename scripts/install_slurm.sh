#!/usr/bin/env bash
# Installs Debian's Slurm (slurmctld, slurmd, the client commands) and MUNGE for the real-Slurm test when they
# are missing; the test starts its own one-host cluster (tests/slurm_cluster.py), so nothing is configured or
# started here. Exit status 0 when the programs are there afterwards, 1 when they are missing and cannot be
# installed here (no apt, not root, no such packages).
set -uo pipefail
present() { command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged; } >/dev/null
present && exit 0
command -v apt-get >/dev/null || { echo "no apt-get here: install Slurm (slurmctld, slurmd) and MUNGE"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "not root: run sudo apt-get install slurm-wlm munge"; exit 1; }
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
present
