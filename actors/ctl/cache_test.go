package ctl

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/forwarder/cache"
	"github.com/spartan-dns/spartan/actors/state"
	"github.com/spartan-dns/spartan/supervisor"
)

// serveCtl runs an actor on a fresh socket with cache c (nil: off).
func serveCtl(t *testing.T, c Cache) string {
	t.Helper()
	sock := filepath.Join(shortDir(t), "s.sock")
	tr := supervisor.New("t", supervisor.Options{}, zerolog.Nop())
	a := New(sock, "", tr, state.NewStore(config.Default(), state.NewRegistry()), zerolog.Nop()).WithCache(c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "socket up", func() bool {
		conn, err := net.Dial("unix", sock)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	return sock
}

// fill caches an A answer for each name.
func fill(t *testing.T, c *cache.Cache, names ...string) {
	t.Helper()
	for _, n := range names {
		q := new(dns.Msg)
		q.SetQuestion(n, dns.TypeA)
		qb, _ := q.Pack()
		r := new(dns.Msg)
		r.SetReply(q)
		r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: n, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(10, 0, 0, 1)}}
		rb, _ := r.Pack()
		var kb cache.KeyBuf
		cq, ok := c.ParseQuery(qb, false, &kb)
		if !ok || c.Store(rb, &cq, c.Now(), 0) == nil {
			t.Fatalf("cannot cache %s", n)
		}
	}
}

func TestCacheCommands(t *testing.T) {
	c := cache.New(cache.Config{MaxEntries: 100, MaxTTL: time.Hour, NegativeMaxTTL: time.Hour}, nil)
	fill(t, c, "a.example.", "b.a.example.", "c.b.a.example.", "other.example.", "example.")
	sock := serveCtl(t, c)
	ctx := context.Background()

	resp, err := Call(ctx, sock, Request{Cmd: CmdCache})
	if err != nil || resp.Cache == nil || resp.Cache.Entries != 5 || resp.Cache.Bytes <= 0 {
		t.Fatalf("cache: %+v %v, want 5 entries", resp, err)
	}
	tests := []struct {
		name    string
		flushed int
		left    int64
	}{
		{"B.A.Example", 2, 3}, // b.a and c.b.a, case-insensitive
		{"a.example.", 1, 2},  // what is left under a.example
		{"nothing.example", 0, 2},
		{"", 2, 0}, // everything
	}
	for _, tt := range tests {
		resp, err := Call(ctx, sock, Request{Cmd: CmdCacheFlush, Name: tt.name})
		if err != nil || resp.Flushed == nil || *resp.Flushed != tt.flushed {
			t.Errorf("flush %q: %+v %v, want %d flushed", tt.name, resp, err, tt.flushed)
		}
		if s := c.Stats(); s.Entries != tt.left {
			t.Errorf("after flush %q: %d entries, want %d", tt.name, s.Entries, tt.left)
		}
	}
	var ce *Error
	if _, err := Call(ctx, sock, Request{Cmd: CmdCacheFlush, Name: "a..b"}); !errors.As(err, &ce) || ce.Code != CodeBadRequest {
		t.Errorf("flush of a bad name: %v, want bad_request", err)
	}
}

func TestCacheOff(t *testing.T) {
	sock := serveCtl(t, nil)
	for _, cmd := range []string{CmdCache, CmdCacheFlush} {
		var ce *Error
		if _, err := Call(context.Background(), sock, Request{Cmd: cmd}); !errors.As(err, &ce) || ce.Code != CodeCacheOff {
			t.Errorf("%s with the cache off: %v, want cache_off", cmd, err)
		}
	}
}
