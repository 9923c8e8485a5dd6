package state

import (
	"context"
	"testing"
	"time"
)

// TestServeTicksOnClock: the health tick comes from the injected clock, so
// a test drives it without sleeping.
func TestServeTicksOnClock(t *testing.T) {
	a, store, clk := newTestActor(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	clk.ExpectAfter(t, time.Hour) // Serve waits for its first tick
	u := store.Load().Default.Upstreams[0]
	u.Failures.Add(3)
	clk.Advance(time.Hour)
	clk.ExpectAfter(t, time.Hour) // the tick ran, the next one is set
	if u.Rank() != 3 {
		t.Fatalf("rank %d after a tick with 3 failures, want 3", u.Rank())
	}
}
