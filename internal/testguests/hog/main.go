//go:build wasip1

// Command hog allocates without end when the payload is "hog", and
// succeeds at once otherwise: a guest that runs into its memory limit.
package main

import sluice "github.com/sluice-run/sluice/sdk"

var keep [][]byte

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		if string(e.Data) != "hog" {
			return []byte("ok"), nil
		}
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = byte(i)
			}
			keep = append(keep, b)
		}
	})
}

func main() {}
