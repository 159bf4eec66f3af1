// Package scale holds the end-to-end tests of flow control and scale-out:
// real sluice processes, real JetStream, real wasm guests.
package scale
