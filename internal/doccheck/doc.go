// Package doccheck holds tests that keep the repository's documents honest:
// every claim that names a test names one that exists.
package doccheck
