package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/wasmerio/wasmer-go/wasmer"

	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

func liveVersion(t *testing.T, server, name string) string {
	t.Helper()
	code, out, errOut := cli(t, server, "functions", "--json")
	if code != 0 {
		t.Fatalf("functions: exit %d %s", code, errOut)
	}
	var recs []functions.Record
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Name == name {
			return r.Live
		}
	}
	return ""
}

// TestDeployWhileEventsFlow swaps a function's version while 5,000 events
// stream through its queue: no event is lost or failed, events before the
// swap ran v1 and events published after it ran v2. Then the refusals and
// a rollback.
func TestDeployWhileEventsFlow(t *testing.T) {
	v1Path := testenv.Guest(t, "internal/testguests/echo")
	v2Path := testenv.Guest(t, "internal/testguests/noop")
	v1 := moduleVersion(t, v1Path)
	v2 := moduleVersion(t, v2Path)
	cfg := testenv.Config(t, `
function "f" { module = "internal/testguests/echo/echo.wasm" }
queue "q" {
  subject     = "q.in"
  function    = "f"
  concurrency = 2
}`)
	rt := testenv.Start(t, cfg, "")
	server := "--server=" + rt.ClientURL()
	_, js := testenv.Connect(t, rt.ClientURL())
	if got := liveVersion(t, server, "f"); got != v1 {
		t.Fatalf("live version %s at start, want v1 %s", got, v1)
	}

	const n = 5000
	var published atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if _, err := js.PublishAsync("q.in", []byte("event"), jetstream.WithMsgID("d-"+strconv.Itoa(i))); err != nil {
				done <- err
				return
			}
			if i%50 == 49 {
				<-js.PublishAsyncComplete()
				published.Store(int64(i + 1))
				time.Sleep(20 * time.Millisecond) // the publisher's steady rate, not a wait for the system
			}
		}
		<-js.PublishAsyncComplete()
		published.Store(n)
		done <- nil
	}()
	testenv.Eventually(t, time.Minute, "a third of the events published", func() bool { return published.Load() >= n/3 })
	deployStart := time.Now()
	code, out, errOut := cli(t, server, "deploy", "f", v2Path)
	if code != 0 || !strings.Contains(out, "deployed f version "+v2[:12]) {
		t.Fatalf("deploy: exit %d %s %s", code, out, errOut)
	}
	publishedAtSwap := published.Load()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	store, err := triggers.NewStatusStore(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	statuses := make([]triggers.Status, n)
	testenv.Eventually(t, 2*time.Minute, "every event to succeed", func() bool {
		for i := range n {
			if statuses[i].State == triggers.StateSucceeded {
				continue
			}
			st, _, err := store.Get(context.Background(), "d-"+strconv.Itoa(i), "q")
			if err != nil || st.State != triggers.StateSucceeded {
				return false
			}
			statuses[i] = st
		}
		return true
	})
	var ranV1, ranV2 int
	for i, st := range statuses {
		switch {
		case st.Version == v1:
			ranV1++
			if int64(i) >= publishedAtSwap+50 {
				t.Errorf("event %d, published after the swap, ran v1", i)
			}
		case st.Version == v2:
			ranV2++
			if st.UpdatedAt.Before(deployStart) {
				t.Errorf("event %d finished before the deploy began but ran v2", i)
			}
		default:
			t.Errorf("event %d ran version %q", i, st.Version)
		}
		if st.Attempts != 1 {
			t.Errorf("event %d took %d attempts", i, st.Attempts)
		}
	}
	t.Logf("%d events on v1, %d on v2, all succeeded first time", ranV1, ranV2)
	if ranV1 == 0 || ranV2 == 0 {
		t.Fatalf("v1 ran %d, v2 ran %d: the swap did not happen mid-stream", ranV1, ranV2)
	}

	t.Run("bad modules are refused and the live version stays", func(t *testing.T) {
		dir := t.TempDir()
		write := func(name string, b []byte) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
		wat := func(src string) []byte {
			b, err := wasmer.Wat2Wasm(src)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		cases := map[string]struct{ file, want string }{
			"garbage":        {write("garbage.wasm", []byte("PK\x03\x04 a zip, not wasm")), "not a WebAssembly binary"},
			"wat text":       {write("text.wat", []byte("(module (func (export \"handle\") (result i32) (i32.const 0)))")), "WAT"},
			"no handle":      {write("nohandle.wasm", wat(`(module (memory (export "memory") 1))`)), "does not export a function named handle"},
			"unknown import": {write("import.wasm", wat(`(module (import "sluice" "format_disk" (func)) (memory (export "memory") 1) (func (export "handle") (result i32) (i32.const 0)))`)), "sluice.format_disk"},
			"missing file":   {filepath.Join(dir, "nope.wasm"), "no such file"},
			"command module": {write("command.wasm", wat(`(module (memory (export "memory") 1) (func (export "_start")) (func (export "handle") (result i32) (i32.const 0)))`)), "--exportStart _initialize"},
		}
		for name, c := range cases {
			code, _, errOut := cli(t, server, "deploy", "f", c.file)
			if code == 0 || !strings.Contains(errOut, c.want) {
				t.Errorf("%s: exit %d, stderr %q, want a refusal mentioning %q", name, code, errOut, c.want)
			}
			if !strings.Contains(errOut, c.file) {
				t.Errorf("%s: stderr %q does not name the file deployed, %s", name, errOut, c.file)
			}
		}
		if code, _, errOut := cli(t, server, "deploy", "ghost", v2Path); code == 0 || !strings.Contains(errOut, "not in") {
			t.Errorf("deploy of an unknown function: exit %d %s", code, errOut)
		}
		if got := liveVersion(t, server, "f"); got != v2 {
			t.Fatalf("live version %s after refusals, want v2 %s", got, v2)
		}
	})

	t.Run("rollback restores the previous version", func(t *testing.T) {
		code, out, errOut := cli(t, server, "rollback", "f")
		if code != 0 || !strings.Contains(out, v1[:12]) {
			t.Fatalf("rollback: exit %d %s %s", code, out, errOut)
		}
		if got := liveVersion(t, server, "f"); got != v1 {
			t.Fatalf("live %s after rollback, want v1", got)
		}
		if v, _, _ := rt.Functions().Version("f"); v != v1 {
			t.Fatalf("runtime runs %s after rollback, want v1", v)
		}
		_, out, _ = cli(t, server, "functions")
		if !strings.Contains(out, v1[:12]) || !strings.Contains(out, v2[:12]) {
			t.Fatalf("functions does not list both versions:\n%s", out)
		}
		// --json reports what changed.
		code, out, errOut = cli(t, server, "rollback", "f", v2, "--json")
		var change struct{ Function, Version, Previous string }
		if code != 0 || json.Unmarshal([]byte(out), &change) != nil || change != (struct{ Function, Version, Previous string }{"f", v2, v1}) {
			t.Fatalf("rollback --json: exit %d %s %s", code, out, errOut)
		}
	})
}

func moduleVersion(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return functions.Version(b)
}

// TestDeployReachesEveryRuntime: two runtimes share one NATS server (as
// nodes do); a deploy answered by either is applied by both.
func TestDeployReachesEveryRuntime(t *testing.T) {
	srv := testenv.Server(t)
	testenv.Guest(t, "internal/testguests/echo")
	v2Path := testenv.Guest(t, "internal/testguests/noop")
	v2 := moduleVersion(t, v2Path)
	hcl := `
nats { url = "` + srv.ClientURL() + `" }
function "f" { module = "internal/testguests/echo/echo.wasm" }
queue "q" {
  subject  = "q.in"
  function = "f"
}`
	a := testenv.Start(t, testenv.Config(t, hcl), "")
	b := testenv.Start(t, testenv.Config(t, hcl), "")
	code, out, errOut := cli(t, "--server="+srv.ClientURL(), "deploy", "f", v2Path)
	if code != 0 {
		t.Fatalf("deploy: exit %d %s %s", code, out, errOut)
	}
	for name, rt := range map[string]interface {
		Functions() *functions.Set
	}{"a": a, "b": b} {
		testenv.Eventually(t, time.Minute, "runtime "+name+" to run v2", func() bool {
			v, _, _ := rt.Functions().Version("f")
			return v == v2
		})
	}
}
