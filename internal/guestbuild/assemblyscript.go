package guestbuild

import (
	"context"
	"fmt"
	"os/exec"
)

func ascTool(dir string) (string, error) {
	return "", fmt.Errorf("%w: AssemblyScript needs asc (npm install assemblyscript)", ErrNoToolchain)
}

func assemblyScriptCommands(ctx context.Context, dir, out, work string) ([]*exec.Cmd, error) {
	_, err := ascTool(dir)
	return nil, err
}
