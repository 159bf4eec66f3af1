package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions/worker"
	"github.com/sluice-run/sluice/internal/testenv"
)

func TestMain(m *testing.M) {
	worker.RunIfWorker()
	os.Exit(m.Run())
}

// TestClientIsPureGo: a producer importing client links neither cgo nor
// the wasm engine, nor the runtime's packages.
func TestClientIsPureGo(t *testing.T) {
	list := exec.Command("go", "list", "-deps", ".")
	list.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		own, isOwn := strings.CutPrefix(dep, "github.com/sluice-run/sluice/")
		if strings.Contains(dep, "wasmerio") || dep == "runtime/cgo" ||
			isOwn && slices.Contains([]string{"functions", "triggers", "runtime", "config"}, own) {
			t.Errorf("client depends on %s", dep)
		}
	}
	build := exec.Command("go", "build", "-o", os.DevNull, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
}

func start(t *testing.T) *client.Client {
	t.Helper()
	cfg, err := config.Load(filepath.Join(testenv.RepoRoot(), "runtime.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	rt := testenv.Start(t, cfg, "")
	nc, _ := testenv.Connect(t, rt.ClientURL())
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProducerPublishesWaitsAndReadsStatus: a producer learns the bindings
// that received its event, gets one outcome per binding, reads the same
// statuses back, and a duplicate publish of the id (a retry after a lost
// acknowledgement) gets the first publish's outcomes.
func TestProducerPublishesWaitsAndReadsStatus(t *testing.T) {
	c := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ev := client.Event{Subject: "user.registered", ID: "signup-1", Data: []byte(`{"email":"a@example.com"}`)}
	pub, outcomes, err := c.PublishWait(ctx, ev, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"user_registered/profile_store", "user_registered/welcome_email", "user_registered/welcome_sms"}
	if !slices.Equal(pub.Bindings, want) || pub.Duplicate || pub.Stream != "SLUICE_T_user_registered" {
		t.Fatalf("published %+v, want bindings %v", pub, want)
	}
	if len(outcomes) != len(want) {
		t.Fatalf("%d outcomes, want %d", len(outcomes), len(want))
	}
	for _, o := range outcomes {
		if o.State != client.StateSucceeded || o.ID != "signup-1" {
			t.Errorf("outcome %+v, want succeeded", o)
		}
	}
	sts, err := c.Status(ctx, "signup-1")
	if err != nil || len(sts) != len(want) {
		t.Fatalf("status: %d statuses, %v", len(sts), err)
	}
	for i, s := range sts {
		if s.Binding != want[i] || s.State != client.StateSucceeded || !bytes.Equal(s.Result, outcomes[i].Result) {
			t.Errorf("status %+v, want %s succeeded with the outcome's result", s, want[i])
		}
	}

	again, dupOutcomes, err := c.PublishWait(ctx, ev, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.Seq != pub.Seq || !slices.Equal(again.Bindings, want) {
		t.Fatalf("re-published %+v, want a duplicate of seq %d", again, pub.Seq)
	}
	for i, o := range dupOutcomes {
		if o.State != client.StateSucceeded || o.Attempts != outcomes[i].Attempts {
			t.Errorf("duplicate's outcome %+v, want the first publish's %+v", o, outcomes[i])
		}
	}

	if _, err := c.Status(ctx, "never-published"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("status of an unknown event: %v, want ErrNotFound", err)
	}
	if _, err := c.Publish(ctx, client.Event{Subject: "nobody.listens"}); !errors.Is(err, client.ErrNotBound) {
		t.Errorf("publish to an unbound subject: %v, want ErrNotBound", err)
	}
}

// TestDeadLetterOfFindsTheEvent: among several dead letters of a binding,
// DeadLetterOf returns the one of the event asked for, payload included,
// and replaying it empties the dead-letter stream of it.
func TestDeadLetterOfFindsTheEvent(t *testing.T) {
	c := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, id := range []string{"card-1", "card-2", "card-3"} {
		ev := client.Event{Subject: "payments.charge", ID: id, Data: []byte(`{"permanent":true,"n":"` + id + `"}`)}
		_, outcomes, err := c.PublishWait(ctx, ev, nil)
		if err != nil || len(outcomes) != 1 || outcomes[0].State != client.StateDeadLettered {
			t.Fatalf("%s: %+v, %v", id, outcomes, err)
		}
	}
	found, err := c.DeadLetterOf(ctx, "card-2")
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].EventID != "card-2" || found[0].Binding != "payments" ||
		string(found[0].Data) != `{"permanent":true,"n":"card-2"}` || found[0].ErrorKind != "permanent" {
		t.Fatalf("found %+v", found)
	}
	if _, err := c.DeadLetterOf(ctx, "card-9"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("dead letter of an event that has none: %v, want ErrNotFound", err)
	}
	all, err := c.DeadLetters(ctx, "payments")
	if err != nil || len(all) != 3 {
		t.Fatalf("dead letters: %d, %v", len(all), err)
	}
	chosen, err := c.Select(ctx, "payments", client.Selection{IDs: []string{"card-1"}})
	if err != nil || len(chosen) != 1 {
		t.Fatalf("select: %+v, %v", chosen, err)
	}
	if err := c.Purge(ctx, chosen); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeadLetterOf(ctx, "card-1"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("purged dead letter still found: %v", err)
	}
	if _, err := c.DeadLetters(ctx, "ghost"); !errors.Is(err, client.ErrNoDeadLetters) {
		t.Errorf("dead letters of an unknown binding: %v, want ErrNoDeadLetters", err)
	}
}

// TestOperatorCalls: the operators' reads and changes through the client
// see and change the running runtime.
func TestOperatorCalls(t *testing.T) {
	c := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	paused := func(name string) bool {
		t.Helper()
		bs, err := c.Bindings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			if b.Name == name {
				return b.Paused
			}
		}
		t.Fatalf("binding %s not listed among %+v", name, bs)
		return false
	}
	if err := c.Pause(ctx, "emails", time.Now().Add(time.Hour)); err != nil || !paused("emails") {
		t.Fatalf("pause: %v, paused %v", err, paused("emails"))
	}
	if err := c.Resume(ctx, "emails"); err != nil {
		t.Fatal(err)
	}
	// Resume moves the pause's end just ahead (see resume), so the
	// consumer says paused until then.
	for deadline := time.Now().Add(10 * time.Second); paused("emails"); {
		if time.Now().After(deadline) {
			t.Fatal("still paused 10s after resume")
		}
	}
	fns, err := c.Functions(ctx)
	if err != nil || len(fns) == 0 || fns[0].Live == "" {
		t.Fatalf("functions: %+v, %v", fns, err)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("nodes: %+v, %v", nodes, err)
	}
	raw, err := c.RunningConfig(ctx)
	if err != nil || !bytes.Contains(raw, []byte(`"emails"`)) {
		t.Fatalf("running config: %.200s, %v", raw, err)
	}
	reloads, err := c.Reload(ctx)
	if err != nil || len(reloads) != 1 || !reloads[0].Reloaded || reloads[0].Node != nodes[0].Name {
		t.Fatalf("reload: %+v, %v", reloads, err)
	}
}

// TestDeadLetterOfReadsOnlyThatEvent: among many dead letters, DeadLetterOf
// finds the event's own once its status is gone, and reads a handful of
// messages to do so, not the dead letters it passes over; Select by id
// reads the same way, and what it selected can be purged.
func TestDeadLetterOfReadsOnlyThatEvent(t *testing.T) {
	cfg, err := config.Load(filepath.Join(testenv.RepoRoot(), "runtime.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	rt := testenv.Start(t, cfg, "")
	nc, js := testenv.Connect(t, rt.ClientURL())
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ev := client.Event{Subject: "payments.charge", ID: "card-x", Data: []byte(`{"permanent":true,"n":"x"}`)}
	if _, outcomes, err := c.PublishWait(ctx, ev, nil); err != nil || len(outcomes) != 1 || outcomes[0].State != client.StateDeadLettered {
		t.Fatalf("%+v, %v", outcomes, err)
	}
	var deadLetter string
	for _, b := range cfg.Bindings() {
		if b.Name == "payments" {
			deadLetter = b.DeadLetter
		}
	}
	// Others before and after it, as the runtime writes them.
	const others = 400
	for i := range others {
		id := fmt.Sprintf("other-%d", i)
		m := nats.NewMsg(client.DeadLetterSubject(deadLetter, id))
		m.Header.Set(client.HdrEventID, id)
		m.Header.Set(client.HdrBinding, "payments")
		m.Data = []byte(strings.Repeat("x", 512))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := js.KeyValue(ctx, client.StatusBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, client.StatusKey("card-x", "payments")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx, "card-x"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("status of card-x after its purge: %v, want ErrNotFound", err)
	}

	before := nc.Stats().InMsgs
	found, err := c.DeadLetterOf(ctx, "card-x")
	read := nc.Stats().InMsgs - before
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].EventID != "card-x" || found[0].Binding != "payments" ||
		string(found[0].Data) != `{"permanent":true,"n":"x"}` || found[0].ErrorKind != "permanent" {
		t.Fatalf("found %+v", found)
	}
	// One stream list, and per dead-letter stream one info and two gets.
	if max := uint64(4 + 3*len(cfg.Bindings())); read > max {
		t.Errorf("DeadLetterOf read %d messages among %d dead letters, want at most %d: it scans", read, others+1, max)
	}

	before = nc.Stats().InMsgs
	chosen, err := c.Select(ctx, "payments", client.Selection{IDs: []string{"other-7", "card-x"}})
	read = nc.Stats().InMsgs - before
	if err != nil || len(chosen) != 2 {
		t.Fatalf("select: %+v, %v", chosen, err)
	}
	if read > 8 {
		t.Errorf("Select of two events read %d messages among %d dead letters: it scans", read, others+1)
	}
	if err := c.Purge(ctx, chosen); err != nil {
		t.Fatal(err)
	}
	for _, d := range chosen {
		if _, err := c.DeadLetterOf(ctx, d.EventID); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("purged dead letter of %s still found: %v", d.EventID, err)
		}
	}
}
