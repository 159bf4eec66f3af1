// Package sluice is the Go SDK for sluice functions: WebAssembly modules that
// the sluice runtime invokes once per event, speaking Guest ABI v1 (host
// module "sluice"). The ABI itself is specified in docs/ABI.md at the root of
// the sluice repository; this package is a thin, allocation-light wrapper
// around it, and everything it does can be done from any language by
// following that file.
//
// # Writing a function
//
// A function is a main package that registers its handler from init (in the
// reactor build mode used for functions, main.main is never run):
//
//	//go:build wasip1
//
//	package main
//
//	import "github.com/sluice-run/sluice/sdk"
//
//	func init() {
//		sluice.Handle(func(e sluice.Event) ([]byte, error) {
//			return []byte("hello " + string(e.Data)), nil
//		})
//	}
//
//	func main() {}
//
// Build it as a WASI reactor module:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o fn.wasm ./fn
//
// The module exports memory, _initialize and handle (the latter from this
// package, via //go:wasmexport) and imports only sluice.* and
// wasi_snapshot_preview1.* functions.
//
// # Outcomes
//
// The handler's return values become the ABI's return code of handle:
//
//   - (result, nil): success (0); result, when not empty, is set with
//     result_set and shown by "sluice status" and "sluice publish --wait".
//     A result over the host's limit (64 KiB) is truncated to the limit and
//     a warning is logged.
//   - (_, err): failure (1); err.Error() becomes the reason (reason_set; the
//     host keeps 1 KiB of it) and the event is retried on the binding's
//     schedule, then dead-lettered when attempts run out.
//   - (_, RetryAfter(d, err)): failure (1) whose next attempt comes no sooner
//     than d (retry_after), still capped by the retry policy's max.
//   - (_, Permanent(err)): permanent failure (2): dead-lettered at once.
//
// Permanent and RetryAfter are found anywhere in err's chain (errors.As), so
// they can be wrapped with fmt.Errorf("...: %w", err); the error types
// *PermanentError and *RetryAfterError are exported for errors.As too.
//
// A panic in the handler is recovered and reported as an ordinary failure
// (1) with the reason "panic: <value>", so it is retried like any other
// failure and the warm instance is kept. (A trap raised by the runtime
// itself, such as running out of memory, still ends the invocation as a
// trap.) If no handler was registered, handle fails (1) with a reason that
// says so.
//
// # The event
//
// Event carries the payload, subject, event id, headers, binding and
// function names and the attempt number (1 for the first delivery). Its
// fields are fresh copies for every invocation and may be kept after the
// handler returns. The event id is stable across retries: use it to make
// effects idempotent, since publishes happen at once and a retried
// invocation publishes again.
//
// # Effects and logs
//
// Publish sends a message to a subject allowed by the function's "publish"
// list in runtime.hcl; it returns ErrDenied, ErrInvalid, ErrTooLarge or
// ErrFailed (compare with errors.Is; the error's text names the call, as in
// `publish "greet.audit": denied`). Log and Logf write log lines tagged by
// the host with the function, binding, event id and attempt; anything
// written to stdout or stderr is logged too. The environment (os.Getenv)
// holds exactly the function's env from runtime.hcl.
//
// # Outbound HTTP
//
// HTTP (and its shorthand Fetch) makes a request through the host, which
// sends it only to a URL under one of the function's allowed_hosts in
// runtime.hcl (compared as parsed URLs: scheme, host, port and path
// prefix) and follows redirects only within them:
//
//	status, body, err := sluice.Fetch("GET", "https://api.example.com/v1/users/42", nil, nil)
//
// Any status is returned as is; err is ErrDenied outside allowed_hosts,
// ErrTooLarge for a body over 1 MiB either way, ErrInvalid for a malformed
// URL, method or header, and ErrFailed when the server did not answer
// within the invocation's remaining time (at most 10s).
//
// # Key-value store
//
// KVGet, KVPut and KVDelete use a key-value store of the function's own (a
// JetStream KV bucket, sluice_fn_<function>, that no other function can
// read), durable and shared by every instance and node. Keys are 1 to 1024
// bytes of letters, digits and "-/_=." (not starting or ending with ".");
// values are up to 1 MiB. KVGet returns ErrNotFound for an absent key.
//
// # Idempotent effects
//
// Seen(key, ttl) atomically records key for ttl and reports whether it had
// been recorded before: false exactly once, across every instance and node.
// With the event id in the key it makes an effect happen at most once per
// event even when the event is retried or delivered twice:
//
//	if dup, err := sluice.Seen("email/"+e.ID, 24*time.Hour); err != nil {
//		return nil, err
//	} else if !dup {
//		sendEmail()
//	}
//
// docs/ABI.md specifies each call's limits and error codes.
//
// An instance is reused between events, so package-level state persists
// between invocations, but it can also be discarded at any time and several
// instances of a function run at once: do not rely on it either way.
//
// Only the files carrying the wasip1 build constraint implement the API;
// on other platforms the package is empty.
package sluice
