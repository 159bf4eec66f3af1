// Package chaos holds the crash tests of sluice: real `sluice run`
// processes killed with SIGKILL again and again while an external
// publisher sends events and an effect counter outside the runtime records
// what the functions did. It checks that no acknowledged event is lost and
// that every status settles, and reports re-runs and restart times.
//
// A short run is part of `go test ./...`; the long run is
//
//	go test ./chaos -run TestChaos -v -timeout 60m -chaos.long
//
// (or SLUICE_CHAOS_LONG=1), and -chaos.markdown prints its numbers as the
// table the README quotes.
package chaos
