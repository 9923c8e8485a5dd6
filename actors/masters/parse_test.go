package masters

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// realExhibitor is the shape Exhibitor 1.5 serves at
// /exhibitor/v1/cluster/status on a DC/OS master.
const realExhibitor = `[
  {"code":3,"description":"serving","hostname":"10.0.4.160","isLeader":false},
  {"code":3,"description":"serving","hostname":"10.0.5.12","isLeader":true},
  {"code":3,"description":"serving","hostname":"10.0.6.77","isLeader":false}
]`

func TestParseExhibitor(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    []string
		wantErr string
	}{
		{name: "real", body: realExhibitor, want: []string{"10.0.4.160", "10.0.5.12", "10.0.6.77"}},
		{name: "hostnames and a down server", body: `[{"code":3,"description":"serving","hostname":"master-1.example.com","isLeader":true},
			{"code":1,"description":"down","hostname":"master-2","isLeader":false}]`, want: []string{"master-1.example.com", "master-2"}},
		{name: "extra fields", body: `[{"hostname":"10.0.0.1","code":3,"zxid":42}]`, want: []string{"10.0.0.1"}},
		{name: "ipv6", body: `[{"hostname":"fd00::1"}]`, want: []string{"fd00::1"}},
		{name: "empty array", body: `[]`, wantErr: "no servers"},
		{name: "null", body: `null`, wantErr: "no servers"},
		{name: "empty body", body: ``, wantErr: "not a JSON array"},
		{name: "object", body: `{"hostname":"10.0.0.1"}`, wantErr: "not a JSON array"},
		{name: "array of strings", body: `["10.0.0.1"]`, wantErr: "not a JSON array"},
		{name: "garbage", body: `<html>502 Bad Gateway</html>`, wantErr: "not a JSON array"},
		{name: "truncated", body: `[{"hostname":"10.0.0.1"`, wantErr: "not a JSON array"},
		{name: "trailing garbage", body: `[{"hostname":"10.0.0.1"}] x`, wantErr: "not a JSON array"},
		{name: "hostname wrong type", body: `[{"hostname":17}]`, wantErr: "not a JSON array"},
		{name: "missing hostname", body: `[{"hostname":"10.0.0.1"},{"code":3}]`, wantErr: "entry 1 has no hostname"},
		{name: "empty hostname", body: `[{"hostname":" "}]`, wantErr: "entry 0 has an empty hostname"},
		{name: "null entry", body: `[null]`, wantErr: "entry 0 is null"},
		{name: "junk hostname", body: `[{"hostname":"10.0.0.1; rm -rf /"}]`, wantErr: "not a valid IP or DNS name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseExhibitor([]byte(tt.body))
			checkErr(t, err, tt.wantErr)
			if !slices.Equal(got, tt.want) {
				t.Errorf("hosts = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseMasterList(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    []string
		wantErr string
	}{
		{name: "one", body: `["10.0.0.1"]`, want: []string{"10.0.0.1"}},
		{name: "order kept", body: `["10.0.0.3", "10.0.0.1", "10.0.0.3"]`, want: []string{"10.0.0.3", "10.0.0.1", "10.0.0.3"}},
		{name: "whitespace and newline", body: "[\n \"10.0.0.2\" ,\"10.0.0.1\"\n]\n", want: []string{"10.0.0.2", "10.0.0.1"}},
		{name: "ipv6", body: `["fd00::2"]`, want: []string{"fd00::2"}},
		{name: "empty", body: `[]`, wantErr: "empty"},
		{name: "null", body: `null`, wantErr: "empty"},
		{name: "empty file", body: ``, wantErr: "not a JSON array"},
		{name: "not json", body: `10.0.0.1`, wantErr: "not a JSON array"},
		{name: "one per line", body: "10.0.0.1\n10.0.0.2\n", wantErr: "not a JSON array"},
		{name: "numbers", body: `[1, 2]`, wantErr: "not a JSON array"},
		{name: "objects", body: `[{"ip":"10.0.0.1"}]`, wantErr: "not a JSON array"},
		{name: "hostname", body: `["10.0.0.1", "master-1"]`, wantErr: `entry 1 ("master-1") is not an IP`},
		{name: "with port", body: `["10.0.0.1:5050"]`, wantErr: "is not an IP"},
		{name: "bad octet", body: `["10.0.0.256"]`, wantErr: "is not an IP"},
		{name: "null entry", body: `["10.0.0.1", null]`, wantErr: "entry 1 is null"},
		{name: "truncated", body: `["10.0.0.1"`, wantErr: "not a JSON array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMasterList([]byte(tt.body))
			checkErr(t, err, tt.wantErr)
			if !equalIPs(got, tt.want) {
				t.Errorf("ips = %v, want %v", got, tt.want)
			}
		})
	}
}

// masterInfoJSON is what Mesos 1.x writes to json.info_* (trimmed of
// nothing: the real document has these fields).
const masterInfoJSON = `{"address":{"hostname":"ip-10-0-4-160.ec2.internal","ip":"10.0.4.160","port":5050},
"capabilities":[{"type":"AGENT_UPDATE"},{"type":"AGENT_DRAINING"}],"hostname":"ip-10-0-4-160.ec2.internal",
"id":"5f3d6b7e-1e7b-4c4a-9d0f-3b1b2a6d8c11","ip":2684616714,"pid":"master@10.0.4.160:5050","port":5050,
"version":"1.13.0","domain":{"fault_domain":{"region":{"name":"aws/us-east-1"},"zone":{"name":"aws/us-east-1a"}}}}`

func TestParseMasterInfo(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantIP   string
		wantHost string
		wantErr  string
	}{
		{name: "real", body: masterInfoJSON, wantIP: "10.0.4.160"},
		{name: "address.ip wins over hostname", body: `{"address":{"ip":"10.0.0.1","port":5050},"hostname":"10.9.9.9"}`, wantIP: "10.0.0.1"},
		{name: "no address, hostname IP", body: `{"hostname":"10.0.0.2","id":"x","pid":"master@10.0.0.2:5050"}`, wantIP: "10.0.0.2"},
		{name: "no address, hostname name", body: `{"hostname":"master-1.example.com","port":5050}`, wantHost: "master-1.example.com"},
		{name: "address without ip", body: `{"address":{"hostname":"m1","port":5050},"hostname":"m1.example.com"}`, wantHost: "m1.example.com"},
		{name: "only address.hostname", body: `{"address":{"hostname":"10.0.0.3","port":5050}}`, wantIP: "10.0.0.3"},
		{name: "ipv6", body: `{"address":{"ip":"fd00::5"}}`, wantIP: "fd00::5"},
		{name: "bad address.ip", body: `{"address":{"ip":"10.0.0.300"},"hostname":"m1"}`, wantErr: `address.ip "10.0.0.300" is not an IP`},
		{name: "nothing", body: `{"id":"x","port":5050}`, wantErr: "neither address.ip nor hostname"},
		{name: "empty object", body: `{}`, wantErr: "neither address.ip nor hostname"},
		{name: "null", body: `null`, wantErr: "null"},
		{name: "array", body: `[{"hostname":"10.0.0.1"}]`, wantErr: "not a JSON object"},
		{name: "protobuf bytes", body: "\x0a\x24\x35\x66\x33\x64\x10\x8a\x88", wantErr: "not a JSON object"},
		{name: "empty", body: ``, wantErr: "not a JSON object"},
		{name: "ip wrong type", body: `{"address":{"ip":167772161}}`, wantErr: "not a JSON object"},
		{name: "junk hostname", body: `{"hostname":"a b"}`, wantErr: "not a valid IP or DNS name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip, host, err := ParseMasterInfo([]byte(tt.body))
			checkErr(t, err, tt.wantErr)
			var want netip.Addr
			if tt.wantIP != "" {
				want = netip.MustParseAddr(tt.wantIP)
			}
			if ip != want || host != tt.wantHost {
				t.Errorf("got (%v, %q), want (%v, %q)", ip, host, want, tt.wantHost)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{name: "nil", in: nil, want: nil},
		{name: "sorted numerically not lexically", in: []string{"10.0.0.10", "10.0.0.9", "10.0.0.1"}, want: []string{"10.0.0.1", "10.0.0.9", "10.0.0.10"}},
		{name: "dedupe", in: []string{"10.0.0.2", "10.0.0.1", "10.0.0.2", "10.0.0.1"}, want: []string{"10.0.0.1", "10.0.0.2"}},
		{name: "mapped v6 is the v4 address", in: []string{"::ffff:10.0.0.1", "10.0.0.1"}, want: []string{"10.0.0.1"}},
		{name: "v4 before v6", in: []string{"fd00::1", "10.0.0.1"}, want: []string{"10.0.0.1", "fd00::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in []netip.Addr
			for _, s := range tt.in {
				in = append(in, netip.MustParseAddr(s))
			}
			orig := slices.Clone(in)
			got := Normalize(in)
			if !equalIPs(got, tt.want) {
				t.Errorf("Normalize(%v) = %v, want %v", tt.in, got, tt.want)
			}
			if !slices.Equal(in, orig) {
				t.Errorf("Normalize modified its input: %v", in)
			}
		})
	}
	if got := Normalize([]netip.Addr{{}}); len(got) != 0 {
		t.Errorf("Normalize kept the zero Addr: %v", got)
	}
}

func TestExhibitorURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.0.0.1", "http://10.0.0.1:8181/exhibitor/v1/cluster/status"},
		{"exhibitor.example.com", "http://exhibitor.example.com:8181/exhibitor/v1/cluster/status"},
		{"127.0.0.1:9000", "http://127.0.0.1:9000/exhibitor/v1/cluster/status"},
		{"fd00::1", "http://[fd00::1]:8181/exhibitor/v1/cluster/status"},
		{"[fd00::1]", "http://[fd00::1]:8181/exhibitor/v1/cluster/status"},
		{"[fd00::1]:9000", "http://[fd00::1]:9000/exhibitor/v1/cluster/status"},
		{" ", ""},
	}
	for _, tt := range tests {
		if got := exhibitorURL(tt.in); got != tt.want {
			t.Errorf("exhibitorURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}
