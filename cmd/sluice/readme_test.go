package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/testenv"
)

// TestExampleREADMECommands runs every `go run ./cmd/sluice …` command of
// the examples' READMEs (but `run`, which is the runtime this test
// starts from the repository's runtime.hcl) in the order written, and
// checks its exit status: 1 where the README says "exit 1" or "exit
// status 1" on the command's line or the comment above it, else 0. A
// publish must reach a bound subject.
func TestExampleREADMECommands(t *testing.T) {
	root := testenv.RepoRoot()
	cfg, err := config.Load(filepath.Join(root, "runtime.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	rt := testenv.Start(t, cfg, "")
	server := "--server=" + rt.ClientURL()
	readmes, err := filepath.Glob(filepath.Join(root, "examples", "*", "README.md"))
	if err != nil || len(readmes) == 0 {
		t.Fatalf("no example READMEs: %v", err)
	}
	ran := 0
	for _, readme := range readmes {
		for _, c := range readmeCommands(t, readme) {
			ran++
			code, out, errOut := cli(t, append([]string{server}, c.args...)...)
			if code != c.exit || strings.Contains(errOut, "no queue or topic is bound") {
				t.Errorf("%s: sluice %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", c.where, strings.Join(c.args, " "), code, c.exit, out, errOut)
			}
		}
	}
	if ran == 0 {
		t.Fatal("no command found in the example READMEs")
	}
}

type readmeCommand struct {
	where string
	args  []string
	exit  int
}

// readmeCommands extracts the sluice commands of the sh blocks of a README.
func readmeCommands(t *testing.T, path string) []readmeCommand {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeCommand
	inSh, comment := false, ""
	for i, line := range strings.Split(string(src), "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			inSh, comment = true, ""
			continue
		case strings.HasPrefix(line, "```"):
			inSh = false
			continue
		case !inSh:
			continue
		}
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			comment = trimmed
			continue
		}
		rest, ok := strings.CutPrefix(trimmed, "go run ./cmd/sluice ")
		if !ok {
			comment = ""
			continue
		}
		args, trailing := shellWords(t, rest)
		if len(args) > 0 && args[0] != "run" {
			exit := 0
			for _, c := range []string{comment, trailing} {
				if strings.Contains(c, "exit 1") || strings.Contains(c, "exit status 1") {
					exit = 1
				}
			}
			rel, _ := filepath.Rel(testenv.RepoRoot(), path)
			out = append(out, readmeCommand{where: rel + ":" + strconv.Itoa(i+1), args: args, exit: exit})
		}
		comment = ""
	}
	return out
}

// shellWords splits a command line as sh would for the simple commands of
// a README (words, '…' and "…" quoting), and returns the comment after it.
func shellWords(t *testing.T, s string) (words []string, comment string) {
	t.Helper()
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' || c == '"':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				t.Fatalf("unterminated quote in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words, inWord = append(words, cur.String()), false
				cur.Reset()
			}
		case c == '#' && !inWord:
			return words, s[i:]
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, ""
}
