package forwarder_test

import (
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/spartan-dns/spartan/actors/forwarder"
	"golang.org/x/sys/unix"
)

// handleFunc answers one UDP query through one of the two engines; nil
// means no reply came.
type handleFunc func(t *testing.T, f *forwarder.Forwarder, q []byte) []byte

// bothEngines runs a race test against each engine that serves UDP
// queries: the listeners' event loop and the goroutine race (TCP and the
// HTTP API use it). Both must follow the spec's Dispatch rules.
func bothEngines(t *testing.T, test func(t *testing.T, handle handleFunc)) {
	t.Run("loop", func(t *testing.T) { test(t, loopHandle(t)) })
	t.Run("goroutines", func(t *testing.T) {
		test(t, func(t *testing.T, f *forwarder.Forwarder, q []byte) []byte { return f.Handle(q, false) })
	})
}

// loopHandle returns a handleFunc that sends each query over a real UDP
// socket to a forwarder.Loop serving 127.0.0.1 (one loop per forwarder,
// retired when the test ends).
func loopHandle(t *testing.T) handleFunc {
	var mu sync.Mutex
	addrs := map[*forwarder.Forwarder]*net.UDPAddr{}
	return func(t *testing.T, f *forwarder.Forwarder, q []byte) []byte {
		t.Helper()
		mu.Lock()
		addr, ok := addrs[f]
		if !ok {
			addr = startLoop(t, f)
			addrs[f] = addr
		}
		mu.Unlock()
		c, err := net.DialUDP("udp", nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(q); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 65535)
		n, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return buf[:n]
	}
}

// startLoop serves f on a fresh 127.0.0.1 port until the test ends.
func startLoop(t *testing.T, f *forwarder.Forwarder) *net.UDPAddr {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	sock := forwarder.NewSocket(fd)
	var reply forwarder.ReplyPath
	reply.Set(sock)
	loop, err := f.NewLoop(sock, &reply)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- loop.Run() }()
	t.Cleanup(func() {
		loop.Retire()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("loop: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("loop did not end after Retire")
		}
		reply.Set(nil)
		sock.Release()
	})
	in4 := sa.(*unix.SockaddrInet4)
	return &net.UDPAddr{IP: in4.Addr[:], Port: in4.Port}
}
