// Package bench holds sluice's end-to-end benchmark report (issue 3): raw
// JetStream against sluice with a no-op wasm guest, warm invocation through
// a worker against a raw pipe round trip, and cold starts. It has no code
// of its own outside its tests; run it with
//
//	go test ./bench -run TestReport -v -timeout 20m -report
//
// A plain `go test ./...` skips it.
package bench
