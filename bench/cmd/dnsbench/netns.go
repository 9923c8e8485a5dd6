package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// netnsEnv marks the copy of dnsbench that already runs in its own network
// namespace.
const netnsEnv = "DNSBENCH_IN_NETNS"

// reexecInNetns runs this program again with the same arguments in a new
// network namespace (unshare --net) and returns its exit code. The run
// then owns its loopback: port 53 of 127.0.1.x cannot collide with anything
// else on a shared machine, and the nftables loss rules of scenario 6 drop
// the benchmark's datagrams only. The namespace dies with its last
// process, rules and all, however the run ends.
func reexecInNetns(args []string) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("own path: %w", err)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return 0, fmt.Errorf("unshare not on PATH (util-linux); or pass -netns=false")
	}
	cmd := exec.Command("unshare", append([]string{"--net", "--", self}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	// Ctrl-C reaches the child through the terminal's process group; a
	// SIGTERM sent to this process alone is passed on.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("unshare --net: %w", err)
	}
	go func() {
		for sig := range sigs {
			_ = cmd.Process.Signal(sig)
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("dnsbench in its namespace: %w", err)
	}
	return 0, nil
}

// loopbackUp brings up lo in the new namespace, which also gives it
// 127.0.0.1/8 and the local route for all of 127/8.
func loopbackUp() error {
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set lo up: %w: %s", err, out)
	}
	return nil
}
