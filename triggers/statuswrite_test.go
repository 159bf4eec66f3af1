package triggers

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The tests of this file are inside the package (asyncWrites is its own),
// where internal/testenv cannot be imported (it imports the runtime):
// serverAndConn and eventually stand in for testenv's.

func serverAndConn(t *testing.T) (*server.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return srv, nc, js
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// failures collects what asyncWrites reports as not stored.
type failures struct {
	mu   sync.Mutex
	errs []error
	data []string
}

func (f *failures) add(data []byte, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
	f.data = append(f.data, string(data))
}

func (f *failures) get() ([]error, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...), append([]string(nil), f.data...)
}

func pendingWrites(w *asyncWrites) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

// TestAsyncWritesSettleEveryAcknowledgement: a stored write is settled
// without a failure; a lost compare-and-set reports the server's error
// (wrong last sequence) with the write's data; a subject that no stream
// captures reports no stream response; a write nobody answers times out;
// an answer to no write in flight is ignored. Each leaves nothing pending.
func TestAsyncWritesSettleEveryAcknowledgement(t *testing.T) {
	_, nc, js := serverAndConn(t)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "w"})
	if err != nil {
		t.Fatal(err)
	}
	// A subscriber that never answers: the write is delivered, so no
	// "no responders", and its acknowledgement never comes.
	if _, err := nc.Subscribe("swallowed", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	var f failures
	w, err := newAsyncWrites(nc, 400*time.Millisecond, f.add)
	if err != nil {
		t.Fatal(err)
	}

	// Answers to no write in flight (an unknown id, a stray token) are
	// ignored: nothing is reported for them.
	for _, stray := range []string{w.prefix + "999", w.prefix + "x", w.prefix + "18446744073709551616"} {
		if err := nc.Publish(stray, []byte(`{"error":{"code":503,"err_code":10077,"description":"forged"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.publish("$KV.w.a", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the first write stored", func() bool {
		e, err := kv.Get(ctx, "a")
		return err == nil && string(e.Value()) == "1"
	})
	// Revision 1 is stored: expecting none loses the compare-and-set.
	if err := w.publish("$KV.w.a", []byte("stale"), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.publish("nostream.here", []byte("lost"), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.publish("swallowed", []byte("unanswered"), 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "three writes reported not stored", func() bool {
		errs, _ := f.get()
		return len(errs) == 3
	})
	errs, data := f.get()
	want := map[string]func(error) bool{
		"stale": func(err error) bool {
			var apiErr *jetstream.APIError
			return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
		},
		"lost":       func(err error) bool { return errors.Is(err, jetstream.ErrNoStreamResponse) },
		"unanswered": func(err error) bool { return errors.Is(err, jetstream.ErrAsyncPublishTimeout) },
	}
	for i, d := range data {
		if check, ok := want[d]; !ok || !check(errs[i]) {
			t.Errorf("write %q reported with %v", d, errs[i])
		}
		delete(want, d)
	}
	if e, err := kv.Get(ctx, "a"); err != nil || string(e.Value()) != "1" || e.Revision() != 1 {
		t.Errorf("key a: %v, %v: want the first write only", e, err)
	}
	if n := pendingWrites(w); n != 0 {
		t.Errorf("%d writes still pending", n)
	}
}

// TestAsyncWritesBoundWhatIsOutstanding: past maxStatusPending writes
// awaiting an answer, a write fails at once with errStatusBacklog rather
// than waiting; once those time out, writes go through again.
func TestAsyncWritesBoundWhatIsOutstanding(t *testing.T) {
	_, nc, _ := serverAndConn(t)
	if _, err := nc.Subscribe("swallowed", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	var f failures
	w, err := newAsyncWrites(nc, time.Second, f.add)
	if err != nil {
		t.Fatal(err)
	}
	for range maxStatusPending {
		if err := w.publish("swallowed", []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.publish("swallowed", []byte("x"), 0); !errors.Is(err, errStatusBacklog) {
		t.Fatalf("write past the bound: %v, want errStatusBacklog", err)
	}
	eventually(t, 10*time.Second, "the unanswered writes timed out", func() bool {
		errs, _ := f.get()
		return len(errs) == maxStatusPending
	})
	if n := pendingWrites(w); n != 0 {
		t.Errorf("%d writes pending after they timed out", n)
	}
	if err := w.publish("swallowed", []byte("x"), 0); err != nil {
		t.Errorf("write after the timeouts: %v", err)
	}
}

// TestAsyncWritesFailWhatIsInFlightAtAReconnection: writes whose answer
// may never come, since the connection dropped, are reported at once.
func TestAsyncWritesFailWhatIsInFlightAtAReconnection(t *testing.T) {
	srv, nc, _ := serverAndConn(t)
	if _, err := nc.Subscribe("swallowed", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	var f failures
	w, err := newAsyncWrites(nc, time.Minute, f.add)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.publish("swallowed", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Dropping the client's connection at the server makes it reconnect.
	id, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.DisconnectClientByID(id); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the write reported at the reconnection", func() bool {
		errs, _ := f.get()
		return len(errs) == 1 && errors.Is(errs[0], nats.ErrDisconnected)
	})
}
