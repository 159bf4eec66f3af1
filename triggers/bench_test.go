package triggers_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/triggers"
)

// The end-to-end benchmarks publish b.N events and wait until every binding
// settled them all, once with a native no-op Go handler (the baseline: the
// same streams, consumers, status writes and acks) and once with wasm.
//
//	go test ./triggers -run '^$' -bench . -benchtime 5000x

func BenchmarkQueue(b *testing.B) {
	const hcl = `
function "noop" { module = "internal/testguests/noop/noop.wasm" }
queue "q" {
  subject     = "bench.q"
  function    = "noop"
  concurrency = 4
}`
	for _, sync := range []bool{true, false} {
		for _, handler := range []string{"native", "wasm"} {
			b.Run(fmt.Sprintf("sync=%s/%s", syncName(sync), handler), func(b *testing.B) {
				runBench(b, hcl, sync, handler, "bench.q", 1)
			})
		}
	}
}

func BenchmarkTopicThreeSubscribers(b *testing.B) {
	const hcl = `
function "noop" { module = "internal/testguests/noop/noop.wasm" }
topic "t" {
  subject = "bench.t"
  subscriber "a" { function = "noop" }
  subscriber "b" { function = "noop" }
  subscriber "c" { function = "noop" }
}`
	for _, sync := range []bool{true, false} {
		for _, handler := range []string{"native", "wasm"} {
			b.Run(fmt.Sprintf("sync=%s/%s", syncName(sync), handler), func(b *testing.B) {
				runBench(b, hcl, sync, handler, "bench.t", 3)
			})
		}
	}
}

// BenchmarkPublish is the latency of one synchronous publish (what a
// producer waits for) into a queue stream.
func BenchmarkPublish(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run("sync="+syncName(sync), func(b *testing.B) {
			srv := testenv.ServerWithSync(b, sync)
			cfg := testenv.Config(b, `
function "noop" { module = "x.wasm" }
queue "q" {
  subject  = "bench.p"
  function = "noop"
}`)
			_, js := testenv.Connect(b, srv.ClientURL())
			ctx := context.Background()
			if err := triggers.Ensure(ctx, js, cfg); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := js.Publish(ctx, "bench.p", make([]byte, 128), jetstream.WithMsgID(strconv.Itoa(i))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func syncName(always bool) string {
	if always {
		return "always"
	}
	return "default"
}

func runBench(b *testing.B, hcl string, syncAlways bool, handler, subject string, bindings int) {
	testenv.Guest(b, "internal/testguests/noop")
	srv := testenv.ServerWithSync(b, syncAlways)
	cfg := testenv.Config(b, hcl)
	_, js := testenv.Connect(b, srv.ClientURL())
	ctx := context.Background()
	if err := triggers.Ensure(ctx, js, cfg); err != nil {
		b.Fatal(err)
	}
	var inv triggers.Invoker = invokerFunc(func(functions.Event) (functions.Result, error) { return functions.Result{}, nil })
	if handler == "wasm" {
		set, err := functions.Load(cfg.Functions, functions.Options{CacheDir: testenv.CacheDir(b)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(set.Close)
		inv = set
	}
	// The runtime's own connection, apart from the producer's.
	rnc, rjs := testenv.Connect(b, srv.ClientURL())
	// Confirmed acks with durable storage, as sluice run does.
	runner, err := triggers.NewRunner(ctx, cfg, triggers.Options{JS: rjs, Publisher: triggers.NewPublisher(rnc, rjs), Invoker: inv, SyncAcks: syncAlways})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	defer func() { cancel(); <-done }()

	payload := make([]byte, 128)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if i%1000 == 999 {
			// Stay under the client's limit of outstanding async publishes.
			<-js.PublishAsyncComplete()
		}
		if _, err := js.PublishAsync(subject, payload); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	published := time.Since(start)
	var consumers []jetstream.Consumer
	for _, bc := range cfg.Bindings() {
		c, err := js.Consumer(ctx, triggers.StreamName(bc), triggers.ConsumerName(bc))
		if err != nil {
			b.Fatal(err)
		}
		consumers = append(consumers, c)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for _, c := range consumers {
		for {
			info, err := c.Info(ctx)
			if err == nil && info.AckFloor.Stream >= uint64(b.N) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("events not settled")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*bindings)/elapsed.Seconds(), "invocations/s")
	b.ReportMetric(float64(b.N)/published.Seconds(), "published/s")
}
