package runtime_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/internal/guestbuild"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/runtime"
)

// emailsSource is the emails example of each language, and the file whose
// result text ("sent to ...") an edit changes.
var emailsSource = map[guestbuild.Language]struct{ dir, file string }{
	guestbuild.Go:             {"examples/emails/sender", "main.go"},
	guestbuild.C:              {"examples/emails-c", "sender.c"},
	guestbuild.Rust:           {"examples/emails-rust", "src/lib.rs"},
	guestbuild.AssemblyScript: {"examples/emails-assemblyscript", "assembly/index.ts"},
}

// BenchmarkWatchRebuild measures the dev loop of `sluice run --watch` in
// each language: from saving a change to a function's source to the end of
// the first event that ran the new version. The function is the emails
// example of the language, copied and run from source by a real runtime
// (embedded NATS, worker processes) with WatchSources checking every
// WatchInterval as `sluice run --watch` does; each iteration edits its result text
// and publishes events, each awaited, every 10ms until one returns the new
// text. s/op is that time; live-s/op the part until the new version was
// live (rebuilt and deployed), the rest being the wait for the event that
// shows it. Run it with
//
//	go test ./runtime -run '^$' -bench BenchmarkWatchRebuild -benchtime 5x
func BenchmarkWatchRebuild(b *testing.B) {
	for _, lang := range []guestbuild.Language{guestbuild.Go, guestbuild.C, guestbuild.Rust, guestbuild.AssemblyScript} {
		b.Run(string(lang), func(b *testing.B) {
			testenv.RequireToolchain(b, lang)
			benchWatchRebuild(b, lang)
		})
	}
}

func benchWatchRebuild(b *testing.B, lang guestbuild.Language) {
	src := copyEmailsSource(b, lang)
	file := filepath.Join(src, emailsSource[lang].file)
	orig, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	if !strings.Contains(string(orig), "sent to ") {
		b.Fatalf("%s does not hold the text the benchmark edits", file)
	}
	cfg := testenv.Config(b, fmt.Sprintf(`
function "sender" {
  source  = %q
  module  = %q
  env     = { SENDER = "hello@example.com" }
  publish = ["email.sent"]
}
queue "emails" {
  subject  = "email.send"
  function = "sender"
}
`, src, filepath.Join(b.TempDir(), "sender.wasm")))
	rt := testenv.Start(b, cfg, "")
	nc, _ := testenv.Connect(b, rt.ClientURL())
	c, err := client.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	type rebuilt struct {
		at  time.Time
		err error
	}
	live := make(chan rebuilt, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rt.WatchSources(ctx, runtime.WatchInterval, func(_ string, err error) { live <- rebuilt{time.Now(), err} })
	}()
	b.Cleanup(func() { cancel(); <-done })

	n := 0
	result := func() string {
		n++
		wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, sts, err := c.PublishWait(wctx, client.Event{Subject: "email.send", ID: fmt.Sprintf("bench-%d", n),
			Data: []byte(`{"to":"bob@example.com","template":"welcome"}`)}, nil)
		if err != nil || len(sts) != 1 {
			b.Fatalf("event %d: %v %+v", n, err, sts)
		}
		return string(sts[0].Result)
	}
	if got := result(); got != "sent to bob@example.com" {
		b.Fatalf("first result %q", got)
	}
	// edit saves version v and returns how long until an event returned
	// it, and until the new version was live.
	edit := func(v int) (newResult, isLive time.Duration) {
		want := fmt.Sprintf("sent (v%d) to bob@example.com", v)
		edited := strings.Replace(string(orig), "sent to ", fmt.Sprintf("sent (v%d) to ", v), 1)
		start := time.Now()
		if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
			b.Fatal(err)
		}
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for got := result(); got != want; got = result() {
			if time.Since(start) > time.Minute {
				b.Fatalf("a minute after the edit the result is %q, want %q", got, want)
			}
			<-tick.C
		}
		newResult = time.Since(start)
		select {
		case r := <-live:
			if r.err != nil {
				b.Fatalf("rebuild: %v", r.err)
			}
			isLive = r.at.Sub(start)
		case <-time.After(time.Minute):
			b.Fatal("the new version ran, but no rebuild was reported")
		}
		return newResult, isLive
	}
	// One edit untimed: WatchSources loads the slow compilers when it
	// starts, which has long happened when a developer first saves.
	edit(0)

	var total, liveTotal time.Duration
	b.ResetTimer()
	for i := range b.N {
		d, l := edit(i + 1)
		total += d
		liveTotal += l
	}
	b.StopTimer()
	b.ReportMetric(total.Seconds()/float64(b.N), "s/op")
	b.ReportMetric(liveTotal.Seconds()/float64(b.N), "live-s/op")
}

// copyEmailsSource copies lang's emails example to a new directory: for Go
// one inside this module (under .sluice, ignored by git), where the
// example's import of the SDK resolves to this checkout.
func copyEmailsSource(b *testing.B, lang guestbuild.Language) string {
	from := filepath.Join(testenv.RepoRoot(), emailsSource[lang].dir)
	parent := ""
	if lang == guestbuild.Go {
		parent = filepath.Join(testenv.RepoRoot(), ".sluice")
		if err := os.MkdirAll(parent, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	to, err := os.MkdirTemp(parent, "watch-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(to) })
	err = filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "node_modules" || d.Name() == "target" {
				return fs.SkipDir
			}
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		if strings.HasSuffix(path, ".wasm") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, 0o644)
	})
	if err != nil {
		b.Fatal(err)
	}
	return to
}
