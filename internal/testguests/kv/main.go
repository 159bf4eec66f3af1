//go:build wasip1

// Command kv runs the key-value command in its payload and returns the
// answer: "put KEY VALUE" -> "ok", "get KEY" -> the value or "not found",
// "del KEY" -> "ok". A host error fails the invocation with its text.
package main

import (
	"errors"
	"strings"

	"github.com/sluice-run/sluice/sdk"
)

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		op, rest, _ := strings.Cut(string(e.Data), " ")
		key, value, _ := strings.Cut(rest, " ")
		switch op {
		case "put":
			if err := sluice.KVPut(key, []byte(value)); err != nil {
				return nil, err
			}
			return []byte("ok"), nil
		case "get":
			v, err := sluice.KVGet(key)
			if errors.Is(err, sluice.ErrNotFound) {
				return []byte("not found"), nil
			}
			if err != nil {
				return nil, err
			}
			return v, nil
		case "del":
			if err := sluice.KVDelete(key); err != nil {
				return nil, err
			}
			return []byte("ok"), nil
		}
		return nil, sluice.Permanent(errors.New("unknown command " + op))
	})
}

func main() {}
