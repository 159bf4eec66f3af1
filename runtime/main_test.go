package runtime_test

import (
	"os"
	"testing"

	"github.com/sluice-run/sluice/functions/worker"
)

// TestMain lets this test binary serve as the sluice worker processes that
// the functions under test start.
func TestMain(m *testing.M) {
	worker.RunIfWorker()
	os.Exit(m.Run())
}
