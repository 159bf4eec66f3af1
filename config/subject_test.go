package config

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckSendSubject: a subject the runtime sends to is literal, valid
// and at most MaxSubjectLen bytes; the error names the subject.
func TestCheckSendSubject(t *testing.T) {
	if err := CheckSendSubject("orders.created"); err != nil {
		t.Errorf("valid subject refused: %v", err)
	}
	if err := CheckSendSubject(strings.Repeat("a", MaxSubjectLen)); err != nil {
		t.Errorf("subject of exactly MaxSubjectLen refused: %v", err)
	}
	long := "x." + strings.Repeat("a", 5000)
	err := CheckSendSubject(long)
	if !errors.Is(err, ErrSubjectTooLong) || !strings.Contains(err.Error(), "5002 bytes") || len(err.Error()) > 200 {
		t.Errorf("5,000-byte subject: %v", err)
	}
	for _, s := range []string{"", "a..b", "a.*", "a.>", "a b", "a.\x00"} {
		if err := CheckSendSubject(s); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("%q: %v, want ErrInvalidSubject", s, err)
		}
	}
}

// TestCheckReplySubject: replies go to inboxes or configured patterns,
// never to reserved namespaces, stream subjects or overlong subjects.
func TestCheckReplySubject(t *testing.T) {
	patterns := []string{"app.replies.>"}
	for _, s := range []string{"_INBOX.abc", "_INBOX.abc.def", "app.replies.x", "app.replies.x.y"} {
		if err := CheckReplySubject(patterns, s); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
	for _, s := range []string{
		"$KV.sluice_fn_other.key", "$JS.API.STREAM.DELETE.X", "$O.store.x", "$SRV.PING", "$SYS.REQ.SERVER.PING",
		"sluice.admin.reload", "sluice.replay.q", "sluice.dlq.q", "_SLUICE_INBOX.abc.1", "_INBOXX.a",
		"orders.created", "app.replies", "_INBOX", "app.other",
	} {
		if err := CheckReplySubject(patterns, s); !errors.Is(err, ErrReplyNotAllowed) {
			t.Errorf("%q: %v, want ErrReplyNotAllowed", s, err)
		}
	}
	if err := CheckReplySubject(patterns, "_INBOX."+strings.Repeat("a", 5000)); !errors.Is(err, ErrSubjectTooLong) {
		t.Errorf("long inbox: %v", err)
	}
	if err := CheckReplySubject(patterns, "_INBOX.*"); !errors.Is(err, ErrInvalidSubject) {
		t.Errorf("wildcard inbox: %v", err)
	}
}

// TestReplySubjectsConfig: reply_subjects in the nats block are decoded.
func TestReplySubjectsConfig(t *testing.T) {
	cfg, err := Parse("x.hcl", []byte(`nats { reply_subjects = ["app.replies.>", "web.*.reply"] }`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.ReplySubjects, ",") != "app.replies.>,web.*.reply" {
		t.Errorf("ReplySubjects = %q", cfg.ReplySubjects)
	}
}

// TestCheckSyntax: a file with syntax errors is reported, a sound one
// passes, and deep nesting is refused before the parser sees it.
func TestCheckSyntax(t *testing.T) {
	if err := CheckSyntax("ok.hcl", []byte("function \"f\" { module = \"f.wasm\" }\n")); err != nil {
		t.Errorf("sound file: %v", err)
	}
	var de *DiagnosticsError
	if err := CheckSyntax("bad.hcl", []byte("function \"f\" {\n  module = \n")); !errors.As(err, &de) || !strings.Contains(err.Error(), "bad.hcl:") {
		t.Errorf("broken file: %v", err)
	}
	if err := CheckSyntax("deep.hcl", []byte("x = "+strings.Repeat("[", 10000))); !errors.As(err, &de) {
		t.Errorf("deep nesting: %v", err)
	}
}
