package doccheck

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/sluice-run/sluice/config"
)

// docBlock is one fenced block of a Markdown document.
type docBlock struct {
	file     string // relative to the repository root
	line     int    // of the opening fence
	lang     string
	text     string
	fragment bool // preceded by <!-- fragment -->
}

// fragmentMark, on the line before a fence, marks an hcl block that is
// part of a config rather than a whole one: it is checked for syntax only.
const fragmentMark = "<!-- fragment -->"

// markdownBlocks returns the fenced blocks of a Markdown file.
func markdownBlocks(t *testing.T, root, rel string) []docBlock {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	var out []docBlock
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		lang, ok := strings.CutPrefix(lines[i], "```")
		if !ok || lang == "" {
			continue
		}
		b := docBlock{file: rel, line: i + 1, lang: strings.TrimSpace(lang)}
		for j := i - 1; j >= 0 && strings.TrimSpace(lines[j]) != ""; j-- {
			if strings.TrimSpace(lines[j]) == fragmentMark {
				b.fragment = true
			}
			break
		}
		var body []string
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			body = append(body, lines[i])
		}
		b.text = strings.Join(body, "\n") + "\n"
		out = append(out, b)
	}
	return out
}

// docFiles are the documents whose blocks are checked.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	files := []string{"README.md"}
	for _, pattern := range []string{"docs/*.md", "examples/*/README.md"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			rel, _ := filepath.Rel(root, f)
			files = append(files, rel)
		}
	}
	return files
}

var (
	// fileAttr is an attribute naming a file that Load checks exists.
	fileAttr = regexp.MustCompile(`(?m)^(\s*(?:cert|key|ca|creds|nkey)\s*=\s*")([^"]+)(")`)
	envCall  = regexp.MustCompile(`env\("([A-Za-z_][A-Za-z0-9_]*)"\)`)
	envAttr  = regexp.MustCompile(`password_env\s*=\s*"([A-Za-z_][A-Za-z0-9_]*)"`)
)

// asReaderHasIt prepares a documented config as a reader following the
// docs would have it: the variables it reads from the environment are set,
// and the certificate and credential files it names exist (created, empty,
// under dir, which their paths are moved into).
func asReaderHasIt(t *testing.T, src, dir string) string {
	t.Helper()
	for _, re := range []*regexp.Regexp{envCall, envAttr} {
		for _, m := range re.FindAllStringSubmatch(src, -1) {
			t.Setenv(m[1], "doc-test-value")
		}
	}
	return fileAttr.ReplaceAllStringFunc(src, func(s string) string {
		m := fileAttr.FindStringSubmatch(s)
		path := filepath.Join(dir, filepath.FromSlash(m[2]))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return m[1] + path + m[3]
	})
}

// TestDocumentedHCLIsValid: every ```hcl block of the README, docs/ and
// the examples' READMEs parses, and every one not marked as a fragment
// (<!-- fragment --> on the line before its fence) is a valid config. An
// example README's functions and bindings are exactly those of the
// repository's runtime.hcl, which the example runs with.
func TestDocumentedHCLIsValid(t *testing.T) {
	root := filepath.Join("..", "..")
	absRoot, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	running, err := config.Load(filepath.Join(root, "runtime.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	repo := config.EffectiveOf(running, nil)
	checked := 0
	for _, file := range docFiles(t, root) {
		for _, b := range markdownBlocks(t, root, file) {
			if b.lang != "hcl" {
				continue
			}
			checked++
			where := b.file + ":" + strconv.Itoa(b.line)
			if _, diags := hclsyntax.ParseConfig([]byte(b.text), where, hcl.InitialPos); diags.HasErrors() {
				t.Errorf("%s: the hcl block does not parse:\n%s", where, diags)
				continue
			}
			if b.fragment {
				continue
			}
			// Parsed as a file in the repository root, so that module
			// paths resolve as runtime.hcl's do.
			src := asReaderHasIt(t, b.text, t.TempDir())
			cfg, err := config.Parse(filepath.Join(absRoot, "doc.hcl"), []byte(src))
			if err != nil {
				t.Errorf("%s: the hcl block is not a valid config (mark a fragment with %s):\n%v", where, fragmentMark, err)
				continue
			}
			if strings.HasPrefix(file, "examples/") {
				sameAsRepo(t, where, config.EffectiveOf(cfg, nil), repo)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no hcl block found")
	}
}

// sameAsRepo reports every function, topic and binding of doc that
// differs from runtime.hcl's.
func sameAsRepo(t *testing.T, where string, doc, repo *config.Effective) {
	t.Helper()
	check := func(kind, name string, got, want any, found bool) {
		if !found {
			t.Errorf("%s: %s %s is not in runtime.hcl", where, kind, name)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %s %s differs from runtime.hcl's:\n doc  %+v\n repo %+v", where, kind, name, got, want)
		}
	}
	for _, f := range doc.Functions {
		want, found := find(repo.Functions, func(x config.EffectiveFunction) bool { return x.Name == f.Name })
		check("function", f.Name, f, want, found)
	}
	for _, tp := range doc.Topics {
		want, found := find(repo.Topics, func(x config.EffectiveTopic) bool { return x.Name == tp.Name })
		check("topic", tp.Name, tp, want, found)
	}
	for _, b := range doc.Bindings {
		want, found := find(repo.Bindings, func(x config.EffectiveBinding) bool { return x.Name == b.Name })
		check("binding", b.Name, b, want, found)
	}
}

func find[T any](items []T, match func(T) bool) (T, bool) {
	for _, it := range items {
		if match(it) {
			return it, true
		}
	}
	var zero T
	return zero, false
}
