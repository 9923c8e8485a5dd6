#!/bin/sh
# boot.sh DIR: runs the real systemd as PID 1 of fresh PID, mount, network,
# UTS, IPC and cgroup namespaces, booting a private view of this machine:
#   /etc, /var    overlays on a tmpfs (the host's files are never written)
#   /usr/bin      DIR/bin (spartan, spartanctl) over the host's /usr/bin,
#                 writable (an upgrade replaces /usr/bin/spartan)
#   /run, /tmp    fresh tmpfs;  /dev a tmpfs with a few nodes
#   /sys, /proc/sys  read only (no host kernel tunable can be changed)
#   /sys/fs/cgroup   cgroup2, rooted at a cgroup of its own (DIR's name)
# DIR must hold bin/ and units/ (copied to /etc/systemd/system) and may
# hold etc/ (copied over /etc, e.g. etc/spartan/spartan.json). systemd
# boots sysd-check.target (basic.target, nothing of multi-user). It prints
# nothing; DIR/pid gets the PID of systemd as seen from the host and
# DIR/console its console output. Stop it with: kill -RTMIN+4 $(cat DIR/pid)
# (systemd's poweroff), or SIGKILL.
set -eu
dir=$(cd "$1" && pwd)
cg=/sys/fs/cgroup/unified
[ -w "$cg/cgroup.procs" ] || cg=/sys/fs/cgroup
[ "$(stat -fc %T "$cg")" = cgroup2fs ] || { echo "boot.sh: no writable cgroup2 at $cg" >&2; exit 1; }
cgdir=$cg/spartan-sysd-$(basename "$dir")
mkdir -p "$cgdir"
echo "$cgdir" >"$dir/cgroup"

if [ "${SYSD_INNER:-}" != 1 ]; then
	rm -f "$dir/pid" "$dir/booting"
	# Into our own cgroup first: the cgroup namespace is rooted where
	# unshare runs.
	SYSD_INNER=1 setsid sh -c 'echo $$ >"$1/cgroup.procs"; exec unshare --pid --fork --mount --propagation private --net --uts --ipc --cgroup "$2" "$3"' sh "$cgdir" "$0" "$dir" \
		</dev/null >"$dir/console" 2>&1 &
	outer=$!
	for _ in $(seq 100); do
		if [ -e "$dir/booting" ]; then
			# unshare's one child is PID 1 of the namespace.
			cat "/proc/$outer/task/$outer/children" | tr -d ' ' >"$dir/pid"
			exit 0
		fi
		sleep 0.1
	done
	echo "boot.sh: systemd did not start; console:" >&2
	cat "$dir/console" >&2
	exit 1
fi

# PID 1 of the new namespaces, before it becomes systemd.
ns=$dir/ns
mkdir -p "$ns"
mount -t tmpfs -o mode=0755 sysd "$ns"
for d in etc var; do
	mkdir -p "$ns/$d/u" "$ns/$d/w"
	mount -t overlay overlay -o "lowerdir=/$d,upperdir=$ns/$d/u,workdir=$ns/$d/w" "/$d"
done
mkdir -p "$ns/bin" "$ns/usrbin/u" "$ns/usrbin/w"
cp "$dir"/bin/* "$ns/bin/"
mount -t overlay overlay -o "lowerdir=$ns/bin:/usr/bin,upperdir=$ns/usrbin/u,workdir=$ns/usrbin/w" /usr/bin

# Only our units and masks: none of the host's enablements.
rm -rf /etc/systemd/system/*
cp -r "$dir"/units/. /etc/systemd/system/
[ -d "$dir/etc" ] && cp -a "$dir/etc/." /etc/
# Units that would act on the kernel or the host rather than on the
# namespace, or have nothing to do in it.
for u in systemd-sysctl.service systemd-modules-load.service systemd-binfmt.service \
	proc-sys-fs-binfmt_misc.automount systemd-remount-fs.service systemd-firstboot.service \
	systemd-random-seed.service systemd-machine-id-commit.service kmod-static-nodes.service \
	systemd-repart.service systemd-pcrphase.service systemd-pcrphase-sysinit.service \
	systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
	systemd-hwdb-update.service ldconfig.service systemd-timesyncd.service \
	sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
	sys-fs-fuse-connections.mount dev-hugepages.mount systemd-journald-audit.socket \
	systemd-ask-password-console.path systemd-ask-password-wall.path getty.target \
	systemd-tmpfiles-clean.timer; do
	ln -sf /dev/null "/etc/systemd/system/$u"
done
cat >/etc/systemd/system/sysd-check.target <<'T'
[Unit]
Description=Spartan systemd check
Requires=basic.target
After=basic.target
AllowIsolate=yes
T
ln -sf sysd-check.target /etc/systemd/system/default.target

# A fresh /tmp, with DIR at its old path again (DIR may be under /tmp).
exec 9<"$dir"
mount -t tmpfs -o mode=1777 tmp /tmp
mkdir -p "$dir"
mount -c --rbind /proc/self/fd/9 "$dir" # -c: mount(8) would resolve the fd link to the hidden path
exec 9<&-
mount -t tmpfs -o mode=0755 run /run

devtmp=$ns/dev
mkdir -p "$devtmp"
mount -t tmpfs -o mode=0755,nosuid dev "$devtmp"
# systemd writes its log to /dev/console: DIR/console.
touch "$devtmp/console"
mount --bind "$dir/console" "$devtmp/console"
for n in null zero full random urandom tty; do
	touch "$devtmp/$n"
	mount --bind "/dev/$n" "$devtmp/$n"
done
mkdir -p "$devtmp/pts" "$devtmp/shm" "$devtmp/mqueue"
mount --move "$devtmp" /dev 2>/dev/null || { umount -l /dev && mount --move "$devtmp" /dev; }
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777 shm /dev/shm
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr

mount -t proc proc /proc
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
if [ -e /proc/sysrq-trigger ]; then
	mount --bind /proc/sysrq-trigger /proc/sysrq-trigger
	mount -o remount,bind,ro /proc/sysrq-trigger
fi
mount -t sysfs -o ro sysfs /sys
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup

hostname spartan-sysd
: >"$dir/booting"
export container=spartan-sysd
# Its own messages go to the journal (journalctl -b inside), else to the console.
exec /lib/systemd/systemd --system --log-target=journal-or-kmsg --log-level=info --show-status=no
