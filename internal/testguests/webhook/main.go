//go:build wasip1

// Command webhook POSTs the event's payload to the URL in its "Url" header
// and fails unless the answer is 2xx: a subscriber whose downstream service
// can be broken and fixed by a test.
package main

import (
	"errors"
	"strconv"

	"github.com/sluice-run/sluice/sdk"
)

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		resp, err := sluice.HTTP(sluice.HTTPRequest{
			Method: "POST", URL: e.Header("Url"), Body: e.Data,
			Header: map[string][]string{"X-Event-Id": {e.ID}},
		})
		if err != nil {
			return nil, err
		}
		if resp.Status/100 != 2 {
			return nil, errors.New("webhook answered " + strconv.Itoa(resp.Status))
		}
		return []byte("delivered"), nil
	})
}

func main() {}
