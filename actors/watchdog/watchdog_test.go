package watchdog

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spartan-dns/spartan/test/fakeclock"

	"github.com/rs/zerolog"

	wt "github.com/spartan-dns/spartan/actors/watchdog/watchdogtest"
)

// harness drives one actor step by step: each step hands the probe its
// result, then waits until the actor sleeps again (or returns).
type harness struct {
	t       *testing.T
	w       *Watchdog
	clock   *fakeclock.Clock
	results chan error
	mu      sync.Mutex
	sent    []string
	exits   []int
	done    chan error
	cancel  context.CancelFunc
}

const (
	interval = 15 * time.Second
	grace    = 60 * time.Second
)

func newHarness(t *testing.T) *harness { return newLoggedHarness(t, zerolog.Nop()) }

func newLoggedHarness(t *testing.T, log zerolog.Logger) *harness {
	h := &harness{t: t, clock: fakeclock.New(), results: make(chan error)}
	notify := NotifierFunc(func(s string) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.sent = append(h.sent, s)
		return nil
	})
	exit := func(code int) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.exits = append(h.exits, code)
	}
	probe := func(ctx context.Context) error {
		select {
		case err := <-h.results:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h.w = newWatchdog(netip.AddrPort{}, interval, grace, notify, exit, log, WithClock(h.clock), WithProbe(probe))
	h.start()
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.w.Serve(ctx) }()
	h.t.Cleanup(cancel)
}

// step feeds one probe result and returns the wait the actor then chose;
// 0 if Serve returned instead.
func (h *harness) step(result error) time.Duration {
	h.t.Helper()
	select {
	case h.results <- result:
	case <-time.After(2 * time.Second):
		h.t.Fatal("actor never probed")
	}
	select {
	case d := <-h.clock.Scheduled:
		return d
	case err := <-h.done:
		h.done <- err
		return 0
	case <-time.After(2 * time.Second):
		h.t.Fatal("actor neither waited nor returned after a probe")
		return 0
	}
}

// notes returns the notifications sent so far.
func (h *harness) notes() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sent)
}

func (h *harness) exitCodes() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.exits)
}

var errDown = errors.New("udp 198.51.100.1:53: connection refused")

func TestReadyOnceAfterFirstPass(t *testing.T) {
	h := newHarness(t)
	// Not serving yet: retry quickly, say nothing.
	for range 3 {
		if d := h.step(errDown); d != StartupRetry {
			t.Fatalf("wait before ready = %v, want %v", d, StartupRetry)
		}
		h.clock.Advance(StartupRetry)
	}
	if n := h.notes(); len(n) != 0 {
		t.Fatalf("notified %v before any probe passed", n)
	}
	if d := h.step(nil); d != interval {
		t.Fatalf("wait after ready = %v, want interval %v", d, interval)
	}
	if got, want := h.notes(), []string{"READY=1", "WATCHDOG=1"}; !slices.Equal(got, want) {
		t.Fatalf("after first pass: %v, want %v", got, want)
	}
	h.clock.Advance(interval)
	h.step(nil)
	h.clock.Advance(interval)
	h.step(errDown) // a failure says nothing
	h.clock.Advance(interval)
	h.step(nil)
	if got, want := h.notes(), []string{"READY=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"}; !slices.Equal(got, want) {
		t.Fatalf("notifications %v, want %v", got, want)
	}

	// A restart (suture calls Serve again on the same value) must not
	// announce READY again.
	h.cancel()
	if err := <-h.done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve after cancel = %v", err)
	}
	h.start()
	h.step(nil)
	if got := h.notes(); slices.Index(got[1:], "READY=1") >= 0 || got[len(got)-1] != "WATCHDOG=1" {
		t.Fatalf("after restart: %v, want no second READY=1 and a WATCHDOG=1", got)
	}
}

func TestExitAfterGraceNotBefore(t *testing.T) {
	h := newHarness(t)
	h.step(nil) // ready
	h.clock.Advance(interval)

	// A streak broken by one pass does not add up.
	h.step(errDown) // t=0
	h.clock.Advance(interval)
	h.step(errDown) // t=15
	h.clock.Advance(interval)
	h.step(nil) // t=30: streak over
	h.clock.Advance(interval)

	// Failing from t=45; grace 60s → exit at the probe at t=105, not
	// at t=90.
	for i := range 4 {
		if d := h.step(errDown); d != interval {
			t.Fatalf("failing probe %d: wait %v (Serve returned?), want %v; exits %v", i, d, interval, h.exitCodes())
		}
		if e := h.exitCodes(); len(e) != 0 {
			t.Fatalf("exit %v after %v of failures, grace is %v", e, time.Duration(i)*interval, grace)
		}
		h.clock.Advance(interval)
	}
	if d := h.step(errDown); d != 0 {
		t.Fatalf("actor still waiting (%v) after %v of failures", d, grace)
	}
	if got := h.exitCodes(); !slices.Equal(got, []int{1}) {
		t.Fatalf("exit codes %v, want [1]", got)
	}
	if err := <-h.done; !errors.Is(err, ErrGraceExpired) {
		t.Fatalf("Serve returned %v, want ErrGraceExpired", err)
	}
	if got, want := h.notes(), []string{"READY=1", "WATCHDOG=1", "WATCHDOG=1"}; !slices.Equal(got, want) {
		t.Fatalf("notifications %v, want %v (one WATCHDOG=1 per pass)", got, want)
	}
}

func TestExitWhenNeverReady(t *testing.T) {
	h := newHarness(t)
	steps := 0
	for {
		d := h.step(errDown)
		if d == 0 {
			break
		}
		steps++
		h.clock.Advance(d)
		if steps > int(grace/StartupRetry)+1 {
			t.Fatal("never exited although no probe ever passed")
		}
	}
	if steps != int(grace/StartupRetry) {
		t.Fatalf("exited after %d retries of %v, want %d (= grace)", steps, StartupRetry, int(grace/StartupRetry))
	}
	if len(h.notes()) != 0 || !slices.Equal(h.exitCodes(), []int{1}) {
		t.Fatalf("notes %v exits %v", h.notes(), h.exitCodes())
	}
}

func TestSdNotifyNoSocketIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := (SdNotifier{}).Notify("READY=1"); err != nil {
		t.Fatalf("Notify without NOTIFY_SOCKET: %v", err)
	}
}

// TestRealSdNotify runs the actor with the real clock, the real probe
// against an in-process server and the real go-systemd notifier, and reads
// what arrives on NOTIFY_SOCKET.
func TestRealSdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)

	addr := wt.Start(t, wt.Loopback, wt.Good, wt.Good)
	w := newWatchdog(addr, 50*time.Millisecond, time.Minute, SdNotifier{}, func(int) { t.Error("exit called") }, zerolog.Nop())
	read := func(n int) []string {
		var got []string
		buf := make([]byte, 256)
		for len(got) < n {
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			k, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			got = append(got, string(buf[:k]))
		}
		return got
	}
	for round := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Serve(ctx) }()
		got := read(4)
		cancel()
		<-done
		want := []string{"READY=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"}
		if round == 1 {
			want = want[1:]
			got = got[:3]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: NOTIFY_SOCKET got %q, want %q", round, got, want)
		}
	}
	if os.Getenv("NOTIFY_SOCKET") != sock {
		t.Fatal("the notifier unset NOTIFY_SOCKET")
	}
}

// TestTransportOptions: a daemon with its TCP server disabled is probed on
// UDP only (WithTCPAddr of a zero address), and split ports are honoured.
func TestTransportOptions(t *testing.T) {
	udpOnly := wt.Start(t, wt.Loopback, wt.Good, wt.Absent)
	tcpOnly := wt.Start(t, wt.Loopback, wt.Absent, wt.Good)
	cases := []struct {
		name      string
		addr      netip.AddrPort
		opts      []Option
		wantReady bool
	}{
		{"udp only, tcp probed too", udpOnly, nil, false},
		{"udp only, tcp skipped", udpOnly, []Option{WithTCPAddr(netip.AddrPort{})}, true},
		{"split ports", udpOnly, []Option{WithTCPAddr(tcpOnly)}, true},
		{"tcp only, udp skipped", tcpOnly, []Option{WithUDPAddr(netip.AddrPort{})}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ready := make(chan struct{}, 1)
			notify := NotifierFunc(func(s string) error {
				if s == "READY=1" {
					ready <- struct{}{}
				}
				return nil
			})
			w := newWatchdog(c.addr, 50*time.Millisecond, time.Minute, notify, func(int) {}, zerolog.Nop(),
				append([]Option{WithProbeTimeout(200 * time.Millisecond)}, c.opts...)...)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Serve(ctx) }()
			select {
			case <-ready:
				if !c.wantReady {
					t.Error("READY=1 although the TCP probe cannot pass")
				}
			case <-time.After(time.Second):
				if c.wantReady {
					t.Error("no READY=1 within 1s")
				}
			}
			cancel()
			<-done
		})
	}
}
