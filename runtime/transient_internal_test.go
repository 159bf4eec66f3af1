package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"

	"github.com/sluice-run/sluice/config"
)

// TestTransientStartErrors: a start step is tried again when JetStream or
// the object store did not answer within the try, including a module read
// that ends on the pipe's deadline ("read pipe: i/o timeout", seen when a
// cluster node fetched its module during an election); other errors end
// the start.
func TestTransientStartErrors(t *testing.T) {
	r := &Runtime{cfg: &config.Config{}}
	pipeTimeout := &fs.PathError{Op: "read", Path: "pipe", Err: os.ErrDeadlineExceeded}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("function a: module 83c4: %w", pipeTimeout), true},
		{fmt.Errorf("step: %w", context.DeadlineExceeded), true},
		{errors.New("module is not valid wasm"), false},
		{fmt.Errorf("read: %w", fs.ErrNotExist), false},
	} {
		if got := r.transient(c.err); got != c.want {
			t.Errorf("transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
