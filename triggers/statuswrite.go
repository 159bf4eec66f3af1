package triggers

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// asyncWrites sends status writes without waiting for the broker, and
// settles their acknowledgements. It does what jetstream's PublishMsgAsync
// did for the write every event makes, cheaper: that one arms a timer per
// publish and decodes every acknowledgement as JSON (together about a
// tenth of the CPU of a fast-setting event), where one sweep here times
// the writes out and an acknowledgement is decoded only when it carries
// an error.
type asyncWrites struct {
	nc *nats.Conn
	// prefix + a write's id is its reply subject.
	prefix string
	// failed hears each write that was not stored (a compare-and-set
	// lost, no stream answering, a timeout, a reconnection), with the
	// status it carried. It runs on the subscription's goroutine or the
	// sweep's, one call at a time for each.
	failed  func(data []byte, err error)
	timeout time.Duration

	mu      sync.Mutex
	next    uint64
	pending map[uint64]pendingWrite
}

type pendingWrite struct {
	data []byte
	sent time.Time
}

// newAsyncWrites subscribes to the acknowledgements on nc and starts the
// sweep that times writes out; the sweep ends when nc closes.
func newAsyncWrites(nc *nats.Conn, timeout time.Duration, failed func([]byte, error)) (*asyncWrites, error) {
	w := &asyncWrites{nc: nc, prefix: nc.NewInbox() + ".", failed: failed, timeout: timeout, pending: map[uint64]pendingWrite{}}
	// Listened to before subscribing: a connection that closes in
	// between still ends the sweep.
	conn := nc.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	if _, err := nc.Subscribe(w.prefix+"*", w.answered); err != nil {
		nc.RemoveStatusListener(conn)
		return nil, err
	}
	go w.sweep(conn)
	return w, nil
}

// publish sends data to subject, to be stored only if the subject's last
// sequence is lastRev (0: no message). The write is on the connection when
// it returns, ahead of anything sent after it. It fails at once when
// maxStatusPending writes await their acknowledgement.
func (w *asyncWrites) publish(subject string, data []byte, lastRev uint64) error {
	w.mu.Lock()
	if len(w.pending) >= maxStatusPending {
		w.mu.Unlock()
		return errStatusBacklog
	}
	w.next++
	id := w.next
	w.pending[id] = pendingWrite{data: data, sent: time.Now()}
	w.mu.Unlock()
	m := &nats.Msg{
		Subject: subject, Reply: w.prefix + strconv.FormatUint(id, 10), Data: data,
		Header: nats.Header{jetstream.ExpectedLastSubjSeqHeader: []string{strconv.FormatUint(lastRev, 10)}},
	}
	if err := w.nc.PublishMsg(m); err != nil {
		w.mu.Lock()
		delete(w.pending, id)
		w.mu.Unlock()
		return err
	}
	return nil
}

func (w *asyncWrites) answered(m *nats.Msg) {
	if len(m.Subject) <= len(w.prefix) {
		return
	}
	id, err := strconv.ParseUint(m.Subject[len(w.prefix):], 10, 64)
	if err != nil {
		return
	}
	w.mu.Lock()
	pw, ok := w.pending[id]
	delete(w.pending, id)
	w.mu.Unlock()
	if !ok {
		return // timed out, or failed at a reconnection, already
	}
	if err := pubAckError(m); err != nil {
		w.failed(pw.data, err)
	}
}

// pubAckError reads a publish acknowledgement: nil when the stream stored
// the message. A stored message's acknowledgement ({"stream":…,"seq":…})
// is recognised without decoding it.
func pubAckError(m *nats.Msg) error {
	if len(m.Data) == 0 {
		if m.Header.Get("Status") == "503" {
			return jetstream.ErrNoStreamResponse
		}
		return jetstream.ErrInvalidJSAck
	}
	if !bytes.Contains(m.Data, []byte(`"error"`)) && bytes.Contains(m.Data, []byte(`"stream"`)) {
		return nil
	}
	var r struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil || r.Error == nil {
		return jetstream.ErrInvalidJSAck
	}
	return r.Error
}

// sweep fails the writes unanswered for timeout (an acknowledgement lost,
// to a slow-consumer drop say, must not hold its slot for ever) and, at a
// reconnection, every write in flight, whose answer may never come. It
// returns when the connection closes.
func (w *asyncWrites) sweep(conn chan nats.Status) {
	tick := time.NewTicker(w.timeout / 4)
	defer tick.Stop()
	for {
		select {
		case s, ok := <-conn:
			if !ok || s == nats.CLOSED {
				return
			}
			w.fail(time.Now(), nats.ErrDisconnected)
		case now := <-tick.C:
			w.fail(now.Add(-w.timeout), jetstream.ErrAsyncPublishTimeout)
		}
	}
}

// fail fails the writes sent before cutoff with err.
func (w *asyncWrites) fail(cutoff time.Time, err error) {
	var failed [][]byte
	w.mu.Lock()
	for id, pw := range w.pending {
		if !pw.sent.After(cutoff) {
			failed = append(failed, pw.data)
			delete(w.pending, id)
		}
	}
	w.mu.Unlock()
	for _, data := range failed {
		w.failed(data, err)
	}
}
