package triggers

import (
	"math/rand/v2"
	"time"

	"github.com/sluice-run/sluice/config"
)

// Backoff returns the delay before the attempt after `attempt` (1-based)
// failed: exponential in the attempt number, capped at p.Max, jittered over
// the upper half of the window (AWS's "equal jitter"). Unlike full jitter,
// this keeps every gap at least as long as the previous window, so retries
// spread out and still visibly back off.
func Backoff(p config.Retry, attempt int, rnd *rand.Rand) time.Duration {
	window := p.Initial
	for i := 1; i < attempt && window < p.Max; i++ {
		window *= 2
	}
	window = min(window, p.Max)
	if window <= 0 {
		return 0
	}
	half := window / 2
	return half + time.Duration(rnd.Int64N(int64(window-half)+1))
}
