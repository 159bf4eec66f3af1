// Package chaos holds the crash tests of sluice: real `sluice run`
// processes killed with SIGKILL again and again while a publisher outside
// the runtime sends events and the functions record their effects in a
// stream of their own. It checks that no acknowledged event is lost, that
// every dead-lettered status has its dead letter and that every status
// settles, and reports re-runs per kill and restart times.
//
// A short run is part of `go test ./...`; the long run (20 kills of a
// durable node, 10 of a fast one, 6 of cluster leaders) is
//
//	go test ./chaos -run TestChaos -v -timeout 60m -chaos.long -chaos.markdown
//
// (or SLUICE_CHAOS_LONG=1), where -chaos.markdown prints the table the
// README quotes and -chaos.rate sets the events published per second.
// TestUpstreamResumeWakesNoWaitingPull, run with -chaos.upstream,
// reproduces a nats-server behaviour sluice works around.
package chaos
