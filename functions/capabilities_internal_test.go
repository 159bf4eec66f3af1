package functions

import (
	"net/url"
	"testing"
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
