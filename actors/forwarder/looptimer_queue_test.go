package forwarder

import (
	"math/rand/v2"
	"testing"
)

// The loop's timer heap hands timers out in order of when, whatever order
// they were set in, and only once due.
func TestTimerHeapOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 13)) // fixed: the same sequence every run
	for _, n := range []int{1, 2, 3, 10, 64, 257} {
		var h timerHeap
		for i := range n {
			h.push(timerEntry{when: int64(rng.IntN(50)), slot: int32(i)})
		}
		if _, ok := h.pop(-1); ok {
			t.Fatalf("n=%d: a timer popped before it was due", n)
		}
		last, got := int64(-1), 0
		for e, ok := h.pop(1000); ok; e, ok = h.pop(1000) {
			if e.when < last {
				t.Fatalf("n=%d: timer at %d after one at %d", n, e.when, last)
			}
			if f, ok := h.first(); ok && f.when < e.when {
				t.Fatalf("n=%d: first is %d after popping %d", n, f.when, e.when)
			}
			last = e.when
			got++
		}
		if got != n {
			t.Fatalf("n=%d: %d timers popped", n, got)
		}
	}
}

// The FIFO timer queues keep every entry, in order, across the point where
// the queue empties and reuses its array and the point where it compacts.
func TestTimerQueueOrder(t *testing.T) {
	var q timerQueue
	next, want := int64(0), int64(0)
	push := func(k int) {
		for range k {
			q.push(timerEntry{when: next})
			next++
		}
	}
	pop := func(k int) {
		for range k {
			e, ok := q.pop(next)
			if !ok || e.when != want {
				t.Fatalf("popped %d (%v), want %d", e.when, ok, want)
			}
			want++
		}
	}
	push(3)
	pop(3) // empty: the array is reused
	if _, ok := q.first(); ok {
		t.Fatal("an empty queue has a first entry")
	}
	push(5000)
	pop(3000) // past the compaction threshold with entries left
	push(10)
	pop(2010)
	if _, ok := q.pop(next); ok {
		t.Fatal("entries left over")
	}
	push(1)
	if _, ok := q.pop(next - 2); ok {
		t.Fatal("an entry popped before it was due")
	}
}
