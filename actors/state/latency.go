package state

import (
	"sync/atomic"
	"time"
)

// LatencyBuckets are the upper bounds of the upstream latency histogram,
// in seconds (Prometheus convention). Local upstreams answer in well under
// a millisecond; the top buckets catch timeouts.
var LatencyBuckets = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// Latency is a lock-free histogram of reply latencies: the hot path does
// two atomic adds; the metrics actor turns it into a Prometheus histogram
// at scrape time.
type Latency struct {
	Buckets [len(LatencyBuckets) + 1]atomic.Uint64 // the last bucket is +Inf
	SumNs   atomic.Uint64
}

// Observe records one latency.
func (l *Latency) Observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(LatencyBuckets) && s > LatencyBuckets[i] {
		i++
	}
	l.Buckets[i].Add(1)
	l.SumNs.Add(uint64(d))
}

// Snapshot returns the cumulative counts per bucket (as Prometheus wants
// them), the total count and the sum in seconds.
func (l *Latency) Snapshot() (cumulative map[float64]uint64, count uint64, sum float64) {
	cumulative = make(map[float64]uint64, len(LatencyBuckets))
	for i, ub := range LatencyBuckets {
		count += l.Buckets[i].Load()
		cumulative[ub] = count
	}
	count += l.Buckets[len(LatencyBuckets)].Load()
	return cumulative, count, time.Duration(l.SumNs.Load()).Seconds()
}
