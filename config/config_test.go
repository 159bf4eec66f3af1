package config

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite the golden .err files in testdata/invalid")

func TestLoadFull(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "valid", "full.hcl"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "valid"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path: filepath.Join(dir, "full.hcl"),
		NATS: NATS{
			Listen:       "127.0.0.1:-1",
			StoreDir:     filepath.Join(dir, "data", "js"),
			Sync:         "2m",
			SyncInterval: 2 * time.Minute,
			MaxMemory:    64 << 20,
			MaxStore:     1_000_000_000,
			Replicas:     1,
		},
		Metrics: Metrics{Listen: "127.0.0.1:0"},
		Functions: []Function{
			{
				Name:          "welcome_email",
				Module:        filepath.Join(dir, "examples/signup/welcome_email/welcome_email.wasm"),
				Source:        filepath.Join(dir, "examples/signup/welcome_email"),
				Timeout:       5 * time.Second,
				IdleTimeout:   90 * time.Second,
				Memory:        64 << 20,
				Env:           map[string]string{"SENDER": "hello@example.com", "RETRIES": "3"},
				Publish:       []string{"email.outbox", "audit.*", "trace.>"},
				MaxResultSize: 64 << 10, MaxLogSize: 64 << 10,
			},
			{
				Name:          "crm_sync",
				Module:        "/opt/sluice/crm_sync.wasm",
				Timeout:       30 * time.Second,
				IdleTimeout:   5 * time.Minute,
				FreshInstance: true,
				Memory:        128 << 20,
				AllowedHosts:  []string{"https://api.example.com", "http://localhost:8080/v1/"},
				MaxResultSize: 64 << 10, MaxLogSize: 64 << 10,
			},
			{
				Name:          "smtp_sender",
				Module:        filepath.Join(dir, "smtp.wasm"),
				Timeout:       30 * time.Second,
				IdleTimeout:   5 * time.Minute,
				Memory:        128 << 20,
				MaxResultSize: 64 << 10, MaxLogSize: 64 << 10,
			},
		},
		Queues: []Queue{
			{
				Name: "emails", Subject: "email.send", Function: "smtp_sender",
				Concurrency: 8, Rate: Rate{Events: 200, Per: time.Second},
				Retry:      Retry{MaxAttempts: 5, Initial: 500 * time.Millisecond, Max: time.Minute},
				DeadLetter: "dlq.emails", MaxEventSize: 256 << 10,
			},
			{
				Name: "orders", Subject: "orders.*.created", Function: "smtp_sender",
				Concurrency: 1,
				Retry:       Retry{MaxAttempts: 5, Initial: 2 * time.Second, Max: 5 * time.Minute},
				DeadLetter:  "sluice.dlq.orders", MaxEventSize: 1 << 20,
			},
		},
		Topics: []Topic{{
			Name: "user_registered", Subject: "user.registered",
			Retention: 24 * time.Hour, MaxEventSize: 1 << 20,
			Subscribers: []Subscriber{
				{
					Name: "welcome_email", Function: "welcome_email", Concurrency: 1,
					Retry:      Retry{MaxAttempts: 5, Initial: time.Second, Max: 5 * time.Minute},
					DeadLetter: "sluice.dlq.user_registered.welcome_email", StartFrom: "new",
				},
				{
					Name: "crm_sync", Function: "crm_sync", Concurrency: 4,
					Rate:       Rate{Events: 10, Per: time.Second},
					Retry:      Retry{MaxAttempts: 8, Initial: time.Second, Max: 5 * time.Minute},
					DeadLetter: "dlq.crm", OnSuccess: "crm.synced", OnFailure: "crm.failed",
					StartFrom: "all",
				},
			},
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load:\n got %+v\nwant %+v", cfg, want)
	}

	var names []string
	for _, b := range cfg.Bindings() {
		names = append(names, b.Kind+":"+b.Name)
	}
	wantNames := []string{"queue:emails", "queue:orders", "topic:user_registered/welcome_email", "topic:user_registered/crm_sync"}
	if !reflect.DeepEqual(names, wantNames) {
		t.Errorf("Bindings names = %v, want %v", names, wantNames)
	}
	b := cfg.Bindings()[3]
	wantB := Binding{
		Name: "user_registered/crm_sync", Kind: KindTopic, Source: "user_registered",
		Subject: "user.registered", Function: "crm_sync", Concurrency: 4,
		Rate:       Rate{Events: 10, Per: time.Second},
		Retry:      Retry{MaxAttempts: 8, Initial: time.Second, Max: 5 * time.Minute},
		DeadLetter: "dlq.crm", OnSuccess: "crm.synced", OnFailure: "crm.failed",
		StartFrom: "all", MaxEventSize: 1 << 20,
	}
	if b != wantB {
		t.Errorf("binding 3:\n got %+v\nwant %+v", b, wantB)
	}
	if f, ok := cfg.Function("crm_sync"); !ok || f.Module != "/opt/sluice/crm_sync.wasm" {
		t.Errorf("Function(crm_sync) = %+v, %v", f, ok)
	}
}

func TestDefaults(t *testing.T) {
	src := `
function "f" {
  module = "f.wasm"
}
queue "q" {
  subject  = "q.in"
  function = "f"
}
topic "t" {
  subject = "t.in"
  subscriber "s" {
    function = "f"
  }
}
`
	cfg, err := Parse(filepath.Join("some", "dir", "runtime.hcl"), []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	dir, err := filepath.Abs(filepath.Join("some", "dir"))
	if err != nil {
		t.Fatal(err)
	}
	wantNATS := NATS{
		Listen: "127.0.0.1:4222", StoreDir: filepath.Join(dir, ".sluice", "jetstream"),
		Sync: "always", MaxMemory: 256 << 20, MaxStore: 10 << 30, Replicas: 1,
	}
	if !reflect.DeepEqual(cfg.NATS, wantNATS) {
		t.Errorf("NATS = %+v, want %+v", cfg.NATS, wantNATS)
	}
	if want := (Metrics{Listen: "127.0.0.1:9464"}); cfg.Metrics != want {
		t.Errorf("Metrics = %+v, want %+v", cfg.Metrics, want)
	}
	f := cfg.Functions[0]
	if f.Module != filepath.Join(dir, "f.wasm") || f.Timeout != 30*time.Second || f.Memory != 128<<20 || f.IdleTimeout != 5*time.Minute {
		t.Errorf("function = %+v", f)
	}
	retry := Retry{MaxAttempts: 5, Initial: time.Second, Max: 5 * time.Minute}
	wantQ := Queue{Name: "q", Subject: "q.in", Function: "f", Concurrency: 1, Retry: retry,
		DeadLetter: "sluice.dlq.q", MaxEventSize: 1 << 20}
	if cfg.Queues[0] != wantQ {
		t.Errorf("queue = %+v, want %+v", cfg.Queues[0], wantQ)
	}
	topic := cfg.Topics[0]
	if topic.Retention != 7*24*time.Hour || topic.MaxEventSize != 1<<20 {
		t.Errorf("topic = %+v", topic)
	}
	wantS := Subscriber{Name: "s", Function: "f", Concurrency: 1, Retry: retry,
		DeadLetter: "sluice.dlq.t.s", StartFrom: "new"}
	if topic.Subscribers[0] != wantS {
		t.Errorf("subscriber = %+v, want %+v", topic.Subscribers[0], wantS)
	}
}

func TestEmptyFile(t *testing.T) {
	cfg, err := Parse("runtime.hcl", nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(cfg.Bindings()) != 0 || cfg.NATS.Listen != "127.0.0.1:4222" {
		t.Errorf("empty file: %+v", cfg)
	}
}

func TestParseFromMemory(t *testing.T) {
	cfg, err := Parse("", []byte(`function "f" { module = "f.wasm" }`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != "" || cfg.Functions[0].Module != filepath.Join(wd, "f.wasm") {
		t.Errorf("Path = %q, Module = %q", cfg.Path, cfg.Functions[0].Module)
	}
}

func TestMetricsAndNATS(t *testing.T) {
	cfg, err := Parse("runtime.hcl", []byte(`
nats {
  url       = "nats://a:4222, tls://b:4222,wss://c"
  sync      = "always"
  store_dir = "/var/lib/sluice"
}
metrics {
  enabled = false
}
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !cfg.Metrics.Disabled || cfg.Metrics.Listen != "" {
		t.Errorf("Metrics = %+v, want disabled without an address", cfg.Metrics)
	}
	if cfg.NATS.URL != "nats://a:4222, tls://b:4222,wss://c" || cfg.NATS.StoreDir != "/var/lib/sluice" ||
		cfg.NATS.Sync != "always" || cfg.NATS.SyncInterval != 0 {
		t.Errorf("NATS = %+v", cfg.NATS)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.hcl"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}
	if !strings.HasPrefix(err.Error(), "read config ") {
		t.Errorf("error %q does not start with \"read config \"", err)
	}
	var de *DiagnosticsError
	if errors.As(err, &de) {
		t.Errorf("a read error is not a DiagnosticsError")
	}
}

// generated holds invalid inputs made in code, with golden files beside the
// others in testdata/invalid.
func generated() map[string][]byte {
	big := []byte(strings.Repeat("# padding\n", maxFileSize/10+1))
	deep := func(open, close string, n int) []byte {
		return []byte("function \"a\" {\n  module = \"a.wasm\"\n  env = " +
			strings.Repeat(open, n) + strings.Repeat(close, n) + "\n}\n")
	}
	return map[string][]byte{
		"generated-too-large":     big,
		"generated-deep-brackets": deep("[", "]", 100000),
		"generated-deep-parens":   deep("(", ")", 50),
		"generated-deep-objects":  deep("{a=", "}", 40),
		"generated-deep-unary":    deep("!", "", 100000),
		"generated-deep-negation": deep("- ", "", 40),
		"generated-deep-ternary":  deep("true ? 1 : ", "", 40),
		"generated-deep-template": deep(`"${`, `}"`, 40),
		"generated-deep-if":       []byte(`x = "` + strings.Repeat("%{if true}", 40) + "x" + strings.Repeat("%{endif}", 40) + `"`),
		"generated-deep-splat":    deep("[", "][*]", 40),
		"generated-long-chain":    deep("1 + ", "", 300),
		"generated-deep-heredoc":  []byte("x = <<EOT\n" + strings.Repeat("${[", 40) + strings.Repeat("]}", 40) + "\nEOT\n"),
	}
}

func TestInvalidGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("found %d invalid files, want at least 10", len(files))
	}
	cases := map[string][]byte{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cases[strings.TrimSuffix(filepath.Base(f), ".hcl")] = src
	}
	for name, src := range generated() {
		cases[name] = src
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			filename := "testdata/invalid/" + name + ".hcl"
			cfg, err := Parse(filename, src)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("Parse returned a Config with an error")
			}
			var de *DiagnosticsError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DiagnosticsError: %v", err, err)
			}
			for _, d := range de.Diags {
				if d.Severity != hcl.DiagError || d.Summary == "" || d.Detail == "" || d.Subject == nil {
					t.Errorf("incomplete diagnostic %+v", d)
				}
			}
			got := err.Error() + "\n"
			golden := filepath.Join("testdata", "invalid", name+".err")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("diagnostics differ from %s (run with -update to accept):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestThreeMistakes(t *testing.T) {
	const filename = "testdata/invalid/three-mistakes.hcl"
	src, err := os.ReadFile(filename)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(filename, src)
	var de *DiagnosticsError
	if !errors.As(err, &de) {
		t.Fatalf("Parse: %v, want a *DiagnosticsError", err)
	}
	if len(de.Diags) != 3 {
		t.Fatalf("got %d diagnostics, want 3:\n%v", len(de.Diags), err)
	}
	want := []struct {
		summary   string
		line, col int
	}{
		{"Unsupported argument", 3, 3},
		{"Unknown function", 8, 14},
		{"Invalid duration", 13, 13},
	}
	text := err.Error()
	for i, w := range want {
		d := de.Diags[i]
		if d.Summary != w.summary || d.Subject.Start.Line != w.line || d.Subject.Start.Column != w.col {
			t.Errorf("diagnostic %d: %q at %d:%d, want %q at %d:%d", i, d.Summary,
				d.Subject.Start.Line, d.Subject.Start.Column, w.summary, w.line, w.col)
		}
		loc := fmt.Sprintf("%s:%d:%d", filename, w.line, w.col)
		if !strings.Contains(text, loc) {
			t.Errorf("rendered diagnostics do not contain %q:\n%s", loc, text)
		}
	}
	if !strings.Contains(text, `Declared functions: "send", "other"`) || !strings.Contains(text, `Did you mean "send"?`) {
		t.Errorf("unknown function diagnostic does not list the functions:\n%s", text)
	}
}

func TestDiagnosticsErrorRendering(t *testing.T) {
	_, err := Parse("x.hcl", []byte("function \"f\" {\n\tmodule = 5\n}\n"))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	want := "Error: Incorrect attribute value type\n\n" +
		"  on x.hcl:2:11, in function \"f\":\n" +
		"     2: \tmodule = 5\n" +
		"        \t         ^\n\n" +
		"Inappropriate value for attribute \"module\": a string is required, not number."
	if err.Error() != want {
		t.Errorf("got:\n%s\nwant:\n%s", err.Error(), want)
	}
}

func TestFormat(t *testing.T) {
	messy := []byte("function   \"f\"{\nmodule=\"f.wasm\"\n   timeout = \"5s\" # comment\nenv={A=\"b\",C=[1,2]}\n}\n")
	want := "function \"f\" {\n  module  = \"f.wasm\"\n  timeout = \"5s\" # comment\n  env     = { A = \"b\", C = [1, 2] }\n}\n"
	if got := string(Format(messy)); got != want {
		t.Errorf("Format:\n%s\nwant:\n%s", got, want)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	inputs := [][]byte{messy, nil, []byte("x = <<EOT\n  ${a}\nEOT\n"), []byte("a = -1 - -2\nb = !true\n")}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, src)
	}
	for i, src := range inputs {
		once := Format(src)
		if twice := Format(once); string(twice) != string(once) {
			t.Errorf("input %d: Format is not idempotent:\n%s\nthen\n%s", i, once, twice)
		}
	}
}

func TestFormatKeepsMeaning(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "valid", "full.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Parse("testdata/valid/full.hcl", src)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("testdata/valid/full.hcl", Format(src))
	if err != nil {
		t.Fatalf("formatted file does not parse: %v", err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("formatting changed the config")
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"4096", 4096, true},
		{"512B", 512, true},
		{"1KB", 1000, true},
		{"1MB", 1000000, true},
		{"2GB", 2000000000, true},
		{"1KiB", 1024, true},
		{"64MiB", 64 << 20, true},
		{"10GiB", 10 << 30, true},
		{"1TiB", 1 << 40, true},
		{"8388607TiB", 8388607 << 40, true},
		{"8388608TiB", 0, false},
		{"9223372036854775807", 9223372036854775807, true},
		{"9223372036854775808", 0, false},
		{"99999999999999999999GiB", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"-1MiB", 0, false},
		{"MiB", 0, false},
		{"1.5MiB", 0, false},
		{"64 MiB", 0, false},
		{"64mib", 0, false},
		{"64M", 0, false},
		{"1e3", 0, false},
		{" 1", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want Rate
		ok   bool
	}{
		{"200/s", Rate{200, time.Second}, true},
		{"10/m", Rate{10, time.Minute}, true},
		{"5/h", Rate{5, time.Hour}, true},
		{"2000/1s", Rate{2000, time.Second}, true},
		{"1/500ms", Rate{1, 500 * time.Millisecond}, true},
		{"1/ms", Rate{1, time.Millisecond}, true},
		{"0.5/s", Rate{0.5, time.Second}, true},
		{"3/1m30s", Rate{3, 90 * time.Second}, true},
		{"", Rate{}, false},
		{"200", Rate{}, false},
		{"/s", Rate{}, false},
		{"200/", Rate{}, false},
		{"0/s", Rate{}, false},
		{"-1/s", Rate{}, false},
		{"1e3/s", Rate{}, false},
		{"NaN/s", Rate{}, false},
		{"Inf/s", Rate{}, false},
		{"1..2/s", Rate{}, false},
		{"5/0s", Rate{}, false},
		{"5/-1s", Rate{}, false},
		{"5/week", Rate{}, false},
		{"5/s/s", Rate{}, false},
		{"5 /s", Rate{}, false},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if r, _ := ParseRate("10/500ms"); r.PerSecond() != 20 {
		t.Errorf("10/500ms = %v per second, want 20", r.PerSecond())
	}
}

func TestValidSubject(t *testing.T) {
	tests := []struct {
		in                 string
		literal, wildcards bool
	}{
		{"a", true, true},
		{"orders.created", true, true},
		{"$JS.API.INFO", true, true},
		{"ünïcode.ok", true, true},
		{"a-b_c.d", true, true},
		{"a.*", false, true},
		{"*", false, true},
		{">", false, true},
		{"a.>", false, true},
		{"*.*.>", false, true},
		{"", false, false},
		{".", false, false},
		{"a.", false, false},
		{".a", false, false},
		{"a..b", false, false},
		{"a b", false, false},
		{"a\tb", false, false},
		{"a\nb", false, false},
		{"a\u00a0b", false, false},
		{"a\x00b", false, false},
		{"a*", false, false},
		{"a.b*", false, false},
		{"a.>.b", false, false},
		{">.a", false, false},
		{"a.b>", false, false},
		{"\xff", false, false},
	}
	for _, tt := range tests {
		if err := ValidSubject(tt.in, false); (err == nil) != tt.literal {
			t.Errorf("ValidSubject(%q, false) = %v, want ok=%v", tt.in, err, tt.literal)
		}
		if err := ValidSubject(tt.in, true); (err == nil) != tt.wildcards {
			t.Errorf("ValidSubject(%q, true) = %v, want ok=%v", tt.in, err, tt.wildcards)
		}
	}
}

func TestSubjectsOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{"a.>", "a.b", true},
		{">", "x", true},
		{">", "x.y.z", true},
		{"*", "x.y", false},
		{"*.b", "a.*", true},
		{"*.b.c", "a.*.d", false},
		{"a.*.>", "a.b", false},
		{"a.*.>", "a.b.c", true},
		{"a.b", "a.b.c", false},
		{"a", "b", false},
		{"*", ">", true},
		{"a.>", "*.b", true},
		{"a.>", "b.>", false},
	}
	for _, tt := range tests {
		if got := SubjectsOverlap(tt.a, tt.b); got != tt.want {
			t.Errorf("SubjectsOverlap(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := SubjectsOverlap(tt.b, tt.a); got != tt.want {
			t.Errorf("SubjectsOverlap(%q, %q) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

// TestNestingScanner checks that ordinary files with strings, comments and
// heredocs full of brackets are not mistaken for deep nesting.
func TestNestingScanner(t *testing.T) {
	brackets := strings.Repeat("[{(", 50)
	ok := []string{
		`x = "` + brackets + `"`,
		`x = "\"` + brackets + `"`,
		"# " + brackets + "\nx = 1",
		"// " + brackets + "\nx = 1",
		"/* " + brackets + " */ x = 1",
		"x = <<EOT\n" + brackets + "\nEOT\ny = 1",
		"x = <<-EOT\n  " + brackets + "\n  EOT\n",
		`x = "$${` + brackets + `"`,
		`x = "${"a"}` + brackets + `"`,
		"x = " + strings.Repeat("1 - ", 100) + "1",
		"x = " + strings.Repeat("a-b-c ", 100),
		"x = [" + strings.Repeat("true ? 1 : 2,\n", 100) + "]",
		"x = [" + strings.Repeat("[1], ", 100) + "]",
		"x = [" + strings.Repeat("1 + 1, ", 300) + "]",
		"x = <<EOT\n" + strings.Repeat("a+b ", 300) + "\nEOT\n",
		"x = [1][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]",
		"a--------------------------------------------b = 1",
	}
	for _, src := range ok {
		if diags := checkLimits("x.hcl", []byte(src)); diags.HasErrors() {
			t.Errorf("checkLimits(%q) = %v, want no error", src, diags)
		}
	}
	bad := []string{
		"x = " + strings.Repeat("[", 33),
		"x = \"" + strings.Repeat("${[", 17) + "\"",
		"x = <<EOT\n" + strings.Repeat("${(", 17) + "\nEOT\n",
		"x = " + strings.Repeat("!", 33),
		"x = " + strings.Repeat("- ", 33),
		"x = " + strings.Repeat("a ? b : ", 33),
		"x = [1]" + strings.Repeat("[*]", 33),
		"x = [{a=1}]" + strings.Repeat(".*.a", 33),
		"x = " + strings.Repeat("1+", 300) + "1",
		"x = [" + strings.Repeat("1 == ", 300) + "1]",
	}
	for _, src := range bad {
		if diags := checkLimits("x.hcl", []byte(src)); !diags.HasErrors() {
			t.Errorf("checkLimits(%.40q…) found no error", src)
		}
	}
	if diags := checkLimits("x.hcl", []byte("x = \n"+strings.Repeat("[", 40))); !diags.HasErrors() ||
		diags[0].Subject.Start.Line != 2 || diags[0].Subject.Start.Column != 33 {
		t.Errorf("position of deep nesting: %v", diags)
	}
}

var errLocation = regexp.MustCompile(`(?m)^  on \S+:\d+:\d+`)

// FuzzParse checks that no input makes Parse, CheckSyntax or Format
// panic, that a file is either a complete Config or diagnostics that all
// have a location, that a Config never lets a function publish or a
// producer reply into a reserved namespace, and that Format is idempotent.
// Its seeds are every test file and the repository's runtime.hcl.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.hcl"))
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, filepath.Join("..", "runtime.hcl"))
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	for _, src := range generated() {
		if len(src) < 4096 {
			f.Add(src)
		}
	}
	f.Add([]byte(`x = "${`))
	f.Add([]byte("x = <<EOT\n${\n"))
	f.Add([]byte("function \"\xff\" { module = \"\\u0000\" }"))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := Parse("fuzz.hcl", src)
		if err != nil {
			var de *DiagnosticsError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DiagnosticsError: %v", err, err)
			}
			if len(de.Diags) == 0 {
				t.Fatalf("DiagnosticsError without diagnostics")
			}
			text := de.Error()
			if got := len(errLocation.FindAllString(text, -1)); got != min(len(de.Diags), maxRendered) {
				t.Fatalf("%d diagnostics but %d locations in:\n%s", len(de.Diags), got, text)
			}
		} else {
			for _, fn := range cfg.Functions {
				for _, p := range fn.Publish {
					if ReservedSubject(p) != "" || len(p) > MaxSubjectLen {
						t.Fatalf("function %s may publish to %q", fn.Name, p)
					}
				}
			}
			for _, p := range cfg.ReplySubjects {
				if ReservedSubject(p) != "" || len(p) > MaxSubjectLen {
					t.Fatalf("replies may go to %q", p)
				}
			}
			for _, b := range cfg.Bindings() {
				if _, ok := cfg.Function(b.Function); !ok {
					t.Fatalf("binding %s names unknown function %q", b.Name, b.Function)
				}
				if b.Concurrency < 1 || b.Retry.MaxAttempts < 1 || b.MaxEventSize < 1 || b.DeadLetter == "" {
					t.Fatalf("binding without defaults: %+v", b)
				}
			}
		}
		_ = CheckSyntax("fuzz.hcl", src)
		once := Format(src)
		if twice := Format(once); string(twice) != string(once) {
			t.Fatalf("Format is not idempotent:\n%q\n%q", once, twice)
		}
	})
}

// TestSubjectIndex checks the index against SubjectsOverlap on every pair
// of a set of subjects that covers the wildcard cases.
func TestSubjectIndex(t *testing.T) {
	subjects := []string{
		"a", "b", "a.b", "a.c", "a.*", "*.b", "*", ">", "a.>", "b.>", "a.b.c",
		"a.*.c", "*.*.c", "a.b.>", "*.>", "c.d.e", "c.*.e", "c.d", "x.y.z.w", "x.>",
	}
	// Every ordered subset would be too many; check each prefix of several
	// orders instead.
	orders := [][]string{subjects, reversed(subjects)}
	for k := 1; k < len(subjects); k++ {
		rot := append(append([]string(nil), subjects[k:]...), subjects[:k]...)
		orders = append(orders, rot)
	}
	for _, order := range orders {
		var x subjectIndex
		for j, s := range order {
			id, got := x.overlap(s)
			want := false
			for _, prev := range order[:j] {
				want = want || SubjectsOverlap(prev, s)
			}
			if got != want {
				t.Fatalf("order %v: overlap(%q) = %v, want %v", order[:j], s, got, want)
			}
			if got && !SubjectsOverlap(order[id], s) {
				t.Fatalf("overlap(%q) names %q, which does not overlap", s, order[id])
			}
			x.add(s, j)
		}
	}
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestCluster(t *testing.T) {
	t.Setenv("ROUTE_PW", "s3cret")
	src := `
nats {
  name   = "n2"
  listen = "127.0.0.1:4223"
  cluster {
    listen       = "127.0.0.1:6223"
    routes       = ["nats://127.0.0.1:6222", "nats://127.0.0.1:6223", "nats-route://127.0.0.1:6224"]
    user         = "route"
    password_env = "ROUTE_PW"
  }
}
`
	cfg, err := Parse("runtime.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := &Cluster{
		Name: "sluice", Listen: "127.0.0.1:6223",
		Routes: []string{"nats://127.0.0.1:6222", "nats://127.0.0.1:6223", "nats-route://127.0.0.1:6224"},
		User:   "route", Password: "s3cret", PasswordEnv: "ROUTE_PW",
	}
	if !reflect.DeepEqual(cfg.NATS.Cluster, want) {
		t.Errorf("Cluster = %+v, want %+v", cfg.NATS.Cluster, want)
	}
	if cfg.NATS.Name != "n2" || cfg.NATS.Replicas != 3 {
		t.Errorf("name %q replicas %d, want n2 and the cluster default 3", cfg.NATS.Name, cfg.NATS.Replicas)
	}
}

func TestDedupe(t *testing.T) {
	cfg, err := Parse("", []byte(`
function "f" { module = "f.wasm" }
queue "q" {
  subject  = "q"
  function = "f"
  dedupe   = "24h"
}
topic "t" {
  subject = "t"
  subscriber "on"  {
    function = "f"
    dedupe   = "90m"
  }
  subscriber "off" { function = "f" }
}`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := map[string]time.Duration{"q": 24 * time.Hour, "t/on": 90 * time.Minute, "t/off": 0}
	for _, b := range cfg.Bindings() {
		if b.Dedupe != want[b.Name] {
			t.Errorf("binding %s: dedupe %s, want %s", b.Name, b.Dedupe, want[b.Name])
		}
	}
}

// TestDeadLetterStreamCapturesOneTokenBelow: a dead-letter stream captures
// the subjects one token below its dead_letter subject (one per event), so
// an event subject there is refused, while a dead_letter subject below
// another binding's stays allowed (its stream captures a token further).
func TestDeadLetterStreamCapturesOneTokenBelow(t *testing.T) {
	_, err := Parse("", []byte(`
function "f" { module = "f.wasm" }
queue "a" {
  subject     = "a"
  function    = "f"
  dead_letter = "dlq.a"
}
queue "b" {
  subject  = "dlq.a.retry"
  function = "f"
}`))
	if err == nil || !strings.Contains(err.Error(), "Dead-letter subject overlaps an event subject") {
		t.Errorf("an event subject one token below a dead_letter subject: %v, want the overlap refused", err)
	}
	if _, err := Parse("", []byte(`
function "f" { module = "f.wasm" }
queue "a" {
  subject     = "a"
  function    = "f"
  dead_letter = "dlq"
}
queue "b" {
  subject     = "b"
  function    = "f"
  dead_letter = "dlq.b"
}`)); err != nil {
		t.Errorf("dead_letter subjects dlq and dlq.b: %v", err)
	}
}

// TestDeadLetterSubjectLength: a dead_letter subject leaves room for the
// token naming each event below it.
func TestDeadLetterSubjectLength(t *testing.T) {
	src := func(n int) []byte {
		return []byte(`
function "f" { module = "f.wasm" }
queue "a" {
  subject     = "a"
  function    = "f"
  dead_letter = "` + strings.Repeat("d", n) + `"
}`)
	}
	if _, err := Parse("", src(MaxDeadLetterLen)); err != nil {
		t.Errorf("dead_letter of %d bytes: %v", MaxDeadLetterLen, err)
	}
	if _, err := Parse("", src(MaxDeadLetterLen+1)); err == nil || !strings.Contains(err.Error(), "at most 222 bytes") {
		t.Errorf("dead_letter of %d bytes: %v, want refused", MaxDeadLetterLen+1, err)
	}
}
