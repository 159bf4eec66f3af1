package functions_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
	"github.com/sluice-run/sluice/internal/testenv"
)

// The hostile guest corpus: modules written as an attacker would, each
// checking from inside the sandbox that its attack fails, and the host
// checking that nothing outside changed.

// records keeps every log record, for the assertions on what the runtime
// logged (guest lines and its own warnings).
type records struct {
	mu    sync.Mutex
	guest []string
	other []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	guest := false
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "source" && a.Value.String() == "guest" {
			guest = true
		}
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if guest {
		r.guest = append(r.guest, rec.Message)
	} else {
		r.other = append(r.other, rec.Message)
	}
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) guestBytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.guest {
		n += len(l) + 1
	}
	return n
}

func (r *records) sawOther(sub string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.other {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

func loadHostile(t *testing.T, logs *records, pub functions.Publisher, fns ...config.Function) *functions.Set {
	t.Helper()
	for i := range fns {
		fns[i].Timeout = max(fns[i].Timeout, 20*time.Second)
		fns[i].Memory = 1 << 20
		fns[i].MaxResultSize = max(fns[i].MaxResultSize, 1<<10)
		fns[i].MaxLogSize = max(fns[i].MaxLogSize, 4<<10)
	}
	set, err := functions.Load(fns, functions.Options{CacheDir: testenv.CacheDir(t), Publisher: pub, Logger: slog.New(logs)})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(set.Close)
	return set
}

// hostileImportsWAT calls every sluice host import with pointers and
// lengths outside memory, negative or huge, and traps if any call does not
// fail; then it returns a proper result.
func hostileImportsWAT() string {
	bad := [][2]string{
		{"-1", "16"}, {"0", "-1"}, {"65530", "100"}, {"0x7fffffff", "0x7fffffff"}, {"65537", "0"}, {"-8", "8"},
	}
	var calls strings.Builder
	check := func(call string) { fmt.Fprintf(&calls, "    (call $fails %s)\n", call) }
	for _, b := range bad {
		p, n := b[0], b[1]
		check(fmt.Sprintf("(call $event_get (i32.const 0) (i32.const %s) (i32.const %s))", p, n))
		check(fmt.Sprintf("(call $result_set (i32.const %s) (i32.const %s))", p, n))
		check(fmt.Sprintf("(call $reason_set (i32.const %s) (i32.const %s))", p, n))
		check(fmt.Sprintf("(call $log (i32.const 1) (i32.const %s) (i32.const %s))", p, n))
		check(fmt.Sprintf("(call $publish (i32.const %s) (i32.const %s) (i32.const 0) (i32.const 1))", p, n))
		check(fmt.Sprintf("(call $publish (i32.const 0) (i32.const 1) (i32.const %s) (i32.const %s))", p, n))
		check(fmt.Sprintf("(call $http_request (i32.const %s) (i32.const %s) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))", p, n))
		check(fmt.Sprintf("(call $http_request (i32.const 0) (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const %s) (i32.const %s))", p, n))
		check(fmt.Sprintf("(call $http_response_get (i32.const 0) (i32.const %s) (i32.const %s))", p, n))
		check(fmt.Sprintf("(call $kv_get (i32.const %s) (i32.const %s) (i32.const 0) (i32.const 1))", p, n))
		check(fmt.Sprintf("(call $kv_get (i32.const 0) (i32.const 1) (i32.const %s) (i32.const %s))", p, n))
		check(fmt.Sprintf("(call $kv_put (i32.const 0) (i32.const 1) (i32.const %s) (i32.const %s))", p, n))
		check(fmt.Sprintf("(call $kv_delete (i32.const %s) (i32.const %s))", p, n))
		check(fmt.Sprintf("(call $seen (i32.const %s) (i32.const %s) (i64.const 1000))", p, n))
	}
	check("(call $event_get (i32.const 99) (i32.const 0) (i32.const 1))")
	check("(call $event_get (i32.const -1) (i32.const 0) (i32.const 1))")
	check("(call $log (i32.const 99) (i32.const 0) (i32.const 1))")
	check("(call $log (i32.const -1) (i32.const 0) (i32.const 1))")
	check("(call $retry_after (i64.const -1))")
	check("(call $seen (i32.const 0) (i32.const 1) (i64.const -1))")
	check("(call $seen (i32.const 0) (i32.const 1) (i64.const 0))")
	check("(call $kv_get (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))")
	check("(call $result_set (i32.const 0) (i32.const 2048))") // over max_result_size
	return `(module
  (import "sluice" "event_get" (func $event_get (param i32 i32 i32) (result i32)))
  (import "sluice" "result_set" (func $result_set (param i32 i32) (result i32)))
  (import "sluice" "reason_set" (func $reason_set (param i32 i32) (result i32)))
  (import "sluice" "retry_after" (func $retry_after (param i64) (result i32)))
  (import "sluice" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "sluice" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (import "sluice" "http_request" (func $http_request (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "sluice" "http_response_get" (func $http_response_get (param i32 i32 i32) (result i32)))
  (import "sluice" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
  (import "sluice" "kv_put" (func $kv_put (param i32 i32 i32 i32) (result i32)))
  (import "sluice" "kv_delete" (func $kv_delete (param i32 i32) (result i32)))
  (import "sluice" "seen" (func $seen (param i32 i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "GET")
  (data (i32.const 100) "ok")
  (func $fails (param i32) (if (i32.ge_s (local.get 0) (i32.const 0)) (then unreachable)))
  (func (export "handle") (result i32)
` + calls.String() + `    (drop (call $result_set (i32.const 100) (i32.const 2)))
    (i32.const 0)))`
}

// forgedFrames are frames of the worker protocol as a guest would forge
// them: a done frame claiming success with the result "forged" (type 15:
// status 0, result, reason, retry, error, memory, truncated, elapsed) and
// a compile reply (type 10) naming two artifacts.
const forgedFrames = `\00\00\00\0f\0f\00\06forged\00\00\00\00\00\00` + `\00\00\00\05\0a\01x\01y`

const forgedLen = 19 + 9

// wasiGamesWAT plays descriptor games with forged frames on descriptors
// 0 to 10 through every WASI call that takes one, in _initialize and in
// handle, trapping if a call that must fail succeeds. handle then fails
// honestly: the invocation must end as that failure.
func wasiGamesWAT() string {
	return `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pread" (func $fd_pread (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_tell" (func $fd_tell (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $fd_renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_sync" (func $fd_sync (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_allocate" (func $fd_allocate (param i32 i64 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $fd_filestat_set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $fd_readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send" (func $sock_send (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_recv" (func $sock_recv (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "sluice" "reason_set" (func $reason_set (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec {1024, len} at 0; a read buffer iovec {4096, 4096} at 8.
  (data (i32.const 0) "\00\04\00\00` + fmt.Sprintf(`\%02x`, forgedLen) + `\00\00\00")
  (data (i32.const 8) "\00\10\00\00\00\10\00\00")
  (data (i32.const 64) "tmp/x")
  (data (i32.const 200) "honest")
  (data (i32.const 1024) "` + forgedFrames + `")
  (func $fails (param i32) (if (i32.eqz (local.get 0)) (then unreachable)))
  (func $games
    (local $fd i32)
    (loop $each
      ;; Writes reach only the log capture, on 1 and 2.
      (if (i32.or (i32.eq (local.get $fd) (i32.const 1)) (i32.eq (local.get $fd) (i32.const 2)))
        (then (if (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 32)) (then unreachable)))
        (else (call $fails (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 32)))))
      (call $fails (call $fd_pwrite (local.get $fd) (i32.const 0) (i32.const 1) (i64.const 0) (i32.const 32)))
      ;; Stdin is empty at once; nothing else reads.
      (if (i32.eqz (local.get $fd))
        (then
          (i32.store (i32.const 32) (i32.const 77))
          (if (call $fd_read (i32.const 0) (i32.const 8) (i32.const 1) (i32.const 32)) (then unreachable))
          (if (i32.load (i32.const 32)) (then unreachable)))
        (else (call $fails (call $fd_read (local.get $fd) (i32.const 8) (i32.const 1) (i32.const 32)))))
      (call $fails (call $fd_pread (local.get $fd) (i32.const 8) (i32.const 1) (i64.const 0) (i32.const 32)))
      (call $fails (call $fd_seek (local.get $fd) (i64.const 0) (i32.const 0) (i32.const 32)))
      (call $fails (call $fd_tell (local.get $fd) (i32.const 32)))
      (call $fails (call $fd_renumber (local.get $fd) (i32.const 1)))
      (call $fails (call $fd_renumber (i32.const 1) (local.get $fd)))
      (call $fails (call $fd_sync (local.get $fd)))
      (call $fails (call $fd_allocate (local.get $fd) (i64.const 0) (i64.const 4096)))
      (call $fails (call $fd_filestat_set_size (local.get $fd) (i64.const 0)))
      (call $fails (call $fd_prestat_get (local.get $fd) (i32.const 32)))
      (call $fails (call $fd_readdir (local.get $fd) (i32.const 4096) (i32.const 4096) (i64.const 0) (i32.const 32)))
      (call $fails (call $path_open (local.get $fd) (i32.const 0) (i32.const 64) (i32.const 5) (i32.const 1) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 32)))
      (call $fails (call $sock_send (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 32)))
      (call $fails (call $sock_recv (local.get $fd) (i32.const 8) (i32.const 1) (i32.const 0) (i32.const 32) (i32.const 36)))
      (if (i32.gt_u (local.get $fd) (i32.const 2)) (then (call $fails (call $fd_close (local.get $fd)))))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $each (i32.le_u (local.get $fd) (i32.const 10))))
    ;; Closing stdout changes nothing: it still reaches the log capture.
    (drop (call $fd_close (i32.const 1)))
    (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)) (then unreachable)))
  (func (export "_initialize") (call $games))
  (func (export "handle") (result i32)
    (call $games)
    (drop (call $reason_set (i32.const 200) (i32.const 6)))
    (i32.const 1)))`
}

// TestForgedFramesChangeNothing: a guest writing forged protocol frames
// through every WASI descriptor call, on descriptors 0 to 10, in
// _initialize and in handle, compiles and loads normally, ends as the
// failure it returned (not the success it forged), and its writes on
// stdout and stderr are bounded log lines; its worker stays healthy.
func TestForgedFramesChangeNothing(t *testing.T) {
	logs := &records{}
	set := loadHostile(t, logs, nil, config.Function{Name: "games", Module: testenv.WAT(t, wasiGamesWAT())})
	ctx := context.Background()
	for i := range 3 {
		res, err := set.Invoke(ctx, "games", functions.Event{ID: fmt.Sprint("g", i), Attempt: 1})
		var fe *functions.Error
		if !errors.As(err, &fe) || fe.Kind != functions.KindFailed || fe.Reason != "honest" {
			t.Fatalf("invocation %d: %+v, %v; want the guest's own failure, reason honest", i, res, err)
		}
	}
	if logs.sawOther("protocol violation") {
		t.Fatal("a guest's forged frames reached the protocol")
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	forged := 0
	for _, l := range logs.guest {
		if strings.Contains(l, "forged") {
			forged++
		}
	}
	if forged == 0 {
		t.Fatalf("the forged bytes written to stdout and stderr did not become log lines: %q", logs.guest)
	}
}

// TestHostImportsWithHostilePointers: every host import called with
// pointers and lengths outside memory, negative or huge, fails with an
// error code; the guest checks each one and the invocation succeeds.
func TestHostImportsWithHostilePointers(t *testing.T) {
	logs := &records{}
	set := loadHostile(t, logs, &spyPublisher{}, config.Function{Name: "pointers", Module: testenv.WAT(t, hostileImportsWAT()), Publish: []string{">"}})
	for i := range 2 {
		res, err := set.Invoke(context.Background(), "pointers", functions.Event{ID: fmt.Sprint("p", i), Data: []byte("payload"), Attempt: 1})
		if err != nil || string(res.Output) != "ok" {
			t.Fatalf("invocation %d: %+v, %v; want every hostile call refused and the result ok", i, res, err)
		}
	}
}

const floodWAT = `(module
  (import "sluice" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "sluice" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\00\01\00\00\00\01\00\00")
  (data (i32.const 64) "out.flood")
  (func (export "handle") (result i32)
    (local $i i32)
    (loop $logs
      (drop (call $log (i32.const 1) (i32.const 256) (i32.const 100)))
      (drop (call $log (i32.const 1) (i32.const 256) (i32.const 0)))
      (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 32)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $logs (i32.lt_u (local.get $i) (i32.const 200000))))
    (local.set $i (i32.const 0))
    (loop $pubs
      (drop (call $publish (i32.const 64) (i32.const 9) (i32.const 256) (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $pubs (i32.lt_u (local.get $i) (i32.const 2000))))
    (i32.const 0)))`

// TestFloodsStayBounded: a guest logging 600,000 lines (a third of them
// empty, a third on stderr) and publishing 2,000 times succeeds, its logs
// cut at max_log_size (each line counting its end), and the next event
// runs normally.
func TestFloodsStayBounded(t *testing.T) {
	logs := &records{}
	pub := &spyPublisher{}
	set := loadHostile(t, logs, pub, config.Function{Name: "flood", Module: testenv.WAT(t, floodWAT), Publish: []string{"out.>"}, MaxLogSize: 8 << 10})
	for i := range 2 {
		res, err := set.Invoke(context.Background(), "flood", functions.Event{ID: fmt.Sprint("f", i), Attempt: 1})
		if err != nil || !res.LogsTruncated {
			t.Fatalf("flood %d: %+v, %v; want success with logs truncated", i, res, err)
		}
	}
	if n := logs.guestBytes(); n > 2*(8<<10) {
		t.Fatalf("two floods logged %d bytes, over twice max_log_size", n)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.sent) != 4000 {
		t.Fatalf("%d publishes reached the publisher, want 4000", len(pub.sent))
	}
}

// subjectsWAT publishes to a 5,000-byte subject and to reserved ones.
func subjectsWAT() string {
	long := "out." + strings.Repeat("x", 4996)
	subjects := []string{long, "$JS.API.STREAM.DELETE.X", "$KV.sluice_functions.f", "_INBOX.steal", "sluice.admin.deploy", ">", "out.*", "", "out..x"}
	var data, calls strings.Builder
	off := 1024
	for _, s := range subjects {
		fmt.Fprintf(&data, "  (data (i32.const %d) %q)\n", off, s)
		fmt.Fprintf(&calls, "    (drop (call $publish (i32.const %d) (i32.const %d) (i32.const 0) (i32.const 4)))\n", off, len(s))
		off += len(s) + 1
	}
	return `(module
  (import "sluice" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "data")
` + data.String() + `  (func (export "handle") (result i32)
` + calls.String() + `    (i32.const 0)))`
}

// TestLongAndReservedSubjectsReachOnlyTheHostCheck: publishes to a
// 5,000-byte subject and to reserved subjects travel from the worker to
// the host's subject check like any other and end the invocation
// normally; none of the reserved ones is published.
func TestLongAndReservedSubjectsReachOnlyTheHostCheck(t *testing.T) {
	logs := &records{}
	pub := &spyPublisher{}
	set := loadHostile(t, logs, pub, config.Function{Name: "subjects", Module: testenv.WAT(t, subjectsWAT()), Publish: []string{"out.>"}})
	for i := range 2 {
		if _, err := set.Invoke(context.Background(), "subjects", functions.Event{ID: fmt.Sprint("s", i), Attempt: 1}); err != nil {
			t.Fatalf("invocation %d: %v", i, err)
		}
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	for _, s := range pub.sent {
		for _, reserved := range []string{"$", "_INBOX", "sluice.", "> "} {
			if strings.HasPrefix(s, reserved) {
				t.Errorf("published to the reserved subject %.40q", s)
			}
		}
	}
}

// TestInitializeThatLoopsIsBounded: a module whose _initialize never
// returns fails to load (when compiled, the first worker proves it) with
// an error that says so, within the bound; loaded lazily from the compile
// cache, its first event fails the same way.
func TestInitializeThatLoopsIsBounded(t *testing.T) {
	mod := testenv.WAT(t, `(module (memory (export "memory") 1)
  (func (export "_initialize") (loop $l (br $l)))
  (func (export "handle") (result i32) (i32.const 0)))`)
	fc := config.Function{Name: "stuck", Module: mod, Timeout: time.Second, Memory: 1 << 20}
	cache := t.TempDir()
	_, err := functions.Load([]config.Function{fc}, functions.Options{CacheDir: cache, InitTimeout: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "_initialize did not return within 500ms") {
		t.Fatalf("load: %v; want an error saying _initialize did not return within 500ms", err)
	}
	if busy := testenv.BusyChildren(t); len(busy) > 0 {
		t.Fatalf("workers still spinning after the failed load: %v", busy)
	}
	// The artifact stays cached: a later Load starts no worker.
	set, err := functions.Load([]config.Function{fc}, functions.Options{CacheDir: cache, InitTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	optimized(t, set, "stuck")
	_, err = set.Invoke(context.Background(), "stuck", functions.Event{ID: "e", Attempt: 1})
	if !errors.Is(err, functions.ErrTrap) || !strings.Contains(err.Error(), "_initialize did not return within 500ms") {
		t.Fatalf("first event: %v; want a trap saying _initialize did not return within 500ms", err)
	}
	if busy := testenv.BusyChildren(t); len(busy) > 0 {
		t.Fatalf("workers still spinning after the failed start: %v", busy)
	}
}

// TestModuleFilesMustBeRegularAndBounded: a device, a directory or a file
// over the module size limit is a clear error naming the file, read
// without exhausting memory.
func TestModuleFilesMustBeRegularAndBounded(t *testing.T) {
	huge := filepath.Join(t.TempDir(), "huge.wasm")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(functions.MaxModuleSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for path, want := range map[string]string{
		"/dev/zero": "not a regular file",
		t.TempDir(): "not a regular file",
		huge:        "file too large",
	} {
		_, err := functions.Load([]config.Function{{Name: "bad", Module: path, Timeout: time.Second, Memory: 1 << 20}},
			functions.Options{CacheDir: testenv.CacheDir(t)})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("module %s: %v; want an error naming it and saying %q", path, err, want)
		}
	}
}

// TestAlteredArtifactsAreNeverLoaded: an artifact in the compile cache
// whose bytes no longer match the digest recorded when it was compiled is
// compiled again, not deserialized.
func TestAlteredArtifactsAreNeverLoaded(t *testing.T) {
	cache := t.TempDir()
	mod := testenv.WAT(t, `(module (memory (export "memory") 1)
  (data (i32.const 0) "fine")
  (import "sluice" "result_set" (func $r (param i32 i32) (result i32)))
  (func (export "handle") (result i32) (drop (call $r (i32.const 0) (i32.const 4))) (i32.const 0)))`)
	fc := config.Function{Name: "f", Module: mod, Timeout: 5 * time.Second, Memory: 1 << 20}
	loadOnce := func() (bool, string) {
		t.Helper()
		set, err := functions.Load([]config.Function{fc}, functions.Options{CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		defer set.Close()
		res, err := set.Invoke(context.Background(), "f", functions.Event{ID: "a", Attempt: 1})
		if err != nil {
			t.Fatal(err)
		}
		_, hit, _ := set.Version("f")
		return hit, string(res.Output)
	}
	if hit, out := loadOnce(); hit || out != "fine" {
		t.Fatalf("first load: cache hit %v, output %q", hit, out)
	}
	if hit, _ := loadOnce(); !hit {
		t.Fatal("an intact artifact was not reused")
	}
	artifacts, _ := filepath.Glob(filepath.Join(cache, "*.bin"))
	if len(artifacts) == 0 {
		t.Fatal("no artifact in the cache")
	}
	for _, a := range artifacts {
		b, err := os.ReadFile(a)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(a, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if hit, out := loadOnce(); hit || out != "fine" {
		t.Fatalf("after tampering: cache hit %v, output %q; want a fresh compile", hit, out)
	}
}

// TestProtocolViolationFailsOnlyItsInvocation: a worker that sends a frame
// its state does not allow (a compile reply during an invocation) is
// killed; that invocation fails as a trap, the runtime logs the violation,
// and the next event runs normally in a new worker.
func TestProtocolViolationFailsOnlyItsInvocation(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &records{}
	mod := testenv.WAT(t, `(module (memory (export "memory") 1)
  (data (i32.const 0) "ok")
  (import "sluice" "result_set" (func $r (param i32 i32) (result i32)))
  (func (export "handle") (result i32) (drop (call $r (i32.const 0) (i32.const 2))) (i32.const 0)))`)
	set, err := functions.Load([]config.Function{{Name: "f", Module: mod, Timeout: 10 * time.Second, Memory: 1 << 20}},
		functions.Options{CacheDir: testenv.CacheDir(t), Logger: slog.New(logs), WorkerEnv: []string{mitmEnv + "=" + token}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	ctx := context.Background()
	_, err = set.Invoke(ctx, "f", functions.Event{ID: "first", Attempt: 1})
	if !errors.Is(err, functions.ErrTrap) || !strings.Contains(err.Error(), "protocol violation") {
		t.Fatalf("first invocation: %v; want a trap naming the protocol violation", err)
	}
	if !logs.sawOther("worker protocol violation") {
		t.Fatal("the protocol violation was not logged")
	}
	for i := range 3 {
		res, err := set.Invoke(ctx, "f", functions.Event{ID: fmt.Sprint("next", i), Attempt: 1})
		if err != nil || string(res.Output) != "ok" {
			t.Fatalf("invocation after the violation: %+v, %v", res, err)
		}
	}
}
