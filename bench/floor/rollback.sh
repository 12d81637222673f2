# The machine floor of an emergency rollback on one host, run as root through lxc-attach (no SSH):
# atomic flip of current to the previous release, restart, health wait.
# Usage: bash -c "$(cat health.sh rollback.sh)" rollback COMPONENT VERSION PORT INTERVAL
set -eu
c=$1 v=$2 port=$3 interval=$4
root=/opt/$c
ln -sfn "releases/$v" "$root/.current.tmp"
mv -T "$root/.current.tmp" "$root/current"
systemctl restart "$c.service"
health "$port" "$v" "$interval"
