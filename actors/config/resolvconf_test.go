package config

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
)

func TestResolvConfNameservers(t *testing.T) {
	p := writeFile(t, "resolv.conf", "nameserver 10.0.0.1\nnameserver fe80::1%eth0\nnameserver ::ffff:10.0.0.2\n"+
		"domain x\nnameserver10.0.0.3\nnameserver 10.0.0.4 extra\n")
	got, err := ResolvConfNameservers(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{ip("10.0.0.1"), ip("fe80::1%eth0"), ip("10.0.0.2"), ip("10.0.0.4")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := ResolvConfNameservers(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Error("missing file: no error")
	}
}
