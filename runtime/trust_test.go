package runtime_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/runtime"
	"github.com/sluice-run/sluice/triggers"
)

// statusOf asks the runtime's status API for the status of event id at
// its only binding; ok is false while none is recorded.
func statusOf(t *testing.T, nc *nats.Conn, id string) (triggers.Status, bool) {
	t.Helper()
	body, _ := json.Marshal(runtime.StatusRequest{ID: id})
	m, err := nc.Request(runtime.StatusSubject, body, 10*time.Second)
	if err != nil {
		t.Fatalf("status of %s: %v", id, err)
	}
	var rep runtime.StatusReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		t.Fatalf("status of %s: %q: %v", id, m.Data, err)
	}
	if len(rep.Statuses) == 0 {
		return triggers.Status{}, false
	}
	return rep.Statuses[0], true
}

// settled waits for event id's final status.
func settled(t *testing.T, nc *nats.Conn, id string) triggers.Status {
	t.Helper()
	var st triggers.Status
	testenv.Eventually(t, 30*time.Second, "event "+id+" to settle", func() bool {
		s, ok := statusOf(t, nc, id)
		st = s
		return ok && s.Final()
	})
	return st
}

func publishMsg(t *testing.T, js jetstream.JetStream, subject, id, data string, headers map[string]string) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = []byte(data)
	for k, v := range headers {
		m.Header[k] = []string{v}
	}
	if _, err := js.PublishMsg(context.Background(), m, jetstream.WithMsgID(id)); err != nil {
		t.Fatalf("publish %s: %v", id, err)
	}
}

func healthy(t *testing.T, rt *runtime.Runtime) {
	t.Helper()
	if code, body := get(t, "http://"+rt.MetricsAddr()+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
}

const longSubjectConfig = `
function "publisher" {
  module  = "internal/testguests/publisher/publisher.wasm"
  publish = ["out.>"]
}
function "noop" { module = "internal/testguests/noop/noop.wasm" }
queue "pub" {
  subject  = "pub.cmd"
  function = "publisher"
  retry {
    max_attempts = 2
    initial      = "10ms"
    max          = "20ms"
  }
}
queue "ok" {
  subject  = "ok.send"
  function = "noop"
}
`

// TestLongSubjectsDoNotWedgeTheRuntime: a 5,000-byte subject in a guest's
// publish (allowed by its wildcard pattern) fails that publish with a
// clear error, and one in a producer's Sluice-Reply is dropped and
// counted; the runtime's connection stays up (/healthz 200), the events
// settle, and a restart on the same data runs new events normally.
func TestLongSubjectsDoNotWedgeTheRuntime(t *testing.T) {
	testenv.Guest(t, "internal/testguests/publisher")
	testenv.Guest(t, "internal/testguests/noop")
	cfg := testenv.Config(t, longSubjectConfig)
	dir := t.TempDir()
	rt := testenv.Start(t, cfg, dir)
	nc, js := testenv.Connect(t, rt.ClientURL())
	long := strings.Repeat("a", 5000)

	publishMsg(t, js, "pub.cmd", "long-publish", "x", map[string]string{"Target": "out." + long})
	st := settled(t, nc, "long-publish")
	if st.State != triggers.StateDeadLettered || !strings.Contains(st.Error, "invalid") || st.Attempts != 2 {
		t.Errorf("guest publish to a 5,000-byte subject: %+v", st)
	}
	publishMsg(t, js, "ok.send", "long-reply", "x", map[string]string{triggers.HdrReply: "_INBOX." + long})
	if st := settled(t, nc, "long-reply"); st.State != triggers.StateSucceeded {
		t.Errorf("event with a 5,000-byte reply subject: %+v", st)
	}
	healthy(t, rt)
	if got := sample(scrape(t, rt.MetricsAddr()), "sluice_replies_dropped_total", "binding", "ok", "reason", "too_long"); got != 1 {
		t.Errorf("sluice_replies_dropped_total{binding=ok,reason=too_long} = %v, want 1", got)
	}
	publishMsg(t, js, "pub.cmd", "short-publish", "x", map[string]string{"Target": "out.fine"})
	if st := settled(t, nc, "short-publish"); st.State != triggers.StateSucceeded {
		t.Errorf("a valid publish after the long one: %+v", st)
	}

	// Both events again, pending when the runtime restarts (their
	// bindings paused meanwhile): nothing is left over that would take it
	// down.
	ctx := context.Background()
	for _, q := range []string{"pub", "ok"} {
		if _, err := js.PauseConsumer(ctx, "SLUICE_Q_"+q, "sluice_"+q, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	publishMsg(t, js, "pub.cmd", "long-publish-2", "x", map[string]string{"Target": "out." + long})
	publishMsg(t, js, "ok.send", "long-reply-2", "x", map[string]string{triggers.HdrReply: "_INBOX." + long})
	nc.Close()
	if err := rt.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	rt = testenv.Start(t, cfg, dir)
	nc, js = testenv.Connect(t, rt.ClientURL())
	for _, q := range []string{"pub", "ok"} {
		if _, err := js.PauseConsumer(ctx, "SLUICE_Q_"+q, "sluice_"+q, time.Now().Add(100*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if st := settled(t, nc, "long-publish-2"); st.State != triggers.StateDeadLettered {
		t.Errorf("after the restart, the long publish: %+v", st)
	}
	if st := settled(t, nc, "long-reply-2"); st.State != triggers.StateSucceeded {
		t.Errorf("after the restart, the long reply: %+v", st)
	}
	healthy(t, rt)
}

// TestReplyHeaderLendsNoAuthority: a Sluice-Reply naming a key-value,
// JetStream API, admin, dead-letter, runtime-inbox or event subject is
// dropped (counted as not_allowed) and never published, while the event
// settles as usual; inbox and configured reply subjects get the outcome.
func TestReplyHeaderLendsNoAuthority(t *testing.T) {
	testenv.Guest(t, "internal/testguests/kv")
	rt := testenv.Start(t, testenv.Config(t, `
nats { reply_subjects = ["app.replies.>"] }
function "kv" { module = "internal/testguests/kv/kv.wasm" }
queue "kv" {
  subject  = "kv.cmd"
  function = "kv"
}`), "")
	nc, js := testenv.Connect(t, rt.ClientURL())
	// Put a value first, so that the bucket exists.
	publishMsg(t, js, "kv.cmd", "put-0", "put secret s3cret", nil)
	settled(t, nc, "put-0")

	targets := []string{
		"$KV.sluice_fn_kv.secret", "$KV.sluice_functions.kv", "$JS.API.STREAM.DELETE.SLUICE_Q_kv",
		"$O.sluice_modules.x", "sluice.admin.reload", "sluice.replay.kv", "sluice.dlq.kv",
		"_SLUICE_INBOX.x.y", "kv.cmd", "$SRV.PING", "app.other",
	}
	watch, err := nc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	for i, to := range targets {
		publishMsg(t, js, "kv.cmd", "forged-"+strconv.Itoa(i), "get secret", map[string]string{triggers.HdrReply: to})
	}
	inbox, appReply := nc.NewInbox(), "app.replies.mine"
	replies, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	configured, err := nc.SubscribeSync(appReply)
	if err != nil {
		t.Fatal(err)
	}
	publishMsg(t, js, "kv.cmd", "to-inbox", "get secret", map[string]string{triggers.HdrReply: inbox})
	publishMsg(t, js, "kv.cmd", "to-pattern", "get secret", map[string]string{triggers.HdrReply: appReply})
	for i := range targets {
		if st := settled(t, nc, "forged-"+strconv.Itoa(i)); st.State != triggers.StateSucceeded {
			t.Errorf("event with reply %s: %+v", targets[i], st)
		}
	}
	for _, sub := range []*nats.Subscription{replies, configured} {
		m, err := sub.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("no reply on %s: %v", sub.Subject, err)
		}
		var st triggers.Status
		if err := json.Unmarshal(m.Data, &st); err != nil || st.State != triggers.StateSucceeded || m.Header.Get(triggers.HdrBinding) != "kv" {
			t.Errorf("reply on %s: %q %v", sub.Subject, m.Data, err)
		}
	}
	// Everything published while the forged events ran: none of it went
	// to a forged reply subject (the events themselves went to kv.cmd,
	// with the forged header).
	for {
		m, err := watch.NextMsg(0)
		if err != nil {
			break
		}
		for _, to := range targets {
			if m.Subject == to && m.Header.Get(triggers.HdrReply) == "" {
				t.Errorf("the runtime published to %s: %q", to, m.Data)
			}
		}
	}
	if got := sample(scrape(t, rt.MetricsAddr()), "sluice_replies_dropped_total", "binding", "kv", "reason", "not_allowed"); got != float64(len(targets)) {
		t.Errorf("sluice_replies_dropped_total{reason=not_allowed} = %v, want %d", got, len(targets))
	}
	if _, err := js.Stream(context.Background(), "SLUICE_Q_kv"); err != nil {
		t.Errorf("queue stream: %v", err)
	}
	healthy(t, rt)
}

// TestProducerHeadersAreData: a producer's JetStream steering headers do
// not reach the runtime's dead-letter publish (an event carrying
// Nats-Expected-Last-Subject-Sequence: 0 is dead-lettered normally, even
// when the dead-letter subject already holds one), and its forged Sluice-
// headers do not pass for the runtime's own; its other headers are kept.
func TestProducerHeadersAreData(t *testing.T) {
	testenv.Guest(t, "internal/testguests/fail")
	rt := testenv.Start(t, testenv.Config(t, `
function "fail" { module = "internal/testguests/fail/fail.wasm" }
queue "bad" {
  subject  = "bad.send"
  function = "fail"
  retry { max_attempts = 1 }
}`), "")
	nc, js := testenv.Connect(t, rt.ClientURL())
	ctx := context.Background()
	hostile := map[string]string{
		"Nats-Expected-Last-Subject-Sequence": "0",
		"Sluice-Binding":                      "forged-binding",
		"Sluice-Error":                        "forged error",
		"Sluice-Node":                         "forged-node",
		"Sluice-Forged":                       "x",
		"X-App":                               "kept",
	}
	for _, id := range []string{"hostile-1", "hostile-2"} {
		publishMsg(t, js, "bad.send", id, "x", hostile)
		if st := settled(t, nc, id); st.State != triggers.StateDeadLettered {
			t.Fatalf("%s: %+v", id, st)
		}
	}
	dlq, err := js.Stream(ctx, "SLUICE_DLQ_bad")
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		h := m.Header
		if h.Get(triggers.HdrBinding) != "bad" || h.Get(triggers.HdrError) != "fail" || h.Get(triggers.HdrNode) != rt.Node() {
			t.Errorf("dead letter %d: runtime headers %q %q %q", seq, h.Get(triggers.HdrBinding), h.Get(triggers.HdrError), h.Get(triggers.HdrNode))
		}
		if len(h.Values(triggers.HdrBinding)) != 1 || len(h.Values(triggers.HdrError)) != 1 {
			t.Errorf("dead letter %d: forged values kept beside the runtime's: %v", seq, h)
		}
		if h.Get("Sluice-Forged") != "" || h.Get("Nats-Expected-Last-Subject-Sequence") != "" || h.Get("X-App") != "kept" {
			t.Errorf("dead letter %d headers: %v", seq, h)
		}
	}
}

// TestRuntimeConnectionSurvivesServerClose: when the server drops the
// runtime's connection, it reconnects, stays healthy and runs events.
func TestRuntimeConnectionSurvivesServerClose(t *testing.T) {
	testenv.Guest(t, "internal/testguests/noop")
	rt := testenv.Start(t, testenv.Config(t, `
function "noop" { module = "internal/testguests/noop/noop.wasm" }
queue "ok" {
  subject  = "ok.send"
  function = "noop"
}`), "")
	nc, js := testenv.Connect(t, rt.ClientURL())
	publishMsg(t, js, "ok.send", "before", "x", nil)
	settled(t, nc, "before")
	if err := runtime.KickConnection(rt); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the runtime to reconnect", func() bool { return runtime.Reconnects(rt) >= 1 })
	publishMsg(t, js, "ok.send", "after", "x", nil)
	if st := settled(t, nc, "after"); st.State != triggers.StateSucceeded {
		t.Errorf("after the reconnect: %+v", st)
	}
	healthy(t, rt)
}

// TestConnectionClosedForGoodStopsTheRuntime: should the server close the
// runtime's connection for good (here by a protocol line longer than it
// accepts, which the subject checks otherwise prevent), the runtime does
// not linger unable to work: its bindings stop, /healthz answers 503 and
// Shutdown reports why.
func TestConnectionClosedForGoodStopsTheRuntime(t *testing.T) {
	testenv.Guest(t, "internal/testguests/noop")
	cfg := testenv.Config(t, `
function "noop" { module = "internal/testguests/noop/noop.wasm" }
queue "ok" {
  subject  = "ok.send"
  function = "noop"
}`)
	rt, err := runtime.Start(context.Background(), testenv.RuntimeOptions(t, cfg, ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Shutdown() })
	if err := runtime.PublishUnchecked(rt, "x."+strings.Repeat("a", 5000)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rt.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the runtime still runs without a connection")
	}
	if code, _ := get(t, "http://"+rt.MetricsAddr()+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz: %d, want 503", code)
	}
	if err := rt.Shutdown(); err == nil || !strings.Contains(err.Error(), "closed the runtime's connection") {
		t.Errorf("shutdown: %v", err)
	}
}

// TestStatusAPIRefusesBadRequests: a request without an event id is a 400;
// one whose reply subject is longer than the runtime sends to is not
// answered, and the runtime stays healthy.
func TestStatusAPIRefusesBadRequests(t *testing.T) {
	testenv.Guest(t, "internal/testguests/noop")
	rt := testenv.Start(t, testenv.Config(t, `
function "noop" { module = "internal/testguests/noop/noop.wasm" }
queue "ok" {
  subject  = "ok.send"
  function = "noop"
}`), "")
	nc, js := testenv.Connect(t, rt.ClientURL())
	for _, body := range []string{`{}`, `not json`, `{"id":"` + strings.Repeat("i", 2000) + `"}`} {
		m, err := nc.Request(runtime.StatusSubject, []byte(body), 10*time.Second)
		if err != nil {
			t.Fatalf("request %.20s: %v", body, err)
		}
		if m.Header.Get("Nats-Service-Error-Code") != "400" {
			t.Errorf("request %.20s: %q %v", body, m.Data, m.Header)
		}
	}
	long := "_INBOX." + strings.Repeat("r", 3900)
	sub, err := nc.SubscribeSync(long)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishRequest(runtime.StatusSubject, long, []byte(`{"id":"x"}`)); err != nil {
		t.Fatal(err)
	}
	publishMsg(t, js, "ok.send", "after", "x", nil)
	if st := settled(t, nc, "after"); st.State != triggers.StateSucceeded {
		t.Errorf("after the request: %+v", st)
	}
	if m, err := sub.NextMsg(0); err == nil {
		t.Errorf("answered on a 3,907-byte subject: %q", m.Data)
	}

	// A reply subject the requester chose is not lent the runtime's
	// authority: no answer to a KV, admin or other non-inbox subject.
	forged := []string{"$KV.sluice_fn_noop.secret", "sluice.admin.reload", "ok.send", "_SLUICE_INBOX.x.y"}
	var subs []*nats.Subscription
	for _, to := range forged {
		s, err := nc.SubscribeSync(to)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
		if err := nc.PublishRequest(runtime.StatusSubject, to, []byte(`{"id":"after"}`)); err != nil {
			t.Fatal(err)
		}
	}
	// The endpoint answers requests one at a time, in order: once this
	// one is answered, the forged ones were handled.
	if _, err := nc.Request(runtime.StatusSubject, []byte(`{"id":"after"}`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for i, s := range subs {
		if m, err := s.NextMsg(0); err == nil {
			t.Errorf("answered on %s: %q", forged[i], m.Data)
		}
	}
	healthy(t, rt)
}
