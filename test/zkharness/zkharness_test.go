package zkharness

import (
	"os"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// TestStartRestart checks the contract the masters tests rely on: a
// session works, data survives Restart on the same address, and Stop makes
// the address refuse connections.
func TestStartRestart(t *testing.T) {
	t0 := time.Now()
	z := Start(t)
	t.Logf("start took %v", time.Since(t0))

	conn, _, err := zk.Connect([]string{z.Addr()}, 4*time.Second, zk.WithLogger(nopLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Create("/survives", []byte("x"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("create: %v", err)
	}

	z.Stop()
	if err := handshake(z.Addr()); err == nil {
		t.Fatal("handshake succeeded against a stopped server")
	}
	t0 = time.Now()
	if err := z.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %v", time.Since(t0))

	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _, err := conn.Get("/survives")
		if err == nil {
			if string(data) != "x" {
				t.Fatalf("data after restart = %q, want x", data)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("get after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLaunchClose(t *testing.T) {
	if err := Installed(); err != nil {
		if isCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	z, err := Launch()
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(z.Addr()); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	z.Close()
	if err := handshake(z.Addr()); err == nil {
		t.Fatal("handshake succeeded after Close")
	}
}

func isCI() bool { return os.Getenv("CI") == "true" }
