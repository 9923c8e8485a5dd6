#!/bin/sh
# halt.sh DIR: powers off the systemd that boot.sh DIR started (SIGKILL if
# it has not exited within 20 s) and removes its cgroup.
dir=$1
pid=$(cat "$dir/pid" 2>/dev/null) || exit 0
kill -s RTMIN+4 "$pid" 2>/dev/null
for _ in $(seq 200); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
kill -9 "$pid" 2>/dev/null
for _ in $(seq 50); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
cg=$(cat "$dir/cgroup" 2>/dev/null) && [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
rm -f "$dir/pid"
exit 0
