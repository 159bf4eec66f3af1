package doccheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSecurityClaimsNameRealTests: every test or fuzz target SECURITY.md
// names as proof exists in the package it names.
func TestSecurityClaimsNameRealTests(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "SECURITY.md"))
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]map[string]bool{} // package dir -> function names
	funcRE := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)\w+)\(`)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dir, _ := filepath.Rel(root, filepath.Dir(path))
		if defined[dir] == nil {
			defined[dir] = map[string]bool{}
		}
		for _, m := range funcRE.FindAllSubmatch(src, -1) {
			defined[dir][string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A claim reads "`TestName` (pkg/dir …)" or lists several names before
	// one package: "`A`, `B` (pkg)".
	claimRE := regexp.MustCompile("((?:`(?:Test|Fuzz)\\w+`(?:, | and )?)+) \\(([a-z/]+)")
	nameRE := regexp.MustCompile("`((?:Test|Fuzz)\\w+)`")
	claims := claimRE.FindAllStringSubmatch(string(doc), -1)
	if len(claims) < 20 {
		t.Fatalf("found only %d claims in SECURITY.md; has its format changed?", len(claims))
	}
	for _, c := range claims {
		pkg := c[2]
		for _, n := range nameRE.FindAllStringSubmatch(c[1], -1) {
			if !defined[pkg][n[1]] {
				t.Errorf("SECURITY.md names %s in %s, which has no such test", n[1], pkg)
			}
		}
	}
}
