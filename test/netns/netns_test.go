package netns

import (
	"net"
	"os"
	"strings"
	"testing"
)

func TestNamespaceIsolatedAndRemoved(t *testing.T) {
	var name string
	t.Run("inside", func(t *testing.T) {
		n := New(t, "self")
		name = n.Name
		out := n.MustRun(t, "ip", "-o", "link", "show")
		if strings.Count(out, "\n") != 1 || !strings.Contains(out, "lo:") || !strings.Contains(out, "UP") {
			t.Fatalf("want only lo, up, in a fresh namespace; got:\n%s", out)
		}
		// In-process: a listener opened inside is reachable inside only.
		var addr string
		if err := n.Do(func() error {
			ifs, err := net.Interfaces()
			if err != nil {
				return err
			}
			if len(ifs) != 1 || ifs[0].Name != "lo" {
				t.Errorf("Do: interfaces %v, want just lo", ifs)
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			addr = l.Addr().String()
			return l.Close()
		}); err != nil {
			t.Fatal(err)
		}
		if addr == "" {
			t.Fatal("Do did not run fn")
		}
		etc := n.EtcPath(t, "resolv.conf")
		if err := os.WriteFile(etc, []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out := n.MustRun(t, "cat", "/etc/resolv.conf"); !strings.Contains(out, "192.0.2.53") {
			t.Fatalf("ip netns exec did not bind /etc/netns/%s/resolv.conf: %q", n.Name, out)
		}
	})
	if name == "" {
		return
	}
	if _, err := os.Stat("/run/netns/" + name); !os.IsNotExist(err) {
		t.Errorf("namespace %s still exists after cleanup (stat: %v)", name, err)
	}
	if _, err := os.Stat("/etc/netns/" + name); !os.IsNotExist(err) {
		t.Errorf("/etc/netns/%s still exists after cleanup (stat: %v)", name, err)
	}
}
