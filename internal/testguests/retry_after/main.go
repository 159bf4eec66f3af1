//go:build wasip1

// Command retry_after fails with the reason "retry later" and asks for the
// next attempt after the number of milliseconds in the "Retry-After-Ms"
// header (1000 when absent); it succeeds from the attempt named by the
// "Succeed-At" header on, if any, with the result "ok at attempt N".
package main

import (
	"errors"
	"strconv"
	"time"

	"github.com/sluice-run/sluice/sdk"
)

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		if n, err := strconv.Atoi(e.Header("Succeed-At")); err == nil && e.Attempt >= n {
			return []byte("ok at attempt " + strconv.Itoa(e.Attempt)), nil
		}
		ms, err := strconv.Atoi(e.Header("Retry-After-Ms"))
		if err != nil {
			ms = 1000
		}
		return nil, sluice.RetryAfter(time.Duration(ms)*time.Millisecond, errors.New("retry later"))
	})
}

func main() {}
