//go:build wasip1

// Command fetcher fetches the URL in the "Url" header (method from the
// "Method" header, default GET; the payload as body) and returns
// "STATUS BODY". When the response has an "X-Echo" header its first value
// is appended after a newline. A failed fetch fails the invocation with the
// error's text as reason ("http: denied", ...).
package main

import (
	"strconv"

	"github.com/sluice-run/sluice/sdk"
)

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		resp, err := sluice.HTTP(sluice.HTTPRequest{
			Method: e.Header("Method"), URL: e.Header("Url"), Body: e.Data,
			Header: map[string][]string{"X-Sluice-Test": {"1"}},
		})
		if err != nil {
			return nil, err
		}
		out := strconv.Itoa(resp.Status) + " " + string(resp.Body)
		if v := resp.Header["X-Echo"]; len(v) > 0 {
			out += "\n" + v[0]
		}
		return []byte(out), nil
	})
}

func main() {}
