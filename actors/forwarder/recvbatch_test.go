package forwarder

import (
	"testing"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/spartan-dns/spartan/actors/config"
	"github.com/spartan-dns/spartan/actors/state"
	"golang.org/x/sys/unix"
)

// The listener socket is read in recvmmsg batches: more queries queued
// than one batch holds, and more than one wake-up reads (maxBatch), are
// all read, in order, each answered to its own client, over the wake-ups
// that level triggering brings. Queries for localhost. are answered in
// place, so no upstream is involved.
func TestLoopReadsListenerInBatches(t *testing.T) {
	for _, n := range []int{1, recvBatchLen - 1, recvBatchLen, recvBatchLen + 1, maxBatch + 3} {
		f := New(state.NewStore(config.Default(), state.NewRegistry()), zerolog.Nop())
		lis, lisAddr := rawUDP(t)
		sock := NewSocket(lis)
		var reply ReplyPath
		l, err := f.NewLoop(sock, &reply)
		if err != nil {
			t.Fatal(err)
		}
		client, _ := rawUDP(t)
		to := &unix.SockaddrInet4{Port: int(lisAddr.Port()), Addr: lisAddr.Addr().As4()}
		for i := range n {
			m := new(dns.Msg)
			m.SetQuestion("localhost.", dns.TypeA)
			m.Id = uint16(i + 1)
			b, _ := m.Pack()
			if err := unix.Sendto(client, b, 0, to); err != nil {
				t.Fatal(err)
			}
		}
		buf := make([]byte, 512)
		got, wakeUps := 0, 0
		for ; wakeUps < 10; wakeUps++ {
			l.readListener()
			read := 0
			for {
				k, _, err := unix.Recvfrom(client, buf, unix.MSG_DONTWAIT)
				if err != nil {
					break
				}
				var r dns.Msg
				if err := r.Unpack(buf[:k]); err != nil || r.Id != uint16(got+1) || len(r.Answer) != 1 {
					t.Fatalf("%d queued: reply %d: ID %d, %d answers, %v", n, got, r.Id, len(r.Answer), err)
				}
				got++
				read++
			}
			if read == 0 {
				break
			}
			if read > maxBatch {
				t.Fatalf("%d queued: %d read in one wake-up, more than %d", n, read, maxBatch)
			}
		}
		if want := (n + maxBatch - 1) / maxBatch; got != n || wakeUps != want {
			t.Errorf("%d queued: %d answered in %d wake-ups, want all in %d", n, got, wakeUps, want)
		}
		l.shutdown()
		sock.Release()
	}
}
