package triggers

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluice-run/sluice/config"
)

func TestBackoffGrowsWithinJitteredWindows(t *testing.T) {
	p := config.Retry{MaxAttempts: 10, Initial: 100 * time.Millisecond, Max: 2 * time.Second}
	rnd := rand.New(rand.NewPCG(1, 2))
	for run := 0; run < 200; run++ {
		var prev time.Duration
		window := p.Initial
		for attempt := 1; attempt < p.MaxAttempts; attempt++ {
			d := Backoff(p, attempt, rnd)
			if d < window/2 || d > window {
				t.Fatalf("attempt %d: delay %s outside [%s, %s]", attempt, d, window/2, window)
			}
			if window < p.Max && d < prev {
				t.Fatalf("attempt %d: delay %s shorter than the previous %s while the window still grows", attempt, d, prev)
			}
			prev = d
			window = min(2*window, p.Max)
		}
	}
}

func TestBackoffIsJittered(t *testing.T) {
	p := config.Retry{MaxAttempts: 5, Initial: time.Second, Max: time.Minute}
	rnd := rand.New(rand.NewPCG(3, 4))
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		seen[Backoff(p, 3, rnd)] = true
	}
	if len(seen) < 40 {
		t.Fatalf("50 delays for the same attempt took only %d distinct values", len(seen))
	}
}
