package testenv

import (
	"encoding/json"
	"strconv"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
)

// Effects counts the JSON effects guests publish on a subject, by the
// event id in their "id" field: tests count effects, not log lines.
type Effects struct {
	mu     sync.Mutex
	counts map[string]int
}

// CountEffects subscribes to subject until the test ends.
func CountEffects(t testing.TB, nc *nats.Conn, subject string) *Effects {
	t.Helper()
	e := &Effects{counts: map[string]int{}}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		var v struct{ ID string }
		if json.Unmarshal(m.Data, &v) != nil || v.ID == "" {
			t.Errorf("effect on %s without an id: %q", subject, m.Data)
			return
		}
		e.mu.Lock()
		e.counts[v.ID]++
		e.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return e
}

// Distinct is how many events had an effect.
func (e *Effects) Distinct() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.counts)
}

// Duplicates lists the ids seen more than once, as "id×count".
func (e *Effects) Duplicates() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for id, c := range e.counts {
		if c > 1 {
			out = append(out, id+"×"+strconv.Itoa(c))
		}
	}
	return out
}

// Count is how many effects event id had.
func (e *Effects) Count(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.counts[id]
}
