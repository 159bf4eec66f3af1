package scale

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/internal/testenv"
)

// writeConfig writes hcl as runtime.hcl in a new temporary directory and
// returns its path.
func writeConfig(t testing.TB, hcl string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "runtime.hcl")
	if err := os.WriteFile(path, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// envInt is the integer in the environment variable name, or def when it
// is unset; a value that is not a positive integer fails the test.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// rssSampler records the largest resident memory of a node, alone and with
// its worker processes, sampled every interval until stop.
type rssSampler struct {
	stopc chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	maxNode int64
	maxTree int64
	samples int
}

func sampleRSS(n *testenv.Node, every time.Duration) *rssSampler {
	s := &rssSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	s.sample(n)
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-s.stopc:
				return
			case <-tick.C:
				s.sample(n)
			}
		}
	}()
	return s
}

func (s *rssSampler) sample(n *testenv.Node) {
	node, tree := n.RSS(), n.TreeRSS()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxNode = max(s.maxNode, node)
	s.maxTree = max(s.maxTree, tree)
	s.samples++
}

// stop ends the sampling (after a last sample) and returns the maxima and
// the number of samples taken.
func (s *rssSampler) stop(n *testenv.Node) (maxNode, maxTree int64, samples int) {
	close(s.stopc)
	<-s.done
	s.sample(n)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxNode, s.maxTree, s.samples
}

// arrivals records when each message on a subject arrived, to measure a
// consumption rate from the effects it produces.
type arrivals struct {
	sub *nats.Subscription

	mu    sync.Mutex
	times []time.Time
}

func recordArrivals(t testing.TB, nc *nats.Conn, subject string, capacity int) *arrivals {
	t.Helper()
	a := &arrivals{times: make([]time.Time, 0, capacity)}
	sub, err := nc.Subscribe(subject, func(*nats.Msg) {
		now := time.Now()
		a.mu.Lock()
		a.times = append(a.times, now)
		a.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	// Effects come in bursts faster than the callback may run on a busy
	// machine (the test runs with -race): let the subscription buffer them
	// rather than drop them as a slow consumer.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	a.sub = sub
	return a
}

// snapshot returns the arrival times so far, in order of arrival.
func (a *arrivals) snapshot() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.times...)
}

// windowRates returns the rate, in events per second, of each full window
// of length w from the first arrival on.
func windowRates(times []time.Time, w time.Duration) []float64 {
	if len(times) == 0 {
		return nil
	}
	first, last := times[0], times[len(times)-1]
	full := int(last.Sub(first) / w)
	counts := make([]int, full)
	for _, at := range times {
		if i := int(at.Sub(first) / w); i < full {
			counts[i]++
		}
	}
	rates := make([]float64, full)
	for i, c := range counts {
		rates[i] = float64(c) / w.Seconds()
	}
	return rates
}

// streamState is the state of a stream, or the zero state if it cannot be
// read.
func streamState(ctx context.Context, js jetstream.JetStream, name string) jetstream.StreamState {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return jetstream.StreamState{}
	}
	info, err := s.Info(ctx)
	if err != nil {
		return jetstream.StreamState{}
	}
	return info.State
}

const mib = 1 << 20
