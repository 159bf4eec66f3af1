package functions_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/testenv"
)

func loadWith(t *testing.T, opts functions.Options, fns ...config.Function) *functions.Set {
	t.Helper()
	for i := range fns {
		if fns[i].Timeout == 0 {
			fns[i].Timeout = 5 * time.Second
		}
		if fns[i].Memory == 0 {
			fns[i].Memory = 64 << 20
		}
	}
	opts.CacheDir = testenv.CacheDir(t)
	opts.Logger = testenv.Logger(t)
	set, err := functions.Load(fns, opts)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(set.Close)
	return set
}

// countingServer is an HTTP server that counts the requests it gets.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestHTTPOnlyToAllowedHosts(t *testing.T) {
	outside, outsideHits := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("secret"))
	})
	var api *httptest.Server
	api, _ = countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/hello":
			w.Header().Set("X-Echo", r.Method+" "+r.Header.Get("X-Sluice-Test"))
			w.WriteHeader(http.StatusAccepted)
			w.Write([]byte("hello"))
		case "/api/big":
			w.Write(make([]byte, 1<<20+1))
		case "/api/redirect-out":
			http.Redirect(w, r, outside.URL+"/steal", http.StatusFound)
		case "/api/redirect-in":
			http.Redirect(w, r, api.URL+"/api/hello", http.StatusFound)
		case "/admin":
			w.Write([]byte("admin"))
		default:
			http.NotFound(w, r)
		}
	})
	set := loadWith(t, functions.Options{},
		config.Function{Name: "fetcher", Module: testenv.Guest(t, "internal/testguests/fetcher"), AllowedHosts: []string{api.URL + "/api/"}},
	)
	fetch := func(method, url string) (string, error) {
		ev := functions.Event{ID: "e", Attempt: 1, Headers: map[string][]string{"Url": {url}, "Method": {method}}}
		res, err := set.Invoke(context.Background(), "fetcher", ev)
		return string(res.Output), err
	}

	if out, err := fetch("POST", api.URL+"/api/hello"); err != nil || out != "202 hello\nPOST 1" {
		t.Fatalf("allowed request: %q, %v; want \"202 hello\\nPOST 1\"", out, err)
	}
	if out, err := fetch("", api.URL+"/api/missing?x=1"); err != nil || !strings.HasPrefix(out, "404 ") {
		t.Fatalf("allowed request, 404: %q, %v", out, err)
	}
	if out, err := fetch("GET", api.URL+"/api/redirect-in"); err != nil || !strings.HasPrefix(out, "202 hello") {
		t.Fatalf("redirect within allowed_hosts: %q, %v", out, err)
	}
	for name, url := range map[string]string{
		"another host":        outside.URL + "/api/hello",
		"userinfo trick":      api.URL + "@" + strings.TrimPrefix(outside.URL, "http://") + "/api/hello",
		"path outside prefix": api.URL + "/admin",
		"dot-dot escape":      api.URL + "/api/../admin",
		"encoded dot-dot":     api.URL + "/api/%2e%2e/admin",
		"redirect out":        api.URL + "/api/redirect-out",
	} {
		_, err := fetch("GET", url)
		if kindOf(err) != functions.KindFailed || !strings.Contains(err.Error(), "http: denied") {
			t.Errorf("%s (%s): %v, want a failure saying \"http: denied\"", name, url, err)
		}
	}
	if n := outsideHits.Load(); n != 0 {
		t.Fatalf("the host outside allowed_hosts got %d requests", n)
	}
	if _, err := fetch("GET", api.URL+"/api/big"); kindOf(err) != functions.KindFailed || !strings.Contains(err.Error(), "http: too large") {
		t.Fatalf("oversize response: %v, want \"http: too large\"", err)
	}
	if _, err := fetch("GET", "ftp://example.com/x"); err == nil || !strings.Contains(err.Error(), "http: invalid") {
		t.Fatalf("ftp URL: %v, want \"http: invalid argument\"", err)
	}
	if _, err := fetch("BAD METHOD", api.URL+"/api/hello"); err == nil || !strings.Contains(err.Error(), "http: invalid") {
		t.Fatalf("bad method: %v, want \"http: invalid argument\"", err)
	}
}

func TestHTTPTimeoutIsTheInvocations(t *testing.T) {
	release := make(chan struct{})
	slow, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	set := loadWith(t, functions.Options{},
		config.Function{Name: "fetcher", Timeout: time.Second, Module: testenv.Guest(t, "internal/testguests/fetcher"), AllowedHosts: []string{slow.URL}},
	)
	start := time.Now()
	_, err := set.Invoke(context.Background(), "fetcher", functions.Event{ID: "e", Attempt: 1, Headers: map[string][]string{"Url": {slow.URL}}})
	if !errors.Is(err, functions.ErrTimeout) {
		t.Fatalf("a request that never answers: %v, want the invocation's timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %s with a 1s function timeout", d)
	}
}

func TestKVIsPerFunction(t *testing.T) {
	srv := testenv.Server(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	guest := testenv.Guest(t, "internal/testguests/kv")
	set := loadWith(t, functions.Options{JS: js},
		config.Function{Name: "kv_a", Module: guest},
		config.Function{Name: "kv_b", Module: guest},
	)
	run := func(fn, cmd string) string {
		t.Helper()
		res, err := set.Invoke(context.Background(), fn, functions.Event{ID: "e", Attempt: 1, Data: []byte(cmd)})
		if err != nil {
			return "error: " + err.Error()
		}
		return string(res.Output)
	}
	for _, step := range []struct{ fn, cmd, want string }{
		{"kv_a", "get greeting", "not found"},
		{"kv_a", "put greeting hello a", "ok"},
		{"kv_a", "get greeting", "hello a"},
		{"kv_b", "get greeting", "not found"}, // B cannot read A's keys
		{"kv_b", "put greeting hello b", "ok"},
		{"kv_a", "get greeting", "hello a"},
		{"kv_b", "get greeting", "hello b"},
		{"kv_a", "put users/42.name Ada", "ok"},
		{"kv_a", "get users/42.name", "Ada"},
		{"kv_a", "del greeting", "ok"},
		{"kv_a", "get greeting", "not found"},
		{"kv_a", "del greeting", "ok"},
		{"kv_b", "get greeting", "hello b"},
	} {
		if got := run(step.fn, step.cmd); got != step.want {
			t.Fatalf("%s %q = %q, want %q", step.fn, step.cmd, got, step.want)
		}
	}
	for _, bad := range []string{"get bad*key", "put .dot x", "get a..b", "put sp%ce x"} {
		if got := run("kv_a", bad); !strings.Contains(got, "invalid argument") {
			t.Errorf("kv_a %q = %q, want an invalid-argument failure", bad, got)
		}
	}
	if got := run("kv_a", "put big "+strings.Repeat("x", 1<<20+1)); !strings.Contains(got, "too large") {
		t.Errorf("1 MiB + 1 value: %q, want too large", got[:min(len(got), 200)])
	}
	if got := run("kv_a", "put big "+strings.Repeat("x", 512<<10)); got != "ok" {
		t.Errorf("512 KiB value: %q", got)
	}
	// The buckets are real JetStream KV buckets, one per function.
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, functions.KVBucketPrefix+"kv_b")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "greeting")
	if err != nil || string(e.Value()) != "hello b" {
		t.Fatalf("bucket sluice_fn_kv_b greeting = %v, %v", e, err)
	}
	st, err := kv.Status(ctx)
	if err != nil || st.History() != 1 || st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Storage != jetstream.FileStorage {
		t.Fatalf("bucket status %+v, %v: want history 1, file storage", st, err)
	}
}

func TestKVWithoutJetStreamFails(t *testing.T) {
	set := loadWith(t, functions.Options{},
		config.Function{Name: "kv", Module: testenv.Guest(t, "internal/testguests/kv")})
	_, err := set.Invoke(context.Background(), "kv", functions.Event{ID: "e", Attempt: 1, Data: []byte("put k v")})
	if kindOf(err) != functions.KindFailed || !strings.Contains(err.Error(), "kv_put: failed") {
		t.Fatalf("kv without JetStream: %v, want \"kv_put: failed\"", err)
	}
}

func TestSeenMakesEffectsOnce(t *testing.T) {
	srv := testenv.Server(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	pub := &spyPublisher{}
	guest := testenv.Guest(t, "internal/testguests/once")
	set := loadWith(t, functions.Options{JS: js, Publisher: pub},
		config.Function{Name: "once", Module: guest, Publish: []string{"effects.>"}},
		config.Function{Name: "once_too", Module: guest, Publish: []string{"effects.>"}},
	)
	run := func(fn, id, ttl string) string {
		t.Helper()
		h := map[string][]string{"Target": {"effects." + fn}}
		if ttl != "" {
			h["Ttl"] = []string{ttl}
		}
		res, err := set.Invoke(context.Background(), fn, functions.Event{ID: id, Attempt: 1, Data: []byte(id), Headers: h})
		if err != nil {
			return "error: " + err.Error()
		}
		return string(res.Output)
	}
	for _, step := range []struct{ fn, id, want string }{
		{"once", "e1", "first"},
		{"once", "e1", "seen"},
		{"once", "e1", "seen"},
		{"once", "e2", "first"},
		{"once_too", "e1", "first"}, // another function's keys are its own
	} {
		if got := run(step.fn, step.id, ""); got != step.want {
			t.Fatalf("%s %s = %q, want %q", step.fn, step.id, got, step.want)
		}
	}
	if want := "effects.once e1,effects.once e2,effects.once_too e1"; strings.Join(pub.sent, ",") != want {
		t.Fatalf("published %q, want %q", pub.sent, want)
	}
	// Keys expire after their ttl.
	if got := run("once", "short", "1s"); got != "first" {
		t.Fatalf("short ttl: %q", got)
	}
	if got := run("once", "short", "1s"); got != "seen" {
		t.Fatalf("short ttl again at once: %q", got)
	}
	testenv.Eventually(t, 15*time.Second, "the seen key to expire", func() bool {
		got := run("once", "short", "1s")
		if strings.HasPrefix(got, "error") {
			t.Fatal(got)
		}
		return got == "first"
	})
	if _, err := js.KeyValue(context.Background(), functions.SeenBucketPrefix+"once"); err != nil {
		t.Fatalf("seen bucket: %v", err)
	}
}
