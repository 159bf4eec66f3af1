package stress

import (
	"flag"
	"github.com/sluice-run/sluice/config"
	"strings"
	"testing"
	"time"
)

var only = flag.String("only", "", "")

func TestStress(t *testing.T) {
	n := 1<<20 - 200
	cases := map[string]string{
		"binary":    "x = " + strings.Repeat("1+", n/2-10) + "1",
		"index":     "x = [1]" + strings.Repeat("[0]", n/3-10),
		"getattr":   "x = {a=1}" + strings.Repeat(".a", n/2-10),
		"compare":   "x = " + strings.Repeat("1==", n/3-10) + "1",
		"and":       "x = " + strings.Repeat("true&&", n/6-10) + "true",
		"tmpl":      "x = \"" + strings.Repeat("${1}", n/4-10) + "\"",
		"splat":     "x = [1]" + strings.Repeat("[*]", n/3-10),
		"tuple":     "x = [" + strings.Repeat("1,", n/2-10) + "]",
		"blocks":    strings.Repeat("function \"a\" {\nmodule=\"a\"\n}\n", n/30),
		"attrs":     strings.Repeat("a=1\n", n/4),
		"forexpr":   "x = [for a in [1]: a]" + strings.Repeat("[0]", n/3-20),
		"heredocs":  strings.Repeat("x = <<E\n${1}\nE\n", n/20),
		"minus":     "x = " + strings.Repeat("1 - ", n/4-10) + "1",
		"paren-seq": "x = " + strings.Repeat("(1)+", n/4-10) + "1",
		"attrsplat": "x = [{a=1}]" + strings.Repeat(".*.a", n/4-10),
		"queues":    strings.Repeat("queue \"a\" {\nsubject=\"a.*\"\nfunction=\"a\"\n}\n", n/40),
	}
	for name, src := range cases {
		if name != *only && *only != "" {
			continue
		}
		start := time.Now()
		if name != "blocks" && name != "attrs" && name != "heredocs" && name != "queues" {
			src = "function \"a\" {\n module = \"a\"\n env = {\n" + src + "\n}\n}\n"
		}
		_, err := config.Parse("x.hcl", []byte(src))
		msg := ""
		if err != nil {
			msg = err.Error()
			if len(msg) > 150 {
				msg = msg[:150]
			}
		}
		t.Logf("%s: %d bytes %v %q", name, len(src), time.Since(start), msg)
		config.Format([]byte(src))
	}
}
