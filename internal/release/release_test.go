package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-run/sluice/internal/testenv"
)

// TestReleaseArchiveRunsWithoutGo builds the release archive, extracts it
// into an empty directory and runs it with an environment that has no Go
// toolchain, module cache or build cache: `sluice version` prints the git
// version, and `sluice run` runs the examples.
func TestReleaseArchiveRunsWithoutGo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release (a minute or more): not in -short")
	}
	for _, tool := range []string{"git", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the release build needs %s on PATH: %v", tool, err)
		}
	}
	root := testenv.RepoRoot()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	archive, err := build(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	version, err := gitVersion(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := "sluice-" + version + "-linux-amd64.tar.gz"; filepath.Base(archive) != want {
		t.Errorf("archive %s, want %s", filepath.Base(archive), want)
	}
	dir := filepath.Join(extract(t, archive), "sluice-"+version+"-linux-amd64")
	bin := filepath.Join(dir, "sluice")

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	runpath, _ := f.DynString(elf.DT_RUNPATH)
	rpath, _ := f.DynString(elf.DT_RPATH)
	needed, _ := f.ImportedLibraries()
	f.Close()
	if !slices.Equal(runpath, []string{"$ORIGIN/lib"}) || len(rpath) != 0 {
		t.Errorf("RUNPATH %q, RPATH %q: want RUNPATH $ORIGIN/lib only", runpath, rpath)
	}
	if !slices.Contains(needed, "libwasmer.so") {
		t.Errorf("NEEDED %q: no libwasmer.so", needed)
	}

	// Nothing of the build machine: no Go on PATH, no Go caches, a fresh
	// HOME, and the archive's directory moved away from where it was
	// built (it was extracted into a new temporary directory).
	home := t.TempDir()
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + home}
	sluice := func(args ...string) (int, string, string) {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir, cmd.Env = dir, env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run sluice %v: %v", args, err)
		}
		return code, stdout.String(), stderr.String()
	}

	code, out, errOut := sluice("version")
	if code != 0 || !strings.HasPrefix(out, "sluice "+version+" ") {
		t.Fatalf("sluice version: exit %d, %q %q; want the git version %s", code, out, errOut, version)
	}
	if _, out, _ := sluice("--version"); !strings.HasPrefix(out, "sluice "+version+" ") {
		t.Errorf("sluice --version: %q", out)
	}

	url := startRelease(ctx, t, bin, dir, env)
	type outcome struct {
		Binding, State string
		Attempts       int
	}
	publish := func(subject, payload string, wantCode int) []outcome {
		t.Helper()
		code, out, errOut := sluice("--server", url, "publish", subject, payload, "--wait", "--json")
		if code != wantCode {
			t.Fatalf("publish %s: exit %d, want %d; stderr %s", subject, code, wantCode, errOut)
		}
		var p struct{ Outcomes []outcome }
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("publish %s: %v\n%s", subject, err, out)
		}
		return p.Outcomes
	}
	if got := publish("user.registered", `{"email":"a@example.com"}`, 0); len(got) != 3 {
		t.Errorf("signup: outcomes %+v, want one per subscriber", got)
	}
	if got := publish("email.send", `{"to":"b@example.com"}`, 0); len(got) != 1 || got[0].State != "succeeded" {
		t.Errorf("emails: outcomes %+v", got)
	}
	if got := publish("jobs.flaky", `{}`, 0); len(got) != 1 || got[0].Attempts != 3 {
		t.Errorf("flaky: outcomes %+v, want succeeded on attempt 3", got)
	}
	if got := publish("payments.charge", `{"permanent":true}`, 1); len(got) != 1 || got[0].State != "dead_lettered" {
		t.Errorf("payments: outcomes %+v, want dead_lettered", got)
	}
}

// startRelease starts `sluice run` of the extracted release and returns
// the NATS URL its banner announces; the test's cleanup stops it with
// SIGTERM and checks that it exits 0.
func startRelease(ctx context.Context, t *testing.T, bin, dir string, env []string) string {
	t.Helper()
	cmd := exec.Command(bin, "run", "--listen", "127.0.0.1:-1", "--metrics-listen", "127.0.0.1:0", "--data", t.TempDir(), "--no-watch")
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "sluice listening on "); ok {
				url, _, _ := strings.Cut(rest, " ")
				urls <- url
			}
		}
	}()
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("sluice run: %v after SIGTERM; stderr:\n%s", err, stderr.String())
			}
		case <-time.After(time.Minute):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Errorf("sluice run did not stop within a minute of SIGTERM")
			<-exited
		}
		if strings.Contains(stderr.String(), "not building") {
			t.Errorf("the release's runtime.hcl names guest sources:\n%s", stderr.String())
		}
	})
	go func() {
		<-scanned
		exited <- cmd.Wait()
	}()
	select {
	case url := <-urls:
		return url
	case <-scanned:
		t.Fatalf("sluice run ended before it listened; stderr:\n%s", stderr.String())
	case <-ctx.Done():
		t.Fatalf("sluice run did not announce its address; stderr:\n%s", stderr.String())
	}
	return ""
}

// extract unpacks a gzipped tar into a new empty directory, which it
// returns.
func extract(t *testing.T, archive string) string {
	t.Helper()
	dst := t.TempDir()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return dst
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dst, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(path, dst+string(filepath.Separator)) {
			t.Fatalf("archive entry %q leaves the directory", hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			w, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, os.FileMode(hdr.Mode).Perm())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(w, tr); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("archive entry %q of type %c", hdr.Name, hdr.Typeflag)
		}
	}
}
