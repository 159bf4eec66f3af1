package functions

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions/sandbox"
)

func TestURLAllowed(t *testing.T) {
	allowed := []string{"https://api.example.com", "http://localhost:8080/v1/", "https://Files.Example.com/pub"}
	for raw, want := range map[string]bool{
		"https://api.example.com":                     true,
		"https://api.example.com/":                    true,
		"https://api.example.com/any/path?q=1#f":      true,
		"https://API.example.com:443/x":               true,
		"https://api.example.com.evil.com/":           false,
		"https://api.example.com@evil.com/":           false,
		"https://evil.com/https://api.example.com":    false,
		"https://evil.com/?u=https://api.example.com": false,
		"http://api.example.com/":                     false, // scheme
		"https://api.example.com:8443/":               false, // port
		"https://sub.api.example.com/":                false,
		"http://localhost:8080/v1/":                   true,
		"http://localhost:8080/v1":                    true,
		"http://localhost:8080/v1/users":              true,
		"http://localhost:8080/v10":                   false,
		"http://localhost:8080/v1/../admin":           false,
		"http://localhost:8080/v1/%2e%2e/admin":       false,
		"http://localhost:8080/v1/%2E%2E%2Fadmin":     false,
		"http://localhost/v1/":                        false, // port 80
		"http://localhost:8081/v1/":                   false,
		"https://files.example.com/pub/a.txt":         true,
		"https://files.example.com/public":            false,
		"https://files.example.com/":                  false,
		"mailto:api.example.com":                      false,
		"//api.example.com/":                          false,
		"/relative":                                   false,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			if want {
				t.Errorf("%s: %v", raw, err)
			}
			continue
		}
		if got := urlAllowed(allowed, u); got != want {
			t.Errorf("urlAllowed(%s) = %v, want %v", raw, got, want)
		}
	}
}

func TestValidKey(t *testing.T) {
	for key, want := range map[string]bool{
		"a": true, "users/42.name": true, "A-b_c=d": true,
		"": false, ".a": false, "a.": false, "a..b": false, "a b": false, "a*": false, "a>": false, "ключ": false,
	} {
		if got := validKey(key); got != want {
			t.Errorf("validKey(%q) = %v, want %v", key, got, want)
		}
	}
}

// TestCheckPublish: whatever a function's publish list says, a guest never
// publishes to a reserved namespace or to an overlong or invalid subject,
// and the error names the subject.
func TestCheckPublish(t *testing.T) {
	h := &host{ctx: context.Background(), f: &function{
		cfg: config.Function{Name: "f", Publish: []string{">", "audit.*"}},
		set: &Set{opts: Options{Logger: slog.New(slog.DiscardHandler)}},
	}}
	for _, s := range []string{"orders.created", "audit.x"} {
		if err := h.checkPublish(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"sluice.admin.deploy", "sluice.replay.q", "$KV.sluice_fn_g.k", "$JS.API.STREAM.DELETE.X", "_INBOX.abc", "_SLUICE_INBOX.x.1"} {
		err := h.checkPublish(s)
		if !errors.Is(err, sandbox.ErrDenied) || !strings.Contains(err.Error(), strconv.Quote(s)) {
			t.Errorf("%q: %v, want ErrDenied naming the subject", s, err)
		}
	}
	long := "orders." + strings.Repeat("a", 5000)
	if err := h.checkPublish(long); !errors.Is(err, sandbox.ErrInvalid) || !errors.Is(err, config.ErrSubjectTooLong) || !strings.Contains(err.Error(), "orders.") {
		t.Errorf("5,000-byte subject: %v", err)
	}
	if err := h.checkPublish("orders.*"); !errors.Is(err, sandbox.ErrInvalid) {
		t.Errorf("wildcard subject: %v", err)
	}
	h.f.cfg.Publish = []string{"audit.*"}
	if err := h.checkPublish("orders.created"); !errors.Is(err, sandbox.ErrDenied) || !strings.Contains(err.Error(), `"orders.created"`) {
		t.Errorf("subject outside the list: %v", err)
	}
}
