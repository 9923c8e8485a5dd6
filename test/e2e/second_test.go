package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spartan-dns/spartan/test/harness"
)

// A second daemon with the same addresses refuses to start, naming the
// address, instead of binding beside the first through SO_REUSEPORT and
// quietly taking part of its queries; the first keeps serving. Each case
// shares one more address than none: the DNS ports, or only the HTTP port.
func TestSecondDaemonRefusesToStart(t *testing.T) {
	bin, _ := harness.Build(t)
	first := harness.Start(t, harness.Options{HTTP: true})
	tests := []struct {
		name   string
		config map[string]any // over the first daemon's own config
		want   string
	}{
		{"same config", nil, "udp " + first.Addr.String()},
		{"same http_listen", map[string]any{"bind_ips": []string{"127.0.0.1"}, "udp_port": 2, "tcp_port": 2, "ctl_socket": t.TempDir() + "/ctl.sock"}, "tcp " + first.HTTPAddr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := first.ConfigPath
			if tc.config != nil {
				path = harness.WriteConfig(t, first.ConfigPath, tc.config)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, "-config", path).CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 {
				t.Fatalf("second daemon: err %v, want exit 1\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "in use") {
				t.Errorf("output does not say %q is in use:\n%s", tc.want, out)
			}
		})
	}
	if r, err := harness.Query(first.Addr, "ready.spartan", dns.TypeA, false, 2*time.Second); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("first daemon after the second's attempts: %v %v", r, err)
	}
}
