package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

// downstream is an outside service that is broken until fixed: it answers
// 503, and lets "slow" requests hang, so they time out.
type downstream struct {
	fixed     atomic.Bool
	mu        sync.Mutex
	delivered map[string]int
}

func (d *downstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if !d.fixed.Load() {
		if strings.Contains(string(body), "slow") {
			<-r.Context().Done()
			return
		}
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	d.mu.Lock()
	d.delivered[r.Header.Get("X-Event-Id")]++
	d.mu.Unlock()
}

func (d *downstream) count() (events, duplicates int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.delivered {
		events++
		duplicates += n - 1
	}
	return events, duplicates
}

// TestDeadLettersReplayToTheFailedSubscriberOnly: a topic with three
// subscribers, one of which fails until its downstream is fixed. After the
// fix, `dlq replay` re-delivers to that subscriber only.
func TestDeadLettersReplayToTheFailedSubscriberOnly(t *testing.T) {
	down := &downstream{delivered: map[string]int{}}
	srv := httptest.NewServer(down)
	t.Cleanup(srv.Close)
	testenv.Guest(t, "internal/testguests/webhook")
	testenv.Guest(t, "examples/signup/welcome_sms")
	testenv.Guest(t, "examples/signup/profile_store")
	cfg := testenv.Config(t, `
function "welcome_sms" {
  module  = "examples/signup/welcome_sms/welcome_sms.wasm"
  publish = ["sms.outbox"]
}
function "profile_store" {
  module  = "examples/signup/profile_store/profile_store.wasm"
  publish = ["profile.stored"]
}
function "webhook" {
  module        = "internal/testguests/webhook/webhook.wasm"
  timeout       = "1s"
  allowed_hosts = ["`+srv.URL+`"]
}
topic "user_registered" {
  subject = "user.registered"
  subscriber "sms" { function = "welcome_sms" }
  subscriber "profile" { function = "profile_store" }
  subscriber "crm" {
    function    = "webhook"
    concurrency = 4
    retry {
      max_attempts = 2
      initial      = "10ms"
      max          = "20ms"
    }
  }
}`)
	rt := testenv.Start(t, cfg, "")
	server := "--server=" + rt.ClientURL()
	nc, js := testenv.Connect(t, rt.ClientURL())
	sms := testenv.CountEffects(t, nc, "sms.outbox")
	profiles := testenv.CountEffects(t, nc, "profile.stored")

	const normal, slow = 20, 3
	ctx := context.Background()
	for i := range normal + slow {
		m := nats.NewMsg("user.registered")
		kind := "fast"
		if i >= normal {
			kind = "slow"
		}
		m.Data = []byte(`{"email":"u` + strconv.Itoa(i) + `@example.com","note":"` + kind + `"}`)
		m.Header.Set("Url", srv.URL+"/crm")
		if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID("user-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	dlqCount := func() int {
		s, err := js.Stream(ctx, triggers.DeadLetterStreamName("user_registered/crm"))
		if err != nil {
			return -1
		}
		info, err := s.Info(ctx)
		if err != nil {
			return -1
		}
		return int(info.State.Msgs)
	}
	testenv.Eventually(t, time.Minute, "every crm event dead-lettered, the others handled", func() bool {
		return dlqCount() == normal+slow && sms.Distinct() == normal+slow && profiles.Distinct() == normal+slow
	})

	t.Run("ls and show list every attempt", func(t *testing.T) {
		code, out, errOut := cli(t, server, "dlq", "ls", "user_registered/crm", "--json")
		if code != 0 {
			t.Fatalf("exit %d %s", code, errOut)
		}
		var listed []struct{ ID, ErrorKind string }
		if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed) != normal+slow {
			t.Fatalf("ls: %v, %d entries:\n%s", err, len(listed), out)
		}
		code, out, _ = cli(t, server, "dlq", "show", "user-0", "--json")
		var shown []struct {
			Attempts int
			History  []struct {
				Attempt int
				Kind    string
				Error   string
				Node    string
				Version string
			}
			Payload string
		}
		if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || len(shown) != 1 {
			t.Fatalf("show: exit %d\n%s", code, out)
		}
		h := shown[0].History
		if len(h) != 2 || h[0].Attempt != 1 || h[1].Attempt != 2 {
			t.Fatalf("history %+v, want attempts 1 and 2", h)
		}
		for _, a := range h {
			if a.Kind != "failed" || !strings.Contains(a.Error, "503") || a.Node == "" || len(a.Version) != 64 {
				t.Errorf("attempt %+v: want kind, error, node and version", a)
			}
		}
		if !strings.Contains(shown[0].Payload, "u0@example.com") {
			t.Errorf("payload %q", shown[0].Payload)
		}
	})

	t.Run("dry run changes nothing", func(t *testing.T) {
		code, out, _ := cli(t, server, "dlq", "replay", "user_registered/crm", "--all", "--dry-run")
		if code != 0 || !strings.Contains(out, "would replay 23") {
			t.Fatalf("exit %d: %s", code, out)
		}
		if n := dlqCount(); n != normal+slow {
			t.Fatalf("%d dead letters after a dry run, want %d", n, normal+slow)
		}
	})

	down.fixed.Store(true)

	t.Run("error-kind replays only those", func(t *testing.T) {
		// A hanging downstream ends as a timeout, or as a failed HTTP call
		// when the call's own deadline wins the race: take the kinds from ls.
		_, out, _ := cli(t, server, "dlq", "ls", "user_registered/crm", "--json")
		var listed []struct {
			ID        string
			ErrorKind string `json:"error_kind"`
		}
		if err := json.Unmarshal([]byte(out), &listed); err != nil {
			t.Fatal(err)
		}
		var timedOut []string
		for _, d := range listed {
			if d.ErrorKind == "timeout" {
				timedOut = append(timedOut, d.ID)
			}
		}
		if len(timedOut) == 0 {
			t.Fatalf("no dead letter of kind timeout among %+v", listed)
		}
		code, out, _ := cli(t, server, "dlq", "replay", "user_registered/crm", "--all", "--error-kind", "timeout", "--json")
		var rep struct{ Events []string }
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || strings.Join(rep.Events, ",") != strings.Join(timedOut, ",") {
			t.Fatalf("exit %d: %s (want exactly %v)", code, out, timedOut)
		}
		testenv.Eventually(t, 30*time.Second, "the timed-out events delivered", func() bool {
			n, _ := down.count()
			return n == len(timedOut)
		})
		if n := dlqCount(); n != normal+slow-len(timedOut) {
			t.Fatalf("%d dead letters left, want %d", n, normal+slow-len(timedOut))
		}
	})

	t.Run("rate-limited replay of the rest", func(t *testing.T) {
		start := time.Now()
		code, out, errOut := cli(t, server, "dlq", "replay", "user_registered/crm", "--all", "--rate", "50/s")
		if code != 0 {
			t.Fatalf("exit %d: %s %s", code, out, errOut)
		}
		// The limiter's guarantee (a lower bound, not a timing measure):
		// 20 replays at 50/s cannot take less than 19 intervals.
		if took := time.Since(start); took < 19*time.Second/50 {
			t.Fatalf("20 replays at 50/s took %s", took)
		} else {
			t.Logf("replayed at 50/s: %d dead letters in %s", normal, took)
		}
		testenv.Eventually(t, 30*time.Second, "every event delivered", func() bool {
			n, _ := down.count()
			return n == normal+slow
		})
	})

	if n, dup := down.count(); n != normal+slow || dup != 0 {
		t.Fatalf("downstream got %d events with %d duplicates, want %d once each", n, dup, normal+slow)
	}
	if dlqCount() != 0 {
		t.Fatalf("dead letters left after replaying all")
	}
	if d := append(sms.Duplicates(), profiles.Duplicates()...); len(d) > 0 || sms.Distinct() != normal+slow {
		t.Fatalf("other subscribers saw events again: %v", d)
	}
}

// TestPauseResumeAndBindings: a paused binding's events wait in the stream
// (counted by `bindings`) and all arrive after resume.
func TestPauseResumeAndBindings(t *testing.T) {
	testenv.Guest(t, "examples/emails/sender")
	cfg := testenv.Config(t, `
function "sender" {
  module  = "examples/emails/sender/sender.wasm"
  publish = ["email.sent"]
}
queue "emails" {
  subject  = "email.send"
  function = "sender"
  rate     = "500/s"
}`)
	rt := testenv.Start(t, cfg, "")
	server := "--server=" + rt.ClientURL()
	nc, js := testenv.Connect(t, rt.ClientURL())
	sent := testenv.CountEffects(t, nc, "email.sent")
	if code, out, errOut := cli(t, server, "pause", "emails"); code != 0 || !strings.Contains(out, "paused") {
		t.Fatalf("pause: exit %d %s %s", code, out, errOut)
	}
	const n = 10
	for i := range n {
		if _, err := js.Publish(context.Background(), "email.send", []byte(`{"to":"p@example.com"}`), jetstream.WithMsgID("p-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	var views []client.Binding
	testenv.Eventually(t, 10*time.Second, "the backlog counted by bindings", func() bool {
		_, out, _ := cli(t, server, "bindings", "--json")
		return json.Unmarshal([]byte(out), &views) == nil && len(views) == 1 && views[0].Pending == n
	})
	if v := views[0]; !v.Paused || v.Name != "emails" || v.Function != "sender" || v.Rate != 500 || v.InFlight != 0 {
		t.Fatalf("bindings: %+v", v)
	}
	if got := sent.Distinct(); got != 0 {
		t.Fatalf("%d events delivered while paused", got)
	}
	if code, _, errOut := cli(t, server, "resume", "emails"); code != 0 {
		t.Fatalf("resume: exit %d %s", code, errOut)
	}
	resumed := time.Now()
	testenv.Eventually(t, 30*time.Second, "every event delivered after resume", func() bool { return sent.Distinct() == n })
	t.Logf("every event delivered %s after resume", time.Since(resumed).Round(time.Millisecond))
	if code, _, errOut := cli(t, server, "pause", "nope"); code != 1 || !strings.Contains(errOut, "nope") {
		t.Fatalf("pause of an unknown binding: exit %d %s", code, errOut)
	}
}

// TestReplyHeaderAndResultChain: a producer that sets Sluice-Reply hears
// the final outcome after two retries; on_success results feed a second
// function.
func TestReplyHeaderAndResultChain(t *testing.T) {
	testenv.Guest(t, "examples/flaky/flaky")
	testenv.Guest(t, "internal/testguests/echo")
	testenv.Guest(t, "examples/signup/profile_store")
	cfg := testenv.Config(t, `
nats { reply_subjects = ["my.replies"] }
function "flaky" {
  module  = "examples/flaky/flaky/flaky.wasm"
  publish = ["flaky.done"]
}
function "echo" { module = "internal/testguests/echo/echo.wasm" }
function "profile_store" {
  module  = "examples/signup/profile_store/profile_store.wasm"
  publish = ["profile.stored"]
}
queue "flaky" {
  subject  = "jobs.flaky"
  function = "flaky"
  retry {
    max_attempts = 5
    initial      = "10ms"
    max          = "50ms"
  }
}
queue "first" {
  subject    = "chain.in"
  function   = "echo"
  on_success = "chain.next"
}
queue "second" {
  subject  = "chain.next"
  function = "profile_store"
}`)
	rt := testenv.Start(t, cfg, "")
	nc, js := testenv.Connect(t, rt.ClientURL())
	replies, err := nc.SubscribeSync("my.replies")
	if err != nil {
		t.Fatal(err)
	}
	stored := testenv.CountEffects(t, nc, "profile.stored")
	ctx := context.Background()
	m := nats.NewMsg("jobs.flaky")
	m.Data = []byte("{}")
	m.Header.Set(triggers.HdrReply, "my.replies")
	if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID("reply-1")); err != nil {
		t.Fatal(err)
	}
	reply, err := replies.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	var st triggers.Status
	if err := json.Unmarshal(reply.Data, &st); err != nil {
		t.Fatal(err)
	}
	if st.ID != "reply-1" || st.State != triggers.StateSucceeded || st.Attempts != 3 || string(st.Result) != "ok after 3 attempts" {
		t.Fatalf("reply %+v, want success on attempt 3", st)
	}
	if _, err := js.Publish(ctx, "chain.in", []byte(`{"email":"chain@example.com"}`), jetstream.WithMsgID("chain-1")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the second function to consume the first's result", func() bool {
		return stored.Distinct() == 1
	})
}
