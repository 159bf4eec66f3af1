package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/runtime"
	"github.com/sluice-run/sluice/triggers"
)

const rolesConfig = `
nats {
  user "admin" {
    password = "admin-secret"
    role     = "admin"
  }
  user "app" {
    password = "app-secret"
    role     = "publish"
  }
}
function "kv" { module = "internal/testguests/kv/kv.wasm" }
function "fail" { module = "internal/testguests/fail/fail.wasm" }
queue "kv" {
  subject  = "kv.cmd"
  function = "kv"
}
queue "bad" {
  subject  = "bad.send"
  function = "fail"
  retry { max_attempts = 1 }
}
`

// violations records the permission violations a connection is told of.
type violations struct {
	mu   sync.Mutex
	seen []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) {
		v.mu.Lock()
		v.seen = append(v.seen, err.Error())
		v.mu.Unlock()
	}
}

// named reports whether a violation naming subject (quoted) was reported.
func (v *violations) named(kind, subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range v.seen {
		if strings.Contains(s, kind) && strings.Contains(s, `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// TestRoleMatrix checks each role against raw NATS operations, not
// through the CLI: the publish role publishes to bound subjects (with a
// JetStream acknowledgement) and asks the runtime for statuses, and every
// other JetStream API, key-value, object-store, admin, replay, service and
// inbox subject is refused by the server, and so is forging or reading
// guests' log lines (sluice.logs.>); it may subscribe to its own
// inboxes ("_INBOX.app.>") only, and they carry none of the runtime's or
// the admin's traffic; the admin may do everything.
func TestRoleMatrix(t *testing.T) {
	testenv.Guest(t, "internal/testguests/kv")
	testenv.Guest(t, "internal/testguests/fail")
	rt := testenv.Start(t, testenv.Config(t, rolesConfig), "")
	ctx := context.Background()

	admin, err := nats.Connect(rt.ClientURL(), nats.UserInfo("admin", "admin-secret"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	ajs, _ := jetstream.New(admin)

	var v violations
	app, err := nats.Connect(rt.ClientURL(), nats.UserInfo("app", "app-secret"), nats.ErrorHandler(v.handler),
		nats.CustomInboxPrefix(runtime.UserInbox("app")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	js, _ := jetstream.New(app)

	// Everything the runtime's or the admin's connection receives on an
	// inbox would show here if they shared the publisher's namespace.
	var eavesMu sync.Mutex
	var eaves []string
	if _, err := app.Subscribe(runtime.UserInbox("app")+".>", func(m *nats.Msg) {
		eavesMu.Lock()
		eaves = append(eaves, m.Subject)
		eavesMu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}

	// Allowed: a JetStream publish to a bound subject, acknowledged.
	ack, err := js.Publish(ctx, "kv.cmd", []byte("put secret s3cret"), jetstream.WithMsgID("put-1"))
	if err != nil || ack.Stream != "SLUICE_Q_kv" {
		t.Fatalf("app publish: %v %+v", err, ack)
	}
	if _, err := js.Publish(ctx, "bad.send", []byte("x"), jetstream.WithMsgID("bad-1")); err != nil {
		t.Fatalf("app publish: %v", err)
	}
	// Allowed: the status API, which waits for the outcome.
	var st triggers.Status
	testenv.Eventually(t, 30*time.Second, "the put to succeed, seen through the status API", func() bool {
		body, _ := json.Marshal(runtime.StatusRequest{ID: "put-1", Stream: ack.Stream})
		m, err := app.Request(runtime.StatusSubject, body, 5*time.Second)
		if err != nil {
			t.Fatalf("status request: %v", err)
		}
		var rep runtime.StatusReply
		if err := json.Unmarshal(m.Data, &rep); err != nil || len(rep.Statuses) != 1 {
			t.Fatalf("status answer %q: %v", m.Data, err)
		}
		st = rep.Statuses[0]
		return st.State == triggers.StateSucceeded
	})
	testenv.Eventually(t, 30*time.Second, "a dead letter", func() bool {
		s, err := ajs.Stream(ctx, "SLUICE_DLQ_bad")
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 1
	})
	// Let the runtime read the function's value through its own
	// connection, as it would for any guest: none of it may show on the
	// publisher's inbox subscription.
	if _, err := js.Publish(ctx, "kv.cmd", []byte("get secret"), jetstream.WithMsgID("get-1")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the get to succeed", func() bool {
		body, _ := json.Marshal(runtime.StatusRequest{ID: "get-1"})
		m, err := app.Request(runtime.StatusSubject, body, 5*time.Second)
		if err != nil {
			return false
		}
		var rep runtime.StatusReply
		return json.Unmarshal(m.Data, &rep) == nil && len(rep.Statuses) == 1 && string(rep.Statuses[0].Result) == "s3cret"
	})

	// A reply header cannot make the runtime write the value for it.
	m := nats.NewMsg("kv.cmd")
	m.Data = []byte("get secret")
	m.Header.Set(triggers.HdrReply, "$KV.sluice_fn_kv.secret")
	if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID("forged-reply")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the forged-reply event to succeed", func() bool {
		body, _ := json.Marshal(runtime.StatusRequest{ID: "forged-reply"})
		m, err := app.Request(runtime.StatusSubject, body, 5*time.Second)
		if err != nil {
			return false
		}
		var rep runtime.StatusReply
		return json.Unmarshal(m.Data, &rep) == nil && len(rep.Statuses) == 1 && rep.Statuses[0].State == triggers.StateSucceeded
	})

	denied := []struct{ subject, body string }{
		{"$JS.API.INFO", ""},
		{"$JS.API.STREAM.LIST", ""},
		{"$JS.API.STREAM.NAMES", ""},
		{"$JS.API.STREAM.INFO.SLUICE_Q_kv", ""},
		{"$JS.API.STREAM.CREATE.EVIL", `{"name":"EVIL","subjects":["evil.>"]}`},
		{"$JS.API.STREAM.DELETE.SLUICE_Q_kv", ""},
		{"$JS.API.STREAM.PURGE.SLUICE_DLQ_bad", ""},
		{"$JS.API.STREAM.MSG.GET.SLUICE_Q_kv", `{"seq":1}`},
		{"$JS.API.STREAM.MSG.GET.SLUICE_DLQ_bad", `{"seq":1}`},
		{"$JS.API.STREAM.MSG.GET.KV_sluice_fn_kv", `{"last_by_subj":"$KV.sluice_fn_kv.secret"}`},
		{"$JS.API.STREAM.MSG.DELETE.SLUICE_DLQ_bad", `{"seq":1}`},
		{"$JS.API.DIRECT.GET.KV_sluice_fn_kv", `{"last_by_subj":"$KV.sluice_fn_kv.secret"}`},
		{"$JS.API.DIRECT.GET.KV_sluice_fn_kv.$KV.sluice_fn_kv.secret", ""},
		{"$JS.API.DIRECT.GET.KV_sluice_status", `{"last_by_subj":"$KV.sluice_status.put-1.kv"}`},
		{"$JS.API.DIRECT.GET.KV_sluice_runtime", `{"seq":1}`},
		{"$JS.API.DIRECT.GET.KV_sluice_nodes", `{"seq":1}`},
		{"$JS.API.CONSUMER.CREATE.KV_sluice_status", `{"stream_name":"KV_sluice_status","config":{"deliver_subject":"_INBOX.steal","ack_policy":"none"}}`},
		{"$JS.API.CONSUMER.CREATE.KV_sluice_fn_kv", `{"stream_name":"KV_sluice_fn_kv","config":{"deliver_subject":"sluice.admin.reload","ack_policy":"none"}}`},
		{"$JS.API.CONSUMER.CREATE.SLUICE_DLQ_bad", `{"stream_name":"SLUICE_DLQ_bad","config":{"ack_policy":"none"}}`},
		{"$JS.API.CONSUMER.DURABLE.CREATE.SLUICE_Q_kv.steal", `{"stream_name":"SLUICE_Q_kv","config":{"durable_name":"steal"}}`},
		{"$JS.API.CONSUMER.INFO.SLUICE_Q_kv.sluice_kv", ""},
		{"$JS.API.CONSUMER.LIST.SLUICE_Q_kv", ""},
		{"$JS.API.CONSUMER.DELETE.SLUICE_Q_kv.sluice_kv", ""},
		{"$JS.API.CONSUMER.PAUSE.SLUICE_Q_kv.sluice_kv", `{"pause_until":"2099-01-01T00:00:00Z"}`},
		{"$KV.sluice_fn_kv.secret", "overwritten"},
		{"$KV.sluice_functions.kv", "forged"},
		{"$KV.sluice_status.put-1.kv", "{}"},
		{"$O.sluice_modules.M.x", ""},
		{"sluice.admin.reload", ""},
		{"sluice.admin.deploy", `{}`},
		{"sluice.replay.bad", "forged"},
		{"sluice.dlq.bad", "forged"},
		{"sluice.dlq.bad.put-1", "forged"}, // an event's own dead-letter subject
		{client.LogSubject("kv", "kv"), `{"line":"forged"}`},
		{"$SRV.PING", ""},
		{"$SRV.INFO.sluice", ""},
		{"_INBOX.someone.else", "forged answer"},
		{"_SLUICE_INBOX.x.y", "forged answer"},
	}
	for _, d := range denied {
		if err := app.Publish(d.subject, []byte(d.body)); err != nil {
			t.Fatalf("publish %s: %v", d.subject, err)
		}
	}
	subs := []string{">", "_INBOX.>", "_INBOX.*.>", "_INBOX.admin.>", "$KV.>", "$JS.>", "_SLUICE_INBOX.>", "sluice.>", client.LogSubjectPrefix + ".>", "kv.cmd", "$JS.API.DIRECT.GET.>"}
	for _, sub := range subs {
		if _, err := app.SubscribeSync(sub); err != nil {
			t.Fatalf("subscribe %s: %v", sub, err)
		}
	}
	if err := app.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, d := range denied {
		testenv.Eventually(t, 10*time.Second, "a permission violation for publish to "+d.subject, func() bool {
			return v.named("Publish", d.subject)
		})
	}
	for _, sub := range subs {
		testenv.Eventually(t, 10*time.Second, "a permission violation for subscribe to "+sub, func() bool {
			return v.named("Subscription", sub)
		})
	}

	// No effect: the value, the stream and the dead letter are intact, no
	// consumer was added, no function record forged.
	kv, err := ajs.KeyValue(ctx, "sluice_fn_kv")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "secret"); err != nil || string(e.Value()) != "s3cret" {
		t.Errorf("function value after the denied put: %v %q", err, e.Value())
	}
	for name, want := range map[string]uint64{"SLUICE_DLQ_bad": 1} {
		s, err := ajs.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info, _ := s.Info(ctx)
		if info.State.Msgs != want || info.State.Consumers != 0 {
			t.Errorf("%s after the denied calls: %d messages, %d consumers", name, info.State.Msgs, info.State.Consumers)
		}
	}
	if _, err := ajs.Stream(ctx, "EVIL"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("stream EVIL: %v", err)
	}
	status, err := ajs.Stream(ctx, "KV_sluice_status")
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := status.Info(ctx); info.State.Consumers != 0 {
		t.Errorf("status bucket has %d consumers", info.State.Consumers)
	}

	// The publisher's inbox subscription saw the answers to its own
	// requests only (all under its connection's response prefix), never
	// the runtime's fetches and key-value reads.
	own := app.NewRespInbox()
	own = own[:strings.LastIndexByte(own, '.')+1]
	eavesMu.Lock()
	seen := append([]string(nil), eaves...)
	eavesMu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the inbox subscription saw nothing, not even its own answers")
	}
	for _, s := range seen {
		if !strings.HasPrefix(s, own) {
			t.Errorf("the publisher's _INBOX.> saw %s, not an answer to it", s)
		}
	}

	// The admin keeps everything.
	if _, err := ajs.Stream(ctx, "SLUICE_Q_kv"); err != nil {
		t.Errorf("admin stream info: %v", err)
	}
	if _, err := kv.Put(ctx, "admin", []byte("ok")); err != nil {
		t.Errorf("admin kv put: %v", err)
	}
	if _, err := admin.Request(runtime.AdminSubjectPrefix+".reload", nil, 10*time.Second); err != nil {
		t.Errorf("admin reload: %v", err)
	}
}

// TestReloadGivesPublishRoleNewSubjects: a queue added by a reload is
// publishable by the publish role at once, a user added by it can
// connect, and turning authentication off is refused.
func TestReloadGivesPublishRoleNewSubjects(t *testing.T) {
	lc := newLiveConfig(t, "internal/testguests/noop")
	const users = `
nats {
  user "admin" {
    password = "admin-secret"
    role     = "admin"
  }
  user "app" {
    password = "app-secret"
    role     = "publish"
  }
%s
}
function "noop" { module = {{noop}} }
queue "one" {
  subject  = "one.send"
  function = "noop"
}
%s`
	lc.write(strings.Replace(strings.Replace(users, "%s", "", 1), "%s", "", 1))
	rt := startLive(t, lc, false, nil)
	ctx := context.Background()
	connect := func(user, pw string) (*nats.Conn, jetstream.JetStream, error) {
		nc, err := nats.Connect(rt.ClientURL(), nats.UserInfo(user, pw), nats.CustomInboxPrefix(runtime.UserInbox(user)))
		if err != nil {
			return nil, nil, err
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		return nc, js, nil
	}
	_, js, err := connect("app", "app-secret")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "one.send", nil); err != nil {
		t.Fatalf("publish to a bound subject: %v", err)
	}
	lc.write(strings.Replace(strings.Replace(users, "%s", `
  user "app2" {
    password = "app2-secret"
    role     = "publish"
  }`, 1), "%s", `
queue "two" {
  subject  = "two.send"
  function = "noop"
}`, 1))
	if err := rt.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	for _, u := range [][2]string{{"app", "app-secret"}, {"app2", "app2-secret"}} {
		_, js, err := connect(u[0], u[1])
		if err != nil {
			t.Fatalf("connect as %s after the reload: %v", u[0], err)
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = js.Publish(pctx, "two.send", nil)
		cancel()
		if err != nil {
			t.Errorf("%s: publish to the added queue: %v", u[0], err)
		}
	}
	lc.write(`
function "noop" { module = {{noop}} }
queue "one" {
  subject  = "one.send"
  function = "noop"
}`)
	if err := rt.Reload(); !errors.Is(err, runtime.ErrRestartRequired) {
		t.Errorf("reload without users: %v, want ErrRestartRequired", err)
	}
}
